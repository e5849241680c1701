// Twins against a real LMDB store (semantics.md §1, §8.4): reads, service updates and replacements with
// If-Match, reported patches, desired-change notifications, TwinChangeEvents and DeviceLifecycleEvents in the
// event log, concurrency, identity deletion, durability across a reopen.
#include "fleethub/hub/twin_manager.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/topics.hpp"

namespace fleethub::hub {
namespace {

json::value J(std::string_view text) {
  auto r = json::parse(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : json::value();
}
std::string S(const json::value& v) { return json::serialize(v); }

twin_update desired_patch(std::string_view json_text) {
  twin_update u;
  u.desired = J(json_text);
  return u;
}

struct notification {
  std::string client_id;
  std::int64_t version;
  std::string body;
};

class TwinManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-twinmgr-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    open();
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    store::lmdb_options o;
    o.path = dir_.string();
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    auto clock = [this] { return clock_.fetch_add(1000) + 1000; };
    reg_ = std::make_unique<registry>(*store_, clock);
    events_ = std::make_unique<system_events>("myhub.azure-devices.net");
    twins_ = std::make_unique<twin_manager>(*store_, *reg_, *events_, twin_limits{}, clock);
    reg_->on_batch([this](store::write_batch& b, const registry_change& c) { twins_->on_identity_batch(b, c); });
    reg_->on_change([this](const registry_change& c) { twins_->on_identity_committed(c); });
    twins_->on_desired_change([this](const std::string& cid, std::int64_t v, std::string body) {
      std::lock_guard lk(mu_);
      notes_.push_back({cid, v, std::move(body)});
    });
  }
  void close() {
    if (store_) store_->submit_and_wait({});
    if (reg_) {
      reg_->on_batch(nullptr);
      reg_->on_change(nullptr);
    }
    twins_.reset();
    events_.reset();
    reg_.reset();
    if (store_) store_->close();
    store_.reset();
  }

  result<twin_document> update(std::string_view device, std::string_view module, twin_update u) {
    std::promise<result<twin_document>> p;
    twins_->update(device, module, std::move(u), [&](result<twin_document> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  result<std::int64_t> patch(std::string_view device, std::string_view module, std::string_view body) {
    std::promise<result<std::int64_t>> p;
    twins_->patch_reported(device, module, to_bytes(std::string(body)),
                           [&](result<std::int64_t> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  // Every message in the event log, partition by partition, in log order.
  std::vector<message> events() {
    std::vector<message> out;
    for (std::uint32_t p = 0; p < store_->partition_count(); ++p) {
      auto rows = store_->read_events(p, 0, 100000);
      EXPECT_TRUE(rows) << rows.err().message;
      if (!rows) continue;
      for (auto& row : *rows) {
        auto m = decode_message(row.record);
        EXPECT_TRUE(m) << m.err().message;
        if (!m) continue;
        EXPECT_TRUE(peek_message_source(row.record) == m->source) << "the peeked source matches the record";
        out.push_back(std::move(*m));
      }
    }
    return out;
  }
  std::vector<message> events_of(message_source src) {
    std::vector<message> out;
    for (auto& m : events())
      if (m.source == src) out.push_back(std::move(m));
    return out;
  }
  std::vector<notification> notes() {
    std::lock_guard lk(mu_);
    return notes_;
  }
  static std::string app(const message& m, std::string_view key) {
    auto* v = find_property(m.app_properties, key);
    return v ? *v : "<absent>";
  }

  std::filesystem::path dir_;
  std::atomic<std::int64_t> clock_{1700000000000};
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<system_events> events_;
  std::unique_ptr<twin_manager> twins_;
  std::mutex mu_;
  std::vector<notification> notes_;
};

TEST_F(TwinManagerTest, UnknownIdentityIsNotFound) {
  auto g = twins_->get("ghost");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.err().code, errc::not_found);
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  EXPECT_EQ(twins_->get("dev1", "nomod").err().code, errc::not_found);
  // Writes are refused on the caller's thread and leave no trace.
  auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  errc code = errc::ok;
  twins_->update("ghost", "", desired_patch(R"({"a":1})"), [&](result<twin_document> r) {
    ran_on = std::this_thread::get_id();
    code = r ? errc::ok : r.err().code;
  });
  EXPECT_EQ(ran_on, caller);
  EXPECT_EQ(code, errc::not_found);
  EXPECT_EQ(patch("ghost", "", R"({"a":1})").err().code, errc::not_found);
  EXPECT_EQ(patch("dev1", "nomod", R"({"a":1})").err().code, errc::not_found);
  EXPECT_TRUE(events_of(message_source::twin_change_events).empty());
  EXPECT_TRUE(notes().empty());
}

TEST_F(TwinManagerTest, FreshTwinAfterCreate) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  auto t = twins_->get("dev1");
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->device_id, "dev1");
  EXPECT_EQ(t->module_id, "");
  EXPECT_EQ(t->version, 1);
  EXPECT_EQ(t->desired_version, 1);
  EXPECT_EQ(t->reported_version, 1);
  EXPECT_EQ(twin_etag(*t), "AAAAAAAAAAE=");
  EXPECT_EQ(S(t->tags), "{}");
  EXPECT_EQ(S(t->desired), "{}");
  EXPECT_EQ(S(t->reported), "{}");
  // Written in the registry's own batch: it is in the store already.
  auto stored = store_->get(store::table::twins, "dev1");
  ASSERT_TRUE(stored);
  ASSERT_TRUE(stored->has_value());
  auto decoded = decode_twin(**stored);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, *t);

  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "mod1"}));
  auto mt = twins_->get("dev1", "mod1");
  ASSERT_TRUE(mt) << mt.err().message;
  EXPECT_EQ(mt->module_id, "mod1");
  EXPECT_EQ(mt->version, 1);
}

