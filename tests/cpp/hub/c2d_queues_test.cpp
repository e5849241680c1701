// Cloud-to-device queues against a real LMDB store in a temp dir (semantics.md §4): send validation, depth
// limit, lock/complete/abandon/reject/release, lock expiry, TTL, purge, feedback batching and its own
// lock/complete/abandon/TTL, durability across a reopen, drop_device, concurrency. The clock is injected
// (unix ms in a variable the test moves), so TTLs, locks and the feedback interval need no sleeping.
#include "fleethub/hub/c2d_queues.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "fleethub/core/encoding.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/hub/registry.hpp"

namespace fleethub::hub {
namespace {

constexpr std::int64_t t0 = 1'700'000'000'000;  // 2023-11-14T22:13:20Z
using namespace std::chrono_literals;

struct fb_rec {
  std::string original_message_id, enqueued, status, description, device_id, generation_id;
};

// Parses a feedback body; every record must have exactly the documented string fields.
std::vector<fb_rec> parse_feedback(const std::string& body) {
  std::vector<fb_rec> out;
  auto v = json::parse(body);
  EXPECT_TRUE(v.ok()) << body;
  if (!v.ok()) return out;
  EXPECT_TRUE(v->is_array()) << body;
  if (!v->is_array()) return out;
  for (auto& r : v->as_array()) {
    if (!r.is_object()) {
      ADD_FAILURE() << "a record is not an object: " << body;
      continue;
    }
    auto field = [&](const char* name) -> std::string {
      auto* f = r.find(name);
      EXPECT_NE(f, nullptr) << "missing " << name << " in " << body;
      if (!f || !f->is_string()) {
        ADD_FAILURE() << name << " is not a string in " << body;
        return {};
      }
      return f->as_string();
    };
    fb_rec x{field("originalMessageId"), field("enqueuedTimeUtc"), field("statusCode"),
             field("description"),       field("deviceId"),        field("deviceGenerationId")};
    EXPECT_EQ(r.as_object().size(), 6u) << body;
    out.push_back(std::move(x));
  }
  return out;
}

// A store that forwards everything to the real one but can hold one chosen thread inside submit(): the
// caller has released the queues' lock already, so a test can interleave another thread's operation
// between an operation's state change and its store write.
class gated_store : public store::backend {
 public:
  explicit gated_store(store::backend& inner) : inner_(inner) {}
  // The next submit() made on `t` blocks (after `entered` is set) until release() is called.
  void gate(std::thread::id t) {
    std::lock_guard lk(mu_);
    gated_ = t;
    open_ = false;
    entered_ = std::promise<void>();
    entered_future_ = entered_.get_future();
  }
  bool wait_entered() { return entered_future_.wait_for(std::chrono::seconds(10)) == std::future_status::ready; }
  void release() {
    {
      std::lock_guard lk(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

  std::uint32_t partition_count() const override { return inner_.partition_count(); }
  void submit(store::write_batch batch, store::commit_callback cb) override {
    {
      std::unique_lock lk(mu_);
      if (gated_ && *gated_ == std::this_thread::get_id()) {
        gated_.reset();
        entered_.set_value();
        cv_.wait(lk, [&] { return open_; });
      }
    }
    inner_.submit(std::move(batch), std::move(cb));
  }
  result<std::optional<bytes>> get(store::table t, std::string_view key) const override { return inner_.get(t, key); }
  result<std::vector<store::key_value>> scan(store::table t, std::string_view prefix, std::string_view after,
                                             std::size_t limit) const override {
    return inner_.scan(t, prefix, after, limit);
  }
  result<std::vector<store::event_record>> read_events(std::uint32_t partition, std::uint64_t from,
                                                       std::size_t max) const override {
    return inner_.read_events(partition, from, max);
  }
  std::uint64_t end_sequence(std::uint32_t partition) const override { return inner_.end_sequence(partition); }
  std::uint64_t begin_sequence(std::uint32_t partition) const override { return inner_.begin_sequence(partition); }
  bool wait_for_events(const std::vector<std::uint64_t>& known_ends, std::chrono::milliseconds timeout) const override {
    return inner_.wait_for_events(known_ends, timeout);
  }
  void close() override { inner_.close(); }

 private:
  store::backend& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::thread::id> gated_;
  bool open_ = true;
  std::promise<void> entered_;
  std::future<void> entered_future_;
};

class C2dQueuesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-c2d-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    open_store();
    dev1_ = *reg_->create({.device_id = "dev1"});
    dev2_ = *reg_->create({.device_id = "dev2"});
    ASSERT_TRUE(reg_->create({.device_id = "off", .enabled = false}));
  }
  void TearDown() override {
    close_all();
    std::filesystem::remove_all(dir_);
  }
  void open_store() {
    store::lmdb_options o;
    o.path = dir_.string();
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    reg_ = std::make_unique<registry>(*store_, [] { return t0; });
  }
  // (Re)creates the queues on the open store with `o` and loads them.
  void open_queues(c2d_options o = {}, store::backend* via = nullptr) {
    q_.reset();
    q_ = std::make_unique<c2d_queues>(via ? *via : *store_, *reg_, o, [this] { return clock_.load(); }, "myhub");
    q_->on_available([this](const std::string& d) {
      std::lock_guard lk(mu_);
      available_.push_back(d);
    });
    auto l = q_->load();
    ASSERT_TRUE(l) << l.err().message;
  }
  void close_all() {
    if (q_) q_->close();
    if (store_) store_->submit_and_wait({});
    q_.reset();
    reg_.reset();
    if (store_) store_->close();
    store_.reset();
  }
  void reopen(c2d_options o = {}) {
    close_all();
    open_store();
    open_queues(o);
  }

  result<c2d_sent> send(c2d_send_request req) {
    std::promise<result<c2d_sent>> p;
    q_->send(std::move(req), [&](result<c2d_sent> r) { p.set_value(std::move(r)); });
    auto f = p.get_future();
    if (f.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "send never completed";
      return make_error(errc::unavailable, "timeout");
    }
    return f.get();
  }
  c2d_sent send_ok(const std::string& device, std::string body, c2d_ack ack = c2d_ack::none,
                   std::string message_id = {}) {
    c2d_send_request r;
    r.device_id = device;
    r.body = to_bytes(body);
    r.ack = ack;
    if (!message_id.empty()) r.system_properties.push_back({"message-id", message_id});
    auto s = send(std::move(r));
    EXPECT_TRUE(s) << s.err().message;
    return s ? *s : c2d_sent{};
  }
  c2d_delivery lock_one(const std::string& device, std::chrono::milliseconds lock_for = 0ms) {
    auto d = q_->lock_next(device, 1, lock_for);
    EXPECT_EQ(d.size(), 1u);
    return d.empty() ? c2d_delivery{} : std::move(d[0]);
  }
  // Flushes every pending feedback record into batches (moves the clock past the interval) and returns all
  // visible batches' records, completing the batches. Two interval steps: a tick that makes full batches
  // restarts the interval for the rest (see FeedbackPartialBatchWaitsNoLongerThanTheInterval).
  std::vector<fb_rec> flush_feedback() {
    clock_ += q_->options().feedback_interval.count();
    q_->tick();
    clock_ += q_->options().feedback_interval.count();
    q_->tick();
    std::vector<fb_rec> all;
    while (auto b = q_->receive_feedback(0ms)) {
      auto recs = parse_feedback(b->body);
      all.insert(all.end(), recs.begin(), recs.end());
      EXPECT_TRUE(q_->complete_feedback(b->lock_token));
    }
    return all;
  }
  std::size_t rows(store::table t, std::string_view prefix = {}) {
    store_->submit_and_wait({});
    auto r = store_->scan(t, prefix, {}, 100000);
    EXPECT_TRUE(r);
    return r ? r->size() : 0;
  }
  std::vector<std::string> available() {
    std::lock_guard lk(mu_);
    return available_;
  }
  void clear_available() {
    std::lock_guard lk(mu_);
    available_.clear();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<c2d_queues> q_;
  std::atomic<std::int64_t> clock_{t0};
  device_record dev1_, dev2_;
  std::mutex mu_;
  std::vector<std::string> available_;
};

std::string prefix_of(std::string_view device) {
  std::string p(device);
  p.push_back('\0');
  return p;
}

// --- send ------------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, SendValidation) {
  c2d_options o;
  o.max_message_size = 100;
  open_queues(o);
  auto req = [](std::string dev) {
    c2d_send_request r;
    r.device_id = std::move(dev);
    r.body = to_bytes("x");
    return r;
  };
  auto r = send(req("ghost"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::not_found);
  EXPECT_NE(r.err().message.find("404001"), std::string::npos) << r.err().message;
  r = send(req("off"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::not_found) << "a disabled device is not found";

  // Body + properties (keys and values) over the limit.
  auto big = req("dev1");
  big.body = to_bytes(std::string(89, 'b'));
  big.app_properties.push_back({"k", "0123456789"});  // 89 + 1 + 10 = 100: exactly the limit
  EXPECT_TRUE(send(big)) << "at the limit";
  big.app_properties[0].value += "x";                  // 101
  r = send(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::too_large);
  auto big_sys = req("dev1");
  big_sys.body = to_bytes(std::string(90, 'b'));
  big_sys.system_properties.push_back({"message-id", "0123456789"});  // 90 + 10 + 10 > 100
  EXPECT_EQ(send(big_sys).err().code, errc::too_large) << "system properties count too";

  // Expiry: in the past, now, beyond max_ttl -> invalid; at max_ttl -> fine.
  for (std::int64_t bad : {t0 - 1, t0, t0 + o.max_ttl.count() + 1}) {
    auto e = req("dev1");
    e.expiry_ms = bad;
    r = send(e);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.err().code, errc::invalid_argument) << bad;
    EXPECT_NE(r.err().message.find("403009"), std::string::npos) << r.err().message;
  }
  auto e = req("dev1");
  e.expiry_ms = t0 + o.max_ttl.count();
  auto ok = send(e);
  ASSERT_TRUE(ok) << ok.err().message;
  EXPECT_EQ(ok->expiry_ms, t0 + o.max_ttl.count());
  EXPECT_EQ(q_->depth("dev1"), 2u) << "only the two valid sends are queued";
  EXPECT_EQ(q_->depth("ghost"), 0u);
  EXPECT_EQ(q_->depth("off"), 0u);
  EXPECT_EQ(rows(store::table::c2d), 2u);
  EXPECT_EQ(q_->counters().sent, 2u);
}

TEST_F(C2dQueuesTest, SendSetsMessageIdToAndExpiry) {
  open_queues();
  auto gen = send_ok("dev1", "a");
  EXPECT_EQ(gen.message_id.size(), 36u) << "a generated UUID: " << gen.message_id;
  EXPECT_EQ(gen.expiry_ms, t0 + std::chrono::milliseconds(std::chrono::hours(1)).count()) << "default TTL 1 h";
  auto given = send_ok("dev1", "b", c2d_ack::none, "my-id");
  EXPECT_EQ(given.message_id, "my-id");
  auto third = send_ok("dev1", "c");
  EXPECT_NE(third.message_id, gen.message_id) << "generated ids are unique";

  auto d = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(d.size(), 3u);
  for (auto& x : d) {
    SCOPED_TRACE(as_string_view(x.msg.body));
    EXPECT_EQ(x.msg.device_id, "dev1");
    auto* to = find_property(x.msg.system_properties, "to");
    ASSERT_NE(to, nullptr);
    EXPECT_EQ(*to, "/devices/dev1/messages/devicebound");
    auto* exp = find_property(x.msg.system_properties, "absolute-expiry-time");
    ASSERT_NE(exp, nullptr);
    EXPECT_EQ(*exp, format_iso8601(t0 + 3600 * 1000));
    EXPECT_EQ(x.msg.enqueued_time_ms, t0);
  }
  EXPECT_EQ(*find_property(d[0].msg.system_properties, "message-id"), gen.message_id);
  EXPECT_EQ(*find_property(d[1].msg.system_properties, "message-id"), "my-id");
  EXPECT_EQ(d[0].sequence_number, gen.sequence_number);
  EXPECT_LT(gen.sequence_number, given.sequence_number);
  EXPECT_LT(given.sequence_number, third.sequence_number);

  // An explicit expiry is kept as given.
  c2d_send_request r;
  r.device_id = "dev2";
  r.expiry_ms = t0 + 5000;
  auto s = send(r);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->expiry_ms, t0 + 5000);
  auto d2 = lock_one("dev2");
  EXPECT_EQ(*find_property(d2.msg.system_properties, "absolute-expiry-time"), format_iso8601(t0 + 5000));
}

TEST_F(C2dQueuesTest, DepthLimitIs403004) {
  c2d_options o;
  o.max_queue_depth = 3;
  open_queues(o);
  std::uint64_t prev = 0;
  for (int i = 0; i < 3; ++i) {
    auto s = send_ok("dev1", std::to_string(i));
    EXPECT_GT(s.sequence_number, prev) << "sequence numbers increase";
    prev = s.sequence_number;
    EXPECT_EQ(q_->depth("dev1"), static_cast<std::size_t>(i + 1));
  }
  c2d_send_request r;
  r.device_id = "dev1";
  auto full = send(r);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.err().code, errc::forbidden);
  EXPECT_NE(full.err().message.find("403004"), std::string::npos) << full.err().message;
  EXPECT_EQ(q_->depth("dev1"), 3u);
  // Locked messages still count.
  auto d = lock_one("dev1");
  EXPECT_EQ(q_->depth("dev1"), 3u);
  EXPECT_EQ(send(r).err().code, errc::forbidden);
  // Another device's queue is separate.
  EXPECT_GT(send_ok("dev2", "x").sequence_number, prev);
  // Completing one makes room.
  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 2u);
  EXPECT_TRUE(send(r));
  EXPECT_EQ(q_->depth("dev1"), 3u);
}

// semantics.md §9.3 limits message-id to 128 characters of ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '.
TEST_F(C2dQueuesTest, SendRefusesAnInvalidMessageId) {
  open_queues();
  for (std::string bad : {std::string(129, 'a'), std::string("has space"), std::string("caf\xc3\xa9")}) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.system_properties.push_back({"message-id", bad});
    auto s = send(r);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.err().code, errc::invalid_argument) << bad;
  }
  c2d_send_request r;
  r.device_id = "dev1";
  r.system_properties.push_back({"message-id", std::string(128, 'a')});
  EXPECT_TRUE(send(r)) << "128 characters are fine";
  EXPECT_EQ(q_->depth("dev1"), 1u);
}

