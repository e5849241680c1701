// The registry against a real LMDB store: CRUD, generated keys, id rules, etags, modules, policies, reopen.
#include "fleethub/hub/registry.hpp"

#include <gtest/gtest.h>

#include <filesystem>

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