TEST_F(TwinManagerTest, UpdateMergesBumpsVersionsAndNotifies) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  twin_update u;
  u.tags = J(R"({"site":"oslo","floor":{"n":3}})");
  u.desired = J(R"({"fan":true,"mode":"eco"})");
  auto r = update("dev1", "", u);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(S(r->tags), R"({"site":"oslo","floor":{"n":3}})");
  EXPECT_EQ(S(r->desired), R"({"fan":true,"mode":"eco"})");
  EXPECT_EQ(r->desired_version, 2);
  EXPECT_EQ(r->reported_version, 1);
  EXPECT_GT(r->version, 1);
  EXPECT_NE(twin_etag(*r), "AAAAAAAAAAE=");
  auto n = notes();
  ASSERT_EQ(n.size(), 1u) << "the listener runs once per change";
  EXPECT_EQ(n[0].client_id, "dev1");
  EXPECT_EQ(n[0].version, 2);
  auto body = J(n[0].body);
  ASSERT_TRUE(body.is_object()) << n[0].body;
  ASSERT_NE(body.find("$version"), nullptr) << n[0].body;
  EXPECT_EQ(body.find("$version")->as_int(), 2);
  EXPECT_EQ(S(*body.find("mode")), "\"eco\"");
  EXPECT_EQ(body.find("site"), nullptr) << "tags are not sent to the device";

  // Merge: null deletes, other keys stay, objects merge deeply.
  twin_update u2;
  u2.tags = J(R"({"floor":{"room":"b"},"site":null})");
  u2.desired = J(R"({"mode":null,"temp":21})");
  auto r2 = update("dev1", "", u2);
  ASSERT_TRUE(r2) << r2.err().message;
  EXPECT_EQ(S(r2->tags), R"({"floor":{"n":3,"room":"b"}})");
  EXPECT_EQ(S(r2->desired), R"({"fan":true,"temp":21})");
  EXPECT_EQ(r2->desired_version, 3);
  EXPECT_GT(r2->version, r->version);
  n = notes();
  ASSERT_EQ(n.size(), 2u);
  EXPECT_EQ(n[1].version, 3);
  EXPECT_EQ(J(n[1].body).find("mode")->is_null(), true) << "deletions are sent as nulls: " << n[1].body;
  auto g = twins_->get("dev1");
  ASSERT_TRUE(g);
  EXPECT_EQ(*g, *r2) << "get returns what the update returned";

  // Tags only: no device notification, desired $version unchanged.
  twin_update u3;
  u3.tags = J(R"({"x":1})");
  auto r3 = update("dev1", "", u3);
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->desired_version, 3);
  EXPECT_GT(r3->version, r2->version);
  EXPECT_EQ(notes().size(), 2u);

  // Nothing to change is refused.
  auto r4 = update("dev1", "", twin_update{});
  ASSERT_FALSE(r4);
  EXPECT_EQ(r4.err().code, errc::invalid_argument);
  EXPECT_EQ(*twins_->get("dev1"), *r3);
}