// --- lock_next and the MQTT topic ------------------------------------------------------------------------

TEST_F(C2dQueuesTest, LockNextOldestFirstSkipsLockedAndRespectsMax) {
  open_queues();
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < 4; ++i) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.body = to_bytes("body" + std::to_string(i));
    r.app_properties.push_back({"n", std::to_string(i)});
    r.ack = i == 1 ? c2d_ack::positive : c2d_ack::none;
    auto s = send(r);
    ASSERT_TRUE(s);
    seqs.push_back(s->sequence_number);
  }
  EXPECT_TRUE(q_->lock_next("dev1", 0, 0ms).empty()) << "max 0";
  EXPECT_TRUE(q_->lock_next("ghost", 5, 0ms).empty());
  EXPECT_TRUE(q_->lock_next("dev2", 5, 0ms).empty()) << "empty queue";

  auto a = q_->lock_next("dev1", 2, 0ms);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(as_string_view(a[0].msg.body), "body0");
  EXPECT_EQ(as_string_view(a[1].msg.body), "body1");
  EXPECT_EQ(a[0].sequence_number, seqs[0]);
  EXPECT_EQ(a[1].sequence_number, seqs[1]);
  EXPECT_EQ(*find_property(a[1].msg.app_properties, "n"), "1");
  EXPECT_EQ(a[0].ack, c2d_ack::none);
  EXPECT_EQ(a[1].ack, c2d_ack::positive);
  EXPECT_EQ(a[0].delivery_count, 0u);
  EXPECT_FALSE(a[0].lock_token.empty());
  EXPECT_NE(a[0].lock_token, a[1].lock_token);

  auto b = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(b.size(), 2u) << "the locked two are skipped";
  EXPECT_EQ(as_string_view(b[0].msg.body), "body2");
  EXPECT_EQ(as_string_view(b[1].msg.body), "body3");
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "everything is locked";
  EXPECT_EQ(q_->depth("dev1"), 4u);

  // Completing the first leaves the rest locked; releasing the third makes only it visible.
  ASSERT_TRUE(q_->complete("dev1", a[0].lock_token));
  q_->release("dev1", b[0].lock_token);
  auto c = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(as_string_view(c[0].msg.body), "body2");
}

