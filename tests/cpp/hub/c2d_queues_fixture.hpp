// Shared fixture of the C2D queue tests (c2d_queues_test.cpp, c2d_feedback_test.cpp): a real LMDB store in a
// temp dir, a registry with devices, and an injected clock (unix ms in a variable the test moves), so TTLs,
// locks and the feedback interval need no sleeping.
#pragma once
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

}  // namespace
}  // namespace fleethub::hub