TEST_F(TwinManagerTest, ModuleTwinNotifiesTheModuleClientId) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "mod1"}));
  auto r = update("dev1", "mod1", desired_patch(R"({"a":1})"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->module_id, "mod1");
  auto n = notes();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].client_id, "dev1/mod1");
  EXPECT_EQ(twins_->get("dev1")->desired_version, 1) << "the device twin is separate";
}

TEST_F(TwinManagerTest, ReplaceSetsWholeSections) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  twin_update u;
  u.tags = J(R"({"a":1,"b":2})");
  u.desired = J(R"({"x":1,"y":{"z":2}})");
  ASSERT_TRUE(update("dev1", "", u));
  twin_update rep;
  rep.replace = true;
  rep.desired = J(R"({"y":{"w":3},"n":null})");
  auto r = update("dev1", "", rep);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(S(r->tags), "{}") << "an absent section becomes empty on replace";
  EXPECT_EQ(S(r->desired), R"({"y":{"w":3}})") << "nulls are dropped, nothing merges";
  EXPECT_EQ(r->desired_version, 3);
  auto n = notes();
  ASSERT_EQ(n.size(), 2u);
  EXPECT_EQ(n[1].version, 3);
  auto body = J(n[1].body);
  EXPECT_EQ(S(*body.find("y")), R"({"w":3})");
  EXPECT_EQ(body.find("x"), nullptr) << "the device receives the full replacement: " << n[1].body;
  EXPECT_EQ(body.find("$version")->as_int(), 3);
  auto ev = events_of(message_source::twin_change_events);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(app(ev[0], "opType"), "updateTwin");
  EXPECT_EQ(app(ev[1], "opType"), "replaceTwin");
  auto replaced = J(as_string_view(ev[1].body));
  EXPECT_EQ(replaced.find("deviceId")->as_string(), "dev1");
  EXPECT_EQ(replaced.find("etag")->as_string(), twin_etag(*r));
}

TEST_F(TwinManagerTest, IfMatch) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  auto t0 = *twins_->get("dev1");
  const auto etag0 = twin_etag(t0);
  auto u = desired_patch(R"({"a":1})");
  u.if_match = etag0;
  auto r1 = update("dev1", "", u);
  ASSERT_TRUE(r1) << r1.err().message;
  auto etag1 = twin_etag(*r1);
  ASSERT_NE(etag1, etag0);

  // A stale etag fails and changes nothing.
  auto stale = desired_patch(R"({"a":2})");
  stale.if_match = etag0;
  auto r2 = update("dev1", "", stale);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.err().code, errc::precondition_failed);
  EXPECT_EQ(*twins_->get("dev1"), *r1);
  stale.if_match = "\"" + etag0 + "\"";
  EXPECT_EQ(update("dev1", "", stale).err().code, errc::precondition_failed);
  stale.if_match = "garbage";
  EXPECT_EQ(update("dev1", "", stale).err().code, errc::precondition_failed);
  EXPECT_EQ(notes().size(), 1u);
  EXPECT_EQ(events_of(message_source::twin_change_events).size(), 1u) << "no event for a refused update";

  // The current etag in quotes (as HTTP sends it) works.
  auto quoted = desired_patch(R"({"a":3})");
  quoted.if_match = "\"" + etag1 + "\"";
  auto r3 = update("dev1", "", quoted);
  ASSERT_TRUE(r3) << r3.err().message;
  EXPECT_EQ(S(r3->desired), R"({"a":3})");

  // "*" is unconditional.
  auto star = desired_patch(R"({"a":4})");
  star.if_match = "*";
  auto r4 = update("dev1", "", star);
  ASSERT_TRUE(r4) << r4.err().message;
  EXPECT_EQ(S(r4->desired), R"({"a":4})");

  // Replace honours it too.
  twin_update rep;
  rep.replace = true;
  rep.if_match = etag1;
  EXPECT_EQ(update("dev1", "", rep).err().code, errc::precondition_failed);
  rep.if_match = twin_etag(*r4);
  EXPECT_TRUE(update("dev1", "", rep));
}