TEST_F(C2dQueuesTest, TopicFormat) {
  open_queues();
  c2d_send_request r;
  r.device_id = "dev1";
  r.system_properties.push_back({"message-id", "m1"});
  r.system_properties.push_back({"content-type", "application/json"});
  r.app_properties.push_back({"prop1", "val 1"});
  r.ack = c2d_ack::full;
  ASSERT_TRUE(send(r));
  r.system_properties[0].value = "m2";
  r.ack = c2d_ack::none;
  ASSERT_TRUE(send(r));
  r.system_properties[0].value = "m3";
  r.ack = c2d_ack::positive;
  ASSERT_TRUE(send(r));
  auto d = q_->lock_next("dev1", 3, 0ms);
  ASSERT_EQ(d.size(), 3u);
  for (auto& x : d) {
    auto t = c2d_topic(x);
    SCOPED_TRACE(t);
    EXPECT_EQ(t.rfind("devices/dev1/messages/devicebound/", 0), 0u);
    EXPECT_NE(t.find("%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound"), std::string::npos);
    EXPECT_NE(t.find("%24.ct=application%2Fjson"), std::string::npos);
    EXPECT_NE(t.find("prop1=val%201"), std::string::npos);
    EXPECT_EQ(t.find("$.mid"), std::string::npos) << "system keys in the %24. form only";
    EXPECT_EQ(t.find('#'), std::string::npos);
    EXPECT_EQ(t.find('+'), std::string::npos);
  }
  auto t0s = c2d_topic(d[0]), t1s = c2d_topic(d[1]), t2s = c2d_topic(d[2]);
  EXPECT_NE(t0s.find("%24.mid=m1"), std::string::npos) << t0s;
  EXPECT_NE(t0s.find("iothub-ack=full"), std::string::npos) << t0s;
  EXPECT_NE(t1s.find("%24.mid=m2"), std::string::npos) << t1s;
  EXPECT_EQ(t1s.find("iothub-ack"), std::string::npos) << "no ack requested: " << t1s;
  EXPECT_NE(t2s.find("iothub-ack=positive"), std::string::npos) << t2s;
}

// --- complete / abandon / reject / release -----------------------------------------------------------------

