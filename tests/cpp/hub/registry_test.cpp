// The registry against a real LMDB store: CRUD, generated keys, id rules, etags, modules, policies, reopen.
#include "fleethub/hub/registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-registry-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    open();
  }
  void TearDown() override {
    reg_.reset();
    store_->close();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    store::lmdb_options o;
    o.path = dir_.string();
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    reg_ = std::make_unique<registry>(*store_, [this] { return ++clock_; });
  }
  std::filesystem::path dir_;
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::int64_t clock_ = 1000;
};

TEST_F(RegistryTest, CreateGeneratesKeysAndIdentity) {
  auto d = reg_->create({.device_id = "dev-1"});
  ASSERT_TRUE(d) << d.err().message;
  EXPECT_EQ(base64_decode(d->primary_key)->size(), 32u);
  EXPECT_EQ(base64_decode(d->secondary_key)->size(), 32u);
  EXPECT_NE(d->primary_key, d->secondary_key);
  EXPECT_TRUE(d->enabled);
  EXPECT_FALSE(d->generation_id.empty());
  EXPECT_EQ(d->etag, "MQ==");  // base64("1")
  auto again = reg_->create({.device_id = "dev-1"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.err().code, errc::already_exists);
}

TEST_F(RegistryTest, RejectsBadIdsAndKeys) {
  EXPECT_EQ(reg_->create({.device_id = "a b"}).err().code, errc::invalid_argument);
  EXPECT_EQ(reg_->create({.device_id = std::string(129, 'a')}).err().code, errc::invalid_argument);
  EXPECT_TRUE(reg_->create({.device_id = std::string(128, 'a')}));
  EXPECT_EQ(reg_->create({.device_id = "k", .primary_key = "not base64!"}).err().code, errc::invalid_argument);
}

TEST_F(RegistryTest, UpdateChecksEtagAndBumpsIt) {
  auto d = *reg_->create({.device_id = "d"});
  auto u = reg_->update({.device_id = "d", .enabled = false, .status_reason = "maintenance"}, "\"" + d.etag + "\"");
  ASSERT_TRUE(u) << u.err().message;
  EXPECT_FALSE(u->enabled);
  EXPECT_NE(u->etag, d.etag);
  EXPECT_GT(u->status_updated_ms, d.status_updated_ms);
  auto stale = reg_->update({.device_id = "d", .enabled = true}, d.etag);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.err().code, errc::precondition_failed);
  EXPECT_TRUE(reg_->update({.device_id = "d", .enabled = true}, "*"));
  EXPECT_EQ(reg_->update({.device_id = "nope"}).err().code, errc::not_found);
}

TEST_F(RegistryTest, RecreateChangesGenerationId) {
  auto d = *reg_->create({.device_id = "d"});
  ASSERT_TRUE(reg_->remove("d"));
  EXPECT_EQ(reg_->get("d").err().code, errc::not_found);
  auto d2 = *reg_->create({.device_id = "d"});
  EXPECT_NE(d.generation_id, d2.generation_id);
}

TEST_F(RegistryTest, ListPagesInIdOrderAndStats) {
  for (auto id : {"c", "a", "b", "d"}) ASSERT_TRUE(reg_->create({.device_id = id}));
  ASSERT_TRUE(reg_->update({.device_id = "b", .enabled = false}));
  auto page = reg_->list("", 2);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].device_id, "a");
  EXPECT_EQ((*page)[1].device_id, "b");
  page = reg_->list("b", 10);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].device_id, "c");
  auto s = reg_->stats();
  EXPECT_EQ(s->total, 4u);
  EXPECT_EQ(s->disabled, 1u);
}

TEST_F(RegistryTest, ModulesBelongToTheirDevice) {
  EXPECT_EQ(reg_->create({.device_id = "d", .module_id = "m"}).err().code, errc::not_found) << "no parent";
  ASSERT_TRUE(reg_->create({.device_id = "d"}));
  ASSERT_TRUE(reg_->create({.device_id = "d", .module_id = "m"}));
  ASSERT_TRUE(reg_->create({.device_id = "d", .module_id = "n"}));
  EXPECT_EQ(reg_->list_modules("d")->size(), 2u);
  EXPECT_EQ(reg_->list("", 10)->size(), 1u) << "modules are not devices";
  ASSERT_TRUE(reg_->remove("d"));
  EXPECT_EQ(reg_->list_modules("d")->size(), 0u) << "deleting a device deletes its modules";
}

TEST_F(RegistryTest, DefaultPoliciesPersistAcrossReopen) {
  ASSERT_TRUE(reg_->ensure_default_policies());
  auto owner = reg_->get_policy("iothubowner");
  ASSERT_TRUE(owner);
  EXPECT_EQ(owner->rights, registry_read | registry_write | service_connect | device_connect);
  EXPECT_EQ(reg_->list_policies()->size(), 5u);
  ASSERT_TRUE(reg_->create({.device_id = "persisted"}));
  reg_.reset();
  store_->close();
  open();
  ASSERT_TRUE(reg_->ensure_default_policies());
  EXPECT_EQ(reg_->get_policy("iothubowner")->primary_key, owner->primary_key) << "keys are not regenerated";
  EXPECT_TRUE(reg_->get("persisted"));
  EXPECT_EQ(rights_to_string(owner->rights), "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect");
  EXPECT_EQ(*rights_from_string("ServiceConnect, DeviceConnect"), service_connect | device_connect);
  EXPECT_FALSE(rights_from_string("Bogus"));
}

}  // namespace
}  // namespace fleethub::hub

namespace fleethub::hub {
namespace {

// Writes to different devices run concurrently (their commits share group commits); writes to one device
// stay serialized: of several concurrent creates of one id exactly one wins, and concurrent updates with
// the same etag let exactly one through.
TEST_F(RegistryTest, ConcurrentWritesStayConsistentPerDevice) {
  std::atomic<std::int64_t> clock{1700000000000};
  registry reg(*store_, [&] { return ++clock; });
  constexpr int threads = 8, per_thread = 20;
  std::vector<std::thread> ts;
  std::atomic<int> created{0}, dup_wins{0}, dup_refused{0};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        device_spec s;
        s.device_id = "c" + std::to_string(t) + "-" + std::to_string(i);
        if (reg.create(s)) ++created;
        device_spec d;
        d.device_id = "same-" + std::to_string(i);
        auto r = reg.create(d);
        if (r) ++dup_wins;
        else if (r.err().code == errc::already_exists) ++dup_refused;
      }
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(created.load(), threads * per_thread);
  EXPECT_EQ(dup_wins.load(), per_thread);
  EXPECT_EQ(dup_refused.load(), (threads - 1) * per_thread);
  auto st = reg.stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->total, static_cast<std::uint64_t>(threads * per_thread + per_thread));

  auto cur = reg.get("same-0");
  ASSERT_TRUE(cur);
  std::atomic<int> ok{0}, stale{0};
  ts.clear();
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      device_spec s;
      s.device_id = "same-0";
      s.status_reason = "x";
      auto r = reg.update(s, cur->etag);
      if (r) ++ok;
      else if (r.err().code == errc::precondition_failed) ++stale;
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(stale.load(), threads - 1);
}

}  // namespace
}  // namespace fleethub::hub