TEST_F(TwinManagerTest, ParseTwinUpdate) {
  auto ok = parse_twin_update(
      J(R"({"deviceId":"x","etag":"e","tags":{"t":1},"properties":{"desired":{"d":2}},"version":9})"), false);
  ASSERT_TRUE(ok) << ok.err().message;
  ASSERT_TRUE(ok->tags);
  EXPECT_EQ(S(*ok->tags), R"({"t":1})");
  ASSERT_TRUE(ok->desired);
  EXPECT_EQ(S(*ok->desired), R"({"d":2})");
  EXPECT_FALSE(ok->replace);
  EXPECT_TRUE(ok->if_match.empty()) << "the body's etag is not an If-Match";

  auto rep = parse_twin_update(J(R"({"tags":null,"properties":{"desired":null}})"), true);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->replace);
  EXPECT_FALSE(rep->tags);
  EXPECT_FALSE(rep->desired);
  auto only_tags = parse_twin_update(J(R"({"tags":{}})"), false);
  ASSERT_TRUE(only_tags);
  EXPECT_FALSE(only_tags->desired);

  auto reported = parse_twin_update(J(R"({"properties":{"reported":{"r":1}}})"), false);
  ASSERT_FALSE(reported);
  EXPECT_EQ(reported.err().code, errc::invalid_argument);
  EXPECT_NE(reported.err().message.find("reported"), std::string::npos);
  EXPECT_FALSE(parse_twin_update(J(R"({"properties":{"desired":{},"reported":{}}})"), true));
  for (const char* bad : {R"({"tags":1})", R"({"tags":"x"})", R"({"tags":[]})", R"({"properties":{"desired":5}})",
                          R"({"properties":{"desired":[1]}})", R"({"properties":"p"})", R"([1])", R"("x")", "7"}) {
    auto r = parse_twin_update(J(bad), false);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.err().code, errc::invalid_argument) << bad;
  }
}

TEST_F(TwinManagerTest, PatchReported) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  for (const char* bad : {"{", "not json", "", "{\"a\":}"}) {
    auto r = patch("dev1", "", bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.err().code, errc::invalid_argument) << bad;
  }
  for (const char* not_object : {"[1,2]", "5", "\"s\"", "null", "true"}) {
    auto r = patch("dev1", "", not_object);
    ASSERT_FALSE(r) << not_object;
    EXPECT_EQ(r.err().code, errc::invalid_argument) << not_object;
  }
  auto bad_key = patch("dev1", "", R"({"a.b":1})");
  ASSERT_FALSE(bad_key);
  EXPECT_EQ(bad_key.err().code, errc::invalid_argument);
  EXPECT_EQ(twins_->get("dev1")->reported_version, 1) << "refused patches change nothing";
  EXPECT_TRUE(events_of(message_source::twin_change_events).empty());

  auto v = patch("dev1", "", R"({"temp":20,"fw":{"v":"1.0"}})");
  ASSERT_TRUE(v) << v.err().message;
  EXPECT_EQ(*v, 2);
  v = patch("dev1", "", R"({"temp":null,"fw":{"ok":true}})");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 3);
  auto t = twins_->get("dev1");
  EXPECT_EQ(S(t->reported), R"({"fw":{"v":"1.0","ok":true}})");
  EXPECT_EQ(t->desired_version, 1);
  EXPECT_TRUE(notes().empty()) << "reported changes are not sent to the device";
}