TEST_F(C2dQueuesTest, CompleteRemovesAndRefusesStaleTokens) {
  open_queues();
  send_ok("dev1", "a");
  send_ok("dev2", "b");
  auto d = lock_one("dev1");
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 1u);

  auto wrong = q_->complete("dev2", d.lock_token);
  ASSERT_FALSE(wrong) << "another device's token";
  EXPECT_EQ(wrong.err().code, errc::precondition_failed);
  EXPECT_NE(wrong.err().message.find("412002"), std::string::npos) << wrong.err().message;
  auto unknown = q_->complete("dev1", "no-such-token");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.err().code, errc::precondition_failed);
  EXPECT_NE(unknown.err().message.find("412002"), std::string::npos);
  EXPECT_EQ(q_->depth("dev1"), 1u) << "the failed completes changed nothing";

  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u) << "erased from the store";
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev2")), 1u);
  auto again = q_->complete("dev1", d.lock_token);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.err().code, errc::precondition_failed);
  EXPECT_NE(again.err().message.find("412002"), std::string::npos);
  EXPECT_TRUE(q_->lock_next("dev1", 5, 0ms).empty());
  EXPECT_EQ(q_->counters().completed, 1u);
  // Abandon, reject and release of a completed message's token fail (or do nothing) too.
  EXPECT_EQ(q_->abandon("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->reject("dev1", d.lock_token).err().code, errc::precondition_failed);
  q_->release("dev1", d.lock_token);
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, CompleteFeedbackFollowsTheAckRequest) {
  open_queues();
  const std::map<c2d_ack, std::string> ids{{c2d_ack::none, "id-none"},
                                           {c2d_ack::positive, "id-positive"},
                                           {c2d_ack::negative, "id-negative"},
                                           {c2d_ack::full, "id-full"}};
  for (auto& [ack, id] : ids) send_ok("dev1", id, ack, id);
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 2u) << "positive and full are recorded durably";
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "id-positive");
  EXPECT_EQ(recs[1].original_message_id, "id-full");
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "Success");
    EXPECT_EQ(r.description, "Success");
    EXPECT_EQ(r.device_id, "dev1");
  }
}

TEST_F(C2dQueuesTest, AbandonCountsAndDeadLettersAtMaxDeliveryCount) {
  c2d_options o;
  o.max_delivery_count = 2;
  open_queues(o);
  send_ok("dev1", "full", c2d_ack::full, "m-full");
  send_ok("dev1", "neg", c2d_ack::negative, "m-neg");
  send_ok("dev1", "pos", c2d_ack::positive, "m-pos");

  auto first = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(first.size(), 3u);
  clear_available();
  for (auto& d : first) {
    EXPECT_EQ(d.delivery_count, 0u);
    ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  }
  EXPECT_EQ(q_->depth("dev1"), 3u);
  EXPECT_FALSE(available().empty()) << "an abandon makes the queue available";
  EXPECT_EQ(q_->abandon("dev1", first[0].lock_token).err().code, errc::precondition_failed) << "token is spent";

  auto second = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(second.size(), 3u) << "visible again after the abandon";
  for (auto& d : second) EXPECT_EQ(d.delivery_count, 1u) << "count went up by one";
  EXPECT_EQ(as_string_view(second[0].msg.body), "full") << "order kept";
  for (auto& d : second) ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u) << "dead-lettered at max_delivery_count";
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d), 0u);
  EXPECT_EQ(q_->counters().dead_lettered, 3u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u) << "negative and full only";
  EXPECT_EQ(recs[0].original_message_id, "m-full");
  EXPECT_EQ(recs[1].original_message_id, "m-neg");
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "DeliveryCountExceeded");
    EXPECT_EQ(r.description, "DeliveryCountExceeded");
  }
}

TEST_F(C2dQueuesTest, RejectDeadLettersAtOnce) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::negative, "m-neg");
  send_ok("dev1", "b", c2d_ack::positive, "m-pos");
  send_ok("dev1", "c", c2d_ack::full, "m-full");
  send_ok("dev1", "d", c2d_ack::none, "m-none");
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->reject("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d), 0u);
  EXPECT_EQ(q_->counters().dead_lettered, 4u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "m-neg");
  EXPECT_EQ(recs[1].original_message_id, "m-full");
  for (auto& r : recs) EXPECT_EQ(r.status, "Rejected");
  EXPECT_EQ(q_->reject("dev1", "nope").err().code, errc::precondition_failed);
}

TEST_F(C2dQueuesTest, ReleaseMakesVisibleWithoutCounting) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::full);
  auto d = lock_one("dev1");
  clear_available();
  q_->release("dev2", d.lock_token);  // wrong device: nothing happens
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "still locked";
  q_->release("dev1", d.lock_token);
  EXPECT_TRUE(available().empty()) << "release does not notify (documented)";
  auto again = lock_one("dev1");
  EXPECT_EQ(again.delivery_count, 0u);
  EXPECT_EQ(again.sequence_number, d.sequence_number);
  EXPECT_NE(again.lock_token, d.lock_token);
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed) << "old token is gone";
  ASSERT_TRUE(q_->complete("dev1", again.lock_token));
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "only the completion, nothing for the release";
  EXPECT_EQ(recs[0].status, "Success");
}

// --- lock expiry and TTL -----------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, LockExpiryReturnsTheMessageWithoutCounting) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::full);
  auto d = lock_one("dev1", 1000ms);
  clock_ += 999;
  q_->tick();
  EXPECT_TRUE(q_->lock_next("dev1", 10, 1000ms).empty()) << "lock still held at 999 ms";
  clear_available();
  clock_ += 2;  // 1001 ms
  auto late = q_->complete("dev1", d.lock_token);
  ASSERT_FALSE(late) << "an expired lock cannot complete, even before the tick notices";
  EXPECT_EQ(late.err().code, errc::precondition_failed);
  EXPECT_NE(late.err().message.find("412002"), std::string::npos);
  q_->tick();
  EXPECT_EQ(available(), std::vector<std::string>{"dev1"}) << "the unlock notifies";
  auto again = lock_one("dev1", 1000ms);
  EXPECT_EQ(again.delivery_count, 0u) << "lock expiry does not count a delivery";
  EXPECT_EQ(again.sequence_number, d.sequence_number);
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->depth("dev1"), 1u);
  ASSERT_TRUE(q_->complete("dev1", again.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "no feedback for the lock expiry";
  EXPECT_EQ(recs[0].status, "Success");
}

TEST_F(C2dQueuesTest, LockForZeroNeverExpiresOnItsOwn) {
  c2d_options o;
  o.default_ttl = std::chrono::hours(48);
  open_queues(o);
  send_ok("dev1", "a");
  auto d = lock_one("dev1", 0ms);
  clock_ += 47 * 3600 * 1000;
  q_->tick();
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty()) << "still locked after 47 h";
  ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, TtlExpiryDeadLettersFromAnyState) {
  open_queues();
  auto with_expiry = [&](std::string id, c2d_ack ack, std::int64_t expiry) {
    c2d_send_request r;
    r.device_id = "dev1";
    r.system_properties.push_back({"message-id", id});
    r.ack = ack;
    r.expiry_ms = expiry;
    ASSERT_TRUE(send(r));
  };
  with_expiry("locked-full", c2d_ack::full, t0 + 5000);
  with_expiry("queued-neg", c2d_ack::negative, t0 + 5000);
  with_expiry("queued-pos", c2d_ack::positive, t0 + 5000);
  with_expiry("later", c2d_ack::full, t0 + 10000);
  auto d = lock_one("dev1", 0ms);
  ASSERT_EQ(*find_property(d.msg.system_properties, "message-id"), "locked-full");

  clock_ = t0 + 4999;
  q_->tick();
  EXPECT_EQ(q_->depth("dev1"), 4u);
  clock_ = t0 + 5000;
  auto visible = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(visible.size(), 1u) << "an expired message is not delivered even before the tick";
  EXPECT_EQ(*find_property(visible[0].msg.system_properties, "message-id"), "later");
  q_->release("dev1", visible[0].lock_token);
  q_->tick();
  EXPECT_EQ(q_->depth("dev1"), 1u) << "the three expired ones are gone, the locked one included";
  EXPECT_EQ(q_->complete("dev1", d.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->counters().expired, 3u);
  EXPECT_EQ(rows(store::table::c2d), 1u);
  auto recs = flush_feedback();  // also moves the clock 15 s: "later" expires at that tick too
  std::multiset<std::string> got;
  for (auto& r : recs) {
    EXPECT_EQ(r.status, "Expired");
    got.insert(r.original_message_id);
  }
  EXPECT_EQ(got, (std::multiset<std::string>{"locked-full", "queued-neg", "later"})) << "not the positive one";
  EXPECT_EQ(q_->depth("dev1"), 0u);
}

TEST_F(C2dQueuesTest, AvailabilityListenerAfterCommitAndUnlock) {
  open_queues();
  std::promise<std::pair<bool, std::size_t>> seen;  // (notified before done?, depth visible then)
  c2d_send_request r;
  r.device_id = "dev1";
  q_->send(r, [&](result<c2d_sent> s) {
    EXPECT_TRUE(s);
    auto a = available();
    seen.set_value({a == std::vector<std::string>{"dev1"}, q_->depth("dev1")});
  });
  auto [notified, depth] = seen.get_future().get();
  EXPECT_TRUE(notified) << "on_available runs once the send committed, before done";
  EXPECT_EQ(depth, 1u) << "the message is visible when done runs";
  auto d = lock_one("dev1", 100ms);
  clear_available();
  q_->tick();
  EXPECT_TRUE(available().empty()) << "nothing unlocked yet";
  clock_ += 100;
  q_->tick();
  EXPECT_EQ(available(), std::vector<std::string>{"dev1"});
  clear_available();
  q_->tick();
  EXPECT_TRUE(available().empty()) << "notified once per unlock";
  // A failed send does not notify.
  c2d_send_request bad;
  bad.device_id = "ghost";
  EXPECT_FALSE(send(bad));
  EXPECT_TRUE(available().empty());
}

// --- purge ---------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, PurgeRemovesEverythingWithPurgedFeedback) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::none, "p-none");
  send_ok("dev1", "b", c2d_ack::negative, "p-neg");
  send_ok("dev1", "c", c2d_ack::full, "p-full");
  send_ok("dev1", "d", c2d_ack::positive, "p-pos");
  send_ok("dev2", "other", c2d_ack::full, "p-other");
  auto locked = lock_one("dev1");  // locked messages are purged too
  auto n = q_->purge("dev1");
  ASSERT_TRUE(n) << n.err().message;
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(q_->depth("dev2"), 1u);
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u);
  EXPECT_EQ(q_->complete("dev1", locked.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(q_->counters().purged, 4u);

  auto unknown = q_->purge("ghost");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.err().code, errc::not_found);
  auto empty = q_->purge("dev1");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, 0u);
  auto never = q_->purge("off");  // registered (disabled), never had a queue
  ASSERT_TRUE(never);
  EXPECT_EQ(*never, 0u);

  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].original_message_id, "p-neg");
  EXPECT_EQ(recs[1].original_message_id, "p-full");
  for (auto& r : recs) EXPECT_EQ(r.status, "Purged");
}

// --- feedback --------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, FeedbackBatchesOf64AndPartialAfterTheInterval) {
  c2d_options o;
  o.feedback_batch_records = 64;
  o.feedback_interval = 15s;
  o.max_queue_depth = 100;
  open_queues(o);
  for (int i = 0; i < 70; ++i) send_ok("dev1", "b", c2d_ack::positive, "m" + std::to_string(i));
  auto ds = q_->lock_next("dev1", 100, 0ms);
  ASSERT_EQ(ds.size(), 70u);
  for (auto& d : ds) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "nothing before a tick";
  q_->tick();
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1) << "a full batch goes out at once";
  auto r1 = parse_feedback(b1->body);
  ASSERT_EQ(r1.size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(r1[i].original_message_id, "m" + std::to_string(i)) << "in order";
  EXPECT_EQ(b1->delivery_count, 0u);
  EXPECT_EQ(b1->enqueued_ms, t0);
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "the 6 others wait for the interval; the batch is locked";
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 6u);
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);

  clock_ = t0 + 14999;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "not yet 15 s";
  clock_ = t0 + 15000;
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the partial batch after the interval";
  auto r2 = parse_feedback(b2->body);
  ASSERT_EQ(r2.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r2[i].original_message_id, "m" + std::to_string(64 + i));
  EXPECT_GT(b2->id, b1->id);
  EXPECT_NE(b2->lock_token, b1->lock_token);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 0u);
  EXPECT_EQ(rows(store::table::c2d_feedback), 2u);
  ASSERT_TRUE(q_->complete_feedback(b1->lock_token));
  ASSERT_TRUE(q_->complete_feedback(b2->lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
  EXPECT_FALSE(q_->receive_feedback(0ms));
}

TEST_F(C2dQueuesTest, FeedbackBodyHasTheDocumentedFields) {
  open_queues();
  send_ok("dev1", "x", c2d_ack::positive, "orig-1");
  clock_ = t0 + 1234;  // completed later than enqueued
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ = t0 + 1234 + 15000;
  q_->tick();
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->enqueued_ms, t0 + 1234 + 15000);
  auto v = json::parse(b->body);
  ASSERT_TRUE(v.ok()) << b->body;
  ASSERT_TRUE(v->is_array());
  ASSERT_EQ(v->as_array().size(), 1u);
  auto& r = v->as_array()[0];
  EXPECT_EQ(r.find("originalMessageId")->as_string(), "orig-1");
  EXPECT_EQ(r.find("statusCode")->as_string(), "Success");
  EXPECT_EQ(r.find("description")->as_string(), "Success");
  EXPECT_EQ(r.find("deviceId")->as_string(), "dev1");
  EXPECT_EQ(r.find("deviceGenerationId")->as_string(), dev1_.generation_id);
  EXPECT_FALSE(dev1_.generation_id.empty());
  auto when = r.find("enqueuedTimeUtc")->as_string();
  EXPECT_EQ(when, format_iso8601(t0)) << "the original message's enqueue time (c2d_queues.hpp)";
  ASSERT_FALSE(when.empty());
  EXPECT_EQ(when.back(), 'Z');
  EXPECT_EQ(when.rfind("2023-11-14T22:13:20", 0), 0u) << when;
  EXPECT_EQ(parse_iso8601(when), t0);
}