TEST_F(TwinManagerTest, EachWriteAppendsOneTwinChangeEvent) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "mod1"}));
  EXPECT_TRUE(events_of(message_source::twin_change_events).empty()) << "creation is a lifecycle event";
  twin_update u;
  u.tags = J(R"({"t":1})");
  u.desired = J(R"({"d":1})");
  ASSERT_TRUE(update("dev1", "", u));
  ASSERT_TRUE(patch("dev1", "", R"({"r":1})"));
  ASSERT_TRUE(update("dev1", "mod1", desired_patch(R"({"m":1})")));
  twin_update rep;
  rep.replace = true;
  ASSERT_TRUE(update("dev1", "", rep));

  auto ev = events_of(message_source::twin_change_events);
  ASSERT_EQ(ev.size(), 4u);
  for (auto& m : ev) {
    EXPECT_EQ(m.device_id, "dev1");
    EXPECT_EQ(app(m, "iothub-message-schema"), "twinChangeNotification");
    EXPECT_EQ(app(m, "hubName"), "myhub");
    EXPECT_EQ(app(m, "deviceId"), "dev1");
    EXPECT_EQ(*find_property(full_system_properties(m), sysprop::message_source), "twinChangeEvents");
  }
  // One device: one partition, so log order is write order.
  EXPECT_EQ(app(ev[0], "opType"), "updateTwin");
  auto b0 = J(as_string_view(ev[0].body));
  EXPECT_EQ(S(*b0.find("tags")), R"({"t":1})") << as_string_view(ev[0].body);
  auto* desired = b0.find("properties") ? b0.find("properties")->find("desired") : nullptr;
  ASSERT_NE(desired, nullptr) << as_string_view(ev[0].body);
  EXPECT_EQ(desired->find("d")->as_int(), 1);
  EXPECT_EQ(desired->find("$version")->as_int(), 2);
  EXPECT_NE(desired->find("$metadata"), nullptr);

  EXPECT_EQ(app(ev[1], "opType"), "updateTwin");
  auto b1 = J(as_string_view(ev[1].body));
  auto* reported = b1.find("properties") ? b1.find("properties")->find("reported") : nullptr;
  ASSERT_NE(reported, nullptr) << as_string_view(ev[1].body);
  EXPECT_EQ(reported->find("$version")->as_int(), 2);

  EXPECT_EQ(app(ev[2], "opType"), "updateTwin");
  EXPECT_EQ(ev[2].module_id, "mod1");
  EXPECT_EQ(app(ev[2], "moduleId"), "mod1");
  EXPECT_EQ(app(ev[3], "opType"), "replaceTwin");
  EXPECT_EQ(app(ev[3], "moduleId"), "<absent>");
}

TEST_F(TwinManagerTest, ConcurrentUpdatesAreOrdered) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  constexpr int threads = 4, per_thread = 50;
  std::atomic<int> done{0}, failed{0};
  std::promise<void> all_done;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto u = desired_patch("{\"t" + std::to_string(t) + "\":" + std::to_string(i) + "}");
        if (i % 5 == 0) u.tags = J("{\"last\":" + std::to_string(t) + "}");
        twins_->update("dev1", "", std::move(u), [&](result<twin_document> r) {
          if (!r) ++failed;
          if (++done == threads * per_thread) all_done.set_value();
        });
      }
    });
  for (auto& th : ts) th.join();
  ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(failed.load(), 0);
  auto t = twins_->get("dev1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->desired_version, 1 + threads * per_thread);
  for (int th = 0; th < threads; ++th)
    EXPECT_EQ(t->desired.find("t" + std::to_string(th))->as_int(), per_thread - 1) << "no lost update";
  auto n = notes();
  ASSERT_EQ(n.size(), static_cast<std::size_t>(threads * per_thread));
  for (std::size_t i = 0; i < n.size(); ++i) {
    EXPECT_EQ(n[i].version, static_cast<std::int64_t>(i) + 2) << "notifications in $version order";
    EXPECT_EQ(J(n[i].body).find("$version")->as_int(), n[i].version);
  }
  EXPECT_EQ(events_of(message_source::twin_change_events).size(), static_cast<std::size_t>(threads * per_thread));
  // What is stored is the newest version.
  auto stored = decode_twin(**store_->get(store::table::twins, "dev1"));
  ASSERT_TRUE(stored);
  EXPECT_EQ(*stored, *t);
}