TEST_F(C2dQueuesTest, FeedbackLockCompleteAndAbandon) {
  c2d_options o;
  o.feedback_max_delivery_count = 3;
  o.feedback_batch_records = 1;  // one batch per record
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::positive, "f1");
  send_ok("dev1", "b", c2d_ack::positive, "f2");
  for (auto& d : q_->lock_next("dev1", 10, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  q_->tick();
  EXPECT_EQ(rows(store::table::c2d_feedback), 2u);

  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  EXPECT_EQ(parse_feedback(a->body).at(0).original_message_id, "f1");
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b) << "a second receive gets the next batch";
  EXPECT_EQ(parse_feedback(b->body).at(0).original_message_id, "f2");
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "both are locked";

  // Complete b: gone for good; completing twice is refused.
  ASSERT_TRUE(q_->complete_feedback(b->lock_token));
  auto twice = q_->complete_feedback(b->lock_token);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.err().code, errc::precondition_failed);
  EXPECT_EQ(q_->complete_feedback("nope").err().code, errc::precondition_failed);
  EXPECT_EQ(q_->abandon_feedback("nope").err().code, errc::precondition_failed);
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);

  // Abandon a: receivable again with delivery_count + 1, until feedback_max_delivery_count drops it.
  ASSERT_TRUE(q_->abandon_feedback(a->lock_token));
  EXPECT_EQ(q_->abandon_feedback(a->lock_token).err().code, errc::precondition_failed) << "token spent";
  auto a2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->id, a->id);
  EXPECT_EQ(a2->delivery_count, 1u);
  EXPECT_EQ(a2->body, a->body);
  EXPECT_NE(a2->lock_token, a->lock_token);
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed) << "old token";
  ASSERT_TRUE(q_->abandon_feedback(a2->lock_token));
  auto a3 = q_->receive_feedback(0ms);
  ASSERT_TRUE(a3);
  EXPECT_EQ(a3->delivery_count, 2u);
  ASSERT_TRUE(q_->abandon_feedback(a3->lock_token));
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "dropped after 3 deliveries";
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, FeedbackLockExpiresAndTtlDrops) {
  c2d_options o;
  o.feedback_lock = 60s;
  o.feedback_ttl = std::chrono::hours(1);
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::positive, "f1");
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  const std::int64_t made = clock_.load();
  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  clock_ = made + 59999;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "lock still held";
  clock_ = made + 60000;
  q_->tick();
  auto again = q_->receive_feedback(0ms);
  ASSERT_TRUE(again) << "lock expired: receivable again";
  EXPECT_EQ(again->id, a->id);
  EXPECT_NE(again->lock_token, a->lock_token);
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed) << "expired token";
  ASSERT_TRUE(q_->abandon_feedback(again->lock_token));
  // TTL: an hour after the batch was made it is dropped, from the store too.
  clock_ = made + 3600 * 1000 - 1;
  q_->tick();
  auto still = q_->receive_feedback(0ms);
  ASSERT_TRUE(still);
  ASSERT_TRUE(q_->abandon_feedback(still->lock_token));
  clock_ = made + 3600 * 1000;
  q_->tick();
  EXPECT_FALSE(q_->receive_feedback(0ms)) << "expired";
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, FeedbackTtlDropsALockedBatchToo) {
  open_queues();
  send_ok("dev1", "a", c2d_ack::positive);
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  auto a = q_->receive_feedback(0ms);
  ASSERT_TRUE(a);
  clock_ += 3600 * 1000;
  q_->tick();
  EXPECT_EQ(q_->complete_feedback(a->lock_token).err().code, errc::precondition_failed);
  EXPECT_FALSE(q_->receive_feedback(0ms));
  EXPECT_EQ(rows(store::table::c2d_feedback), 0u);
}

TEST_F(C2dQueuesTest, ReceiveFeedbackWaitsAndCloseWakes) {
  open_queues();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(q_->receive_feedback(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms) << "waited for the given time";

  // A waiter is woken by a batch made by tick().
  std::promise<std::optional<feedback_batch>> got;
  std::thread waiter([&] { got.set_value(q_->receive_feedback(30s)); });
  send_ok("dev1", "a", c2d_ack::positive, "w1");
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  clock_ += 15000;
  q_->tick();
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "tick wakes the waiter";
  waiter.join();
  auto b = f.get();
  ASSERT_TRUE(b);
  EXPECT_EQ(parse_feedback(b->body).at(0).original_message_id, "w1");

  // close() wakes a waiter with nothing.
  std::promise<std::optional<feedback_batch>> none;
  std::atomic<bool> started{false};
  std::thread closer_waiter([&] {
    started = true;
    none.set_value(q_->receive_feedback(60s));
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  start = std::chrono::steady_clock::now();
  q_->close();
  auto nf = none.get_future();
  ASSERT_EQ(nf.wait_for(10s), std::future_status::ready) << "close wakes the waiter";
  closer_waiter.join();
  EXPECT_FALSE(nf.get());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_FALSE(q_->receive_feedback(1s)) << "after close, receive returns at once";
}

// --- durability ------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, StateSurvivesAReopen) {
  c2d_options o;
  o.feedback_batch_records = 2;
  open_queues(o);
  std::vector<c2d_sent> sent;
  for (int i = 0; i < 5; ++i) sent.push_back(send_ok("dev1", "m" + std::to_string(i), c2d_ack::full, "m" + std::to_string(i)));
  auto ds = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(ds.size(), 5u);
  ASSERT_TRUE(q_->complete("dev1", ds[0].lock_token));  // Success record
  ASSERT_TRUE(q_->abandon("dev1", ds[1].lock_token));   // delivery count 1, persisted
  // ds[2..4] stay locked: the locks do not survive.
  send_ok("dev2", "x", c2d_ack::positive, "d2-a");
  send_ok("dev2", "y", c2d_ack::positive, "d2-b");
  for (auto& d : q_->lock_next("dev2", 10, 0ms)) ASSERT_TRUE(q_->complete("dev2", d.lock_token));
  q_->tick();  // 3 pending records: one batch of 2 is made, one record stays pending
  EXPECT_EQ(rows(store::table::c2d_feedback), 1u);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 1u);
  std::uint64_t max_seq = 0;
  for (auto& s : sent) max_seq = std::max(max_seq, s.sequence_number);

  reopen(o);
  EXPECT_EQ(q_->depth("dev1"), 4u);
  EXPECT_EQ(q_->depth("dev2"), 0u);
  auto after = q_->lock_next("dev1", 10, 0ms);
  ASSERT_EQ(after.size(), 4u) << "every lock is gone: all visible";
  for (std::size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(after[i].sequence_number, sent[i + 1].sequence_number) << "same sequence numbers, in order";
    EXPECT_EQ(as_string_view(after[i].msg.body), "m" + std::to_string(i + 1));
    EXPECT_EQ(*find_property(after[i].msg.system_properties, "message-id"), "m" + std::to_string(i + 1));
    EXPECT_EQ(after[i].ack, c2d_ack::full);
    EXPECT_EQ(after[i].delivery_count, i == 0 ? 1u : 0u) << "the abandon's count survived";
  }
  // The batch made before the reopen is receivable; the pending record becomes a batch after the interval.
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1);
  auto r1 = parse_feedback(b1->body);
  ASSERT_EQ(r1.size(), 2u);
  EXPECT_EQ(r1[0].original_message_id, "m0");
  EXPECT_EQ(r1[1].original_message_id, "d2-a");
  EXPECT_FALSE(q_->receive_feedback(0ms));
  clock_ += 15000;
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the pending record survived";
  auto r2 = parse_feedback(b2->body);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].original_message_id, "d2-b");
  EXPECT_EQ(r2[0].generation_id, dev2_.generation_id);
  EXPECT_GT(b2->id, b1->id) << "feedback ids keep increasing";
  // New sends get larger sequence numbers than the old ones.
  auto fresh = send_ok("dev1", "new");
  EXPECT_GT(fresh.sequence_number, max_seq);
  auto fresh2 = send_ok("dev2", "new");
  EXPECT_GT(fresh2.sequence_number, fresh.sequence_number);
}

TEST_F(C2dQueuesTest, AbandonCountPersistsUpToDeadLetterAcrossReopens) {
  c2d_options o;
  o.max_delivery_count = 3;
  open_queues(o);
  send_ok("dev1", "a", c2d_ack::negative, "dl");
  for (int i = 0; i < 2; ++i) {
    auto d = lock_one("dev1");
    EXPECT_EQ(d.delivery_count, static_cast<std::uint32_t>(i));
    ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
    reopen(o);
  }
  auto d = lock_one("dev1");
  EXPECT_EQ(d.delivery_count, 2u);
  ASSERT_TRUE(q_->abandon("dev1", d.lock_token));
  EXPECT_EQ(q_->depth("dev1"), 0u);
  reopen(o);
  EXPECT_EQ(q_->depth("dev1"), 0u) << "the dead-lettered message stays gone";
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].status, "DeliveryCountExceeded");
}

// --- drop_device -------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, DropDeviceForgetsQueueAndPendingFeedback) {
  open_queues();
  for (int i = 0; i < 3; ++i) send_ok("dev1", "a", c2d_ack::full, "d1-" + std::to_string(i));
  for (int i = 0; i < 2; ++i) send_ok("dev2", "b", c2d_ack::full, "d2-" + std::to_string(i));
  ASSERT_TRUE(q_->complete("dev1", lock_one("dev1").lock_token));
  ASSERT_TRUE(q_->complete("dev2", lock_one("dev2").lock_token));
  auto locked = lock_one("dev1");
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 2u);

  store::write_batch b;
  q_->drop_device("dev1", b);
  EXPECT_EQ(q_->depth("dev1"), 0u) << "forgotten at once";
  ASSERT_TRUE(store_->submit_and_wait(std::move(b)).ok());
  EXPECT_EQ(q_->depth("dev2"), 1u) << "other devices untouched";
  EXPECT_TRUE(q_->lock_next("dev1", 10, 0ms).empty());
  EXPECT_EQ(q_->complete("dev1", locked.lock_token).err().code, errc::precondition_failed);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u);
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev2")), 1u);
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 1u);
  auto recs = flush_feedback();
  ASSERT_EQ(recs.size(), 1u) << "dev1's pending feedback is dropped";
  EXPECT_EQ(recs[0].device_id, "dev2");
  EXPECT_EQ(recs[0].original_message_id, "d2-0");

  reopen();
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(q_->depth("dev2"), 1u);
  // The device id can be used again.
  EXPECT_EQ(send_ok("dev1", "again").message_id.size(), 36u);
  EXPECT_EQ(q_->depth("dev1"), 1u);
}

// A send submitted (not yet committed) when drop_device runs: its commit callback re-adds the message to the
// in-memory index after the drop, although the drop batch erased the row from the store.
// The drop bumps the device's epoch, so the in-flight send's commit neither re-adds the entry nor leaves its
// row behind (no phantom that counts against the limit or later "expires").
TEST_F(C2dQueuesTest, DropDeviceWhileASendIsInFlightLeavesNoPhantom) {
  open_queues();
  // Hold the writer thread inside a commit callback so the send and the drop queue up behind it.
  std::promise<void> entered, go;
  store_->submit({}, [&](const store::commit_result&) {
    entered.set_value();
    go.get_future().wait();
  });
  entered.get_future().wait();
  std::promise<result<c2d_sent>> sent;
  c2d_send_request r;
  r.device_id = "dev1";
  q_->send(r, [&](result<c2d_sent> s) { sent.set_value(std::move(s)); });
  store::write_batch b;
  q_->drop_device("dev1", b);
  store_->submit(std::move(b), {});
  go.set_value();
  auto s = sent.get_future().get();
  store_->submit_and_wait({});
  EXPECT_EQ(rows(store::table::c2d, prefix_of("dev1")), 0u) << "the store has nothing for dev1";
  EXPECT_EQ(q_->depth("dev1"), 0u) << "and neither should the index";
}

// --- store write order under concurrency --------------------------------------

// abandon() persists the new delivery count with a put; a complete racing it must not be overtaken in the
// store by that put (the completed message would come back after a restart). Submits happen under the
// queues' lock, so the competing complete waits until the abandon's put is queued.
TEST_F(C2dQueuesTest, AbandonRacingACompleteDoesNotResurrectTheMessage) {
  gated_store gs(*store_);
  open_queues({}, &gs);
  send_ok("dev1", "a");
  auto d = lock_one("dev1");
  std::promise<void> start;
  std::thread abandoner([&, go = start.get_future()]() mutable {
    go.wait();
    EXPECT_TRUE(q_->abandon("dev1", d.lock_token));
  });
  gs.gate(abandoner.get_id());
  start.set_value();
  if (!gs.wait_entered()) {
    gs.release();
    abandoner.join();
    FAIL() << "abandon never submitted";
  }
  // The competitor runs on its own thread: it must wait for the gated submit, not overtake it.
  std::thread competitor([&] {
    auto again = lock_one("dev1");
    EXPECT_TRUE(q_->complete("dev1", again.lock_token));
  });
  std::this_thread::sleep_for(100ms);
  gs.release();
  abandoner.join();
  competitor.join();
  store_->submit_and_wait({});
  EXPECT_EQ(q_->depth("dev1"), 0u);
  EXPECT_EQ(rows(store::table::c2d), 0u) << "the completed message's row is back in the store";
  reopen();
  EXPECT_EQ(q_->depth("dev1"), 0u) << "a completed message is delivered again after a restart";
}