TEST_F(TwinManagerTest, DeleteErasesTwinsAndLifecycleEventsAreLogged) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "mod1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev2"}));
  ASSERT_TRUE(update("dev1", "", desired_patch(R"({"a":1})")));
  ASSERT_TRUE(update("dev1", "mod1", desired_patch(R"({"b":1})")));
  ASSERT_TRUE(update("dev2", "", desired_patch(R"({"c":1})")));
  ASSERT_TRUE(reg_->remove("dev1"));
  EXPECT_EQ(twins_->get("dev1").err().code, errc::not_found);
  EXPECT_EQ(twins_->get("dev1", "mod1").err().code, errc::not_found);
  EXPECT_FALSE(store_->get(store::table::twins, "dev1")->has_value());
  EXPECT_FALSE(store_->get(store::table::twins, module_key("dev1", "mod1"))->has_value()) << "module twin erased";
  EXPECT_EQ(update("dev1", "", desired_patch(R"({"a":2})")).err().code, errc::not_found);
  EXPECT_EQ(twins_->get("dev2")->desired_version, 2) << "other devices keep their twins";

  // Recreated identities start over.
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "mod1"}));
  auto t = twins_->get("dev1");
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->version, 1);
  EXPECT_EQ(t->desired_version, 1);
  EXPECT_EQ(S(t->desired), "{}");
  auto mt = twins_->get("dev1", "mod1");
  ASSERT_TRUE(mt) << mt.err().message;
  EXPECT_EQ(mt->desired_version, 1);
  EXPECT_EQ(S(mt->desired), "{}");
  auto r = update("dev1", "", desired_patch(R"({"z":1})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->desired_version, 2);

  // Module deletion alone.
  ASSERT_TRUE(reg_->remove("dev1", "mod1"));
  EXPECT_EQ(twins_->get("dev1", "mod1").err().code, errc::not_found);
  EXPECT_TRUE(twins_->get("dev1"));

  auto ev = events_of(message_source::device_lifecycle_events);
  std::vector<std::string> seen;
  for (auto& m : ev) {
    EXPECT_EQ(app(m, "iothub-message-schema"), "deviceLifecycleNotification");
    EXPECT_EQ(app(m, "hubName"), "myhub");
    EXPECT_EQ(*find_property(full_system_properties(m), sysprop::message_source), "deviceLifecycleEvents");
    auto body = J(as_string_view(m.body));
    EXPECT_EQ(body.find("deviceId")->as_string(), m.device_id);
    seen.push_back(m.device_id + (m.module_id.empty() ? "" : "/" + m.module_id) + ":" + app(m, "opType"));
    if (!m.module_id.empty()) {
      EXPECT_EQ(app(m, "moduleId"), m.module_id);
    }
  }
  auto count = [&](const std::string& s) { return std::count(seen.begin(), seen.end(), s); };
  EXPECT_EQ(count("dev1:createDeviceIdentity"), 2);
  EXPECT_EQ(count("dev1/mod1:createDeviceIdentity"), 2);
  EXPECT_EQ(count("dev2:createDeviceIdentity"), 1);
  EXPECT_EQ(count("dev1:deleteDeviceIdentity"), 1);
  // One when the device (and with it its module) was deleted, one for the module's own delete later.
  EXPECT_EQ(count("dev1/mod1:deleteDeviceIdentity"), 2);
  // The delete event carries the twin as it was.
  for (auto& m : ev) {
    if (m.device_id != "dev1" || !m.module_id.empty() || app(m, "opType") != "deleteDeviceIdentity") continue;
    auto body = J(as_string_view(m.body));
    auto* d = body.find("properties") ? body.find("properties")->find("desired") : nullptr;
    ASSERT_NE(d, nullptr) << as_string_view(m.body);
    EXPECT_EQ(d->find("a")->as_int(), 1) << as_string_view(m.body);
  }
}

TEST_F(TwinManagerTest, TwinSurvivesReopen) {
  ASSERT_TRUE(reg_->create({.device_id = "dev1"}));
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "m"}));
  twin_update u;
  u.tags = J(R"({"k":"v"})");
  u.desired = J(R"({"d":[1,2,{"x":null}],"f":1.5})");
  auto r = update("dev1", "", u);
  ASSERT_TRUE(r);
  auto rv = patch("dev1", "", R"({"r":true})");
  ASSERT_TRUE(rv);
  ASSERT_TRUE(patch("dev1", "m", R"({"mr":1})"));
  auto before = *twins_->get("dev1");
  auto before_m = *twins_->get("dev1", "m");
  close();
  open();
  auto after = twins_->get("dev1");
  ASSERT_TRUE(after) << after.err().message;
  EXPECT_EQ(*after, before);
  EXPECT_EQ(after->reported_version, 2);
  EXPECT_EQ(twin_etag(*after), twin_etag(before));
  EXPECT_EQ(*twins_->get("dev1", "m"), before_m);
  // And writing goes on from the stored versions.
  auto r2 = update("dev1", "", desired_patch(R"({"g":2})"));
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->desired_version, r->desired_version + 1);
}

}  // namespace
}  // namespace fleethub::hub