// complete() adds a feedback record and submits its pending-row put; a tick() batching that record must
// not have its erase of the pending row overtaken by the put (the record would be delivered twice after a
// restart). The tick waits for the queues' lock, which the complete holds until its submit is queued.
TEST_F(C2dQueuesTest, CompleteRacingATickDoesNotDuplicateFeedback) {
  gated_store gs(*store_);
  open_queues({}, &gs);
  send_ok("dev1", "a", c2d_ack::positive, "once");
  auto d = lock_one("dev1");
  std::promise<void> start;
  std::thread completer([&, go = start.get_future()]() mutable {
    go.wait();
    EXPECT_TRUE(q_->complete("dev1", d.lock_token));
  });
  gs.gate(completer.get_id());
  start.set_value();
  if (!gs.wait_entered()) {
    gs.release();
    completer.join();
    FAIL() << "complete never submitted";
  }
  clock_ += 15000;
  std::thread ticker([&] { q_->tick(); });  // batches the record once it can
  std::this_thread::sleep_for(100ms);
  gs.release();
  completer.join();
  ticker.join();
  store_->submit_and_wait({});
  auto b = q_->receive_feedback(0ms);
  ASSERT_TRUE(b);
  ASSERT_TRUE(q_->complete_feedback(b->lock_token));
  EXPECT_EQ(rows(store::table::c2d_feedback_pending), 0u) << "a batched record's pending row is back";
  reopen();
  EXPECT_TRUE(flush_feedback().empty()) << "the record is delivered twice";
}

// Records left over after full batches keep their own waiting time: a partial batch goes out one interval
// after its oldest record, not one interval after the last full batch.
TEST_F(C2dQueuesTest, FeedbackPartialBatchWaitsNoLongerThanTheInterval) {
  c2d_options o;
  o.max_queue_depth = 100;
  open_queues(o);
  for (int i = 0; i < 70; ++i) send_ok("dev1", "b", c2d_ack::positive, "m" + std::to_string(i));
  for (auto& d : q_->lock_next("dev1", 100, 0ms)) ASSERT_TRUE(q_->complete("dev1", d.lock_token));
  clock_ = t0 + 10000;  // the first tick after the completions comes 10 s later
  q_->tick();
  auto b1 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b1);
  EXPECT_EQ(parse_feedback(b1->body).size(), 64u);
  clock_ = t0 + 15000;  // the 6 others have waited 15 s now
  q_->tick();
  auto b2 = q_->receive_feedback(0ms);
  ASSERT_TRUE(b2) << "the partial batch is due 15 s after its records";
  EXPECT_EQ(parse_feedback(b2->body).size(), 6u);
}

// --- concurrency -------------------------------------------------------------------------------------------

TEST_F(C2dQueuesTest, ConcurrentSendersAndAConsumer) {
  for (int d = 0; d < 4; ++d) ASSERT_TRUE(reg_->create({.device_id = "c" + std::to_string(d)}));
  c2d_options o;
  o.max_queue_depth = 50;
  open_queues(o);
  constexpr int per_device = 50;
  std::atomic<int> sent_ok{0}, sent_failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  for (int d = 0; d < 4; ++d)
    senders.emplace_back([&, d] {
      for (int i = 0; i < per_device; ++i) {
        c2d_send_request r;
        r.device_id = "c" + std::to_string(d);
        r.body = to_bytes(std::to_string(i));
        r.ack = c2d_ack::positive;
        q_->send(std::move(r), [&](result<c2d_sent> s) { (s ? sent_ok : sent_failed)++; });
      }
    });
  std::thread ticker([&] {
    while (!stop) {
      q_->tick();
      std::this_thread::sleep_for(1ms);
    }
  });
  std::map<std::string, std::vector<int>> seen;
  int completed = 0, complete_errors = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (completed < 4 * per_device && std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (int d = 0; d < 4; ++d) {
      auto dev = "c" + std::to_string(d);
      for (auto& x : q_->lock_next(dev, 7, 0ms)) {
        any = true;
        seen[dev].push_back(std::stoi(std::string(as_string_view(x.msg.body))));
        if (q_->complete(dev, x.lock_token)) ++completed; else ++complete_errors;
      }
    }
    if (!any) std::this_thread::yield();
  }
  for (auto& t : senders) t.join();
  stop = true;
  ticker.join();
  store_->submit_and_wait({});
  EXPECT_EQ(sent_failed.load(), 0) << "never more than 50 queued per device";
  EXPECT_EQ(sent_ok.load(), 4 * per_device);
  EXPECT_EQ(completed, 4 * per_device);
  EXPECT_EQ(complete_errors, 0);
  for (int d = 0; d < 4; ++d) {
    auto dev = "c" + std::to_string(d);
    SCOPED_TRACE(dev);
    std::vector<int> want(per_device);
    for (int i = 0; i < per_device; ++i) want[i] = i;
    EXPECT_EQ(seen[dev], want) << "each message exactly once, in send order";
    EXPECT_EQ(q_->depth(dev), 0u);
  }
  auto c = q_->counters();
  EXPECT_EQ(c.sent, 4u * per_device);
  EXPECT_EQ(c.completed, 4u * per_device);
  EXPECT_EQ(rows(store::table::c2d), 0u);
  // Every completion left exactly one Success record.
  auto recs = flush_feedback();
  EXPECT_EQ(recs.size(), 4u * per_device);
  std::set<std::string> ids;
  for (auto& r : recs) ids.insert(r.original_message_id);
  EXPECT_EQ(ids.size(), 4u * per_device);
}

TEST(C2dAck, NamesRoundTrip) {
  for (auto a : {c2d_ack::none, c2d_ack::positive, c2d_ack::negative, c2d_ack::full})
    EXPECT_EQ(c2d_ack_from_string(to_string(a)), a);
  EXPECT_EQ(c2d_ack_from_string(""), c2d_ack::none);
  EXPECT_FALSE(c2d_ack_from_string("Full"));
  EXPECT_STREQ(to_string(feedback_status::delivery_count_exceeded), "DeliveryCountExceeded");
  EXPECT_STREQ(to_string(feedback_status::purged), "Purged");
}

}  // namespace
}  // namespace fleethub::hub
