// The query runner against a real LMDB store: paging across scan chunks, TOP, module twins, aggregates
// paged by offset, continuation token validity, and (disabled by default) timings over 100,000 devices:
//   query_runner_test --gtest_also_run_disabled_tests --gtest_filter='query_runner_test.*Perf*'
#include "fleethub/hub/query_runner.hpp"
#include "fleethub/query/query.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <iostream>
#include <set>

#include "fleethub/core/crypto.hpp"
#include "fleethub/hub/engine.hpp"

namespace fleethub::hub {
namespace {

constexpr std::int64_t t0 = 1700000000000;

class query_runner_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-query-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    store::lmdb_options o;
    o.path = dir_.string();
    o.durable = false;  // seeding writes many records; durability is not what these tests are about
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    reg_ = std::make_unique<registry>(*store_, [] { return t0; });
    eng_ = std::make_unique<engine>(engine_options{}, *store_, *reg_, logger{});
    runner_ = std::make_unique<query_runner>(*eng_, *reg_, std::chrono::seconds(600));
  }
  void TearDown() override {
    runner_.reset();
    eng_.reset();
    reg_.reset();
    if (store_) store_->close();
    std::filesystem::remove_all(dir_);
  }

  static std::string id_of(int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "d%06d", i);
    return buf;
  }
  // Writes n devices with twins straight to the store (fast seeding): tags.floor = i % 10,
  // tags.building = "b" + i % 30, properties.reported.temp = i. `twins` false leaves the twins out.
  void seed(int n, bool twins = true) {
    const auto key = random_key_base64();
    for (int start = 0; start < n; start += 5000) {
      store::write_batch b;
      for (int i = start; i < std::min(n, start + 5000); ++i) {
        device_record d;
        d.device_id = id_of(i);
        d.generation_id = std::to_string(i);
        d.created_ms = t0;
        d.primary_key = d.secondary_key = key;
        b.ops.push_back(store::put_op{store::table::devices, d.device_id, encode_device_record(d)});
        if (!twins) continue;
        auto t = new_twin(d.device_id, "", t0);
        t.tags = json::object{{"floor", i % 10}, {"building", "b" + std::to_string(i % 30)}};
        ASSERT_TRUE(apply_patch(t, twin_section::reported, json::object{{"temp", i}}, t0));
        b.ops.push_back(store::put_op{store::table::twins, d.device_id, encode_twin(t)});
      }
      ASSERT_TRUE(store_->submit_and_wait(std::move(b)).ok());
    }
  }
  // Every page of a query; checks the page sizes and returns all items.
  json::array all_pages(const std::string& q, std::size_t page, std::vector<std::size_t>* sizes = nullptr) {
    json::array out;
    std::string cont;
    for (int guard = 0; guard < 100000; ++guard) {
      auto r = runner_->run(q, cont, page);
      EXPECT_TRUE(r) << r.err().message;
      if (!r) break;
      EXPECT_LE(r->items.size(), page);
      if (sizes) sizes->push_back(r->items.size());
      for (auto& v : r->items) out.push_back(std::move(v));
      cont = r->continuation;
      if (cont.empty()) break;
    }
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<engine> eng_;
  std::unique_ptr<query_runner> runner_;
};

TEST_F(query_runner_test, PagesOverEveryDeviceInKeyOrder) {
  seed(300);
  std::vector<std::size_t> sizes;
  auto items = all_pages("SELECT * FROM devices", 50, &sizes);
  ASSERT_EQ(items.size(), 300u);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{50, 50, 50, 50, 50, 50}));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(items[i].find("deviceId")->as_string(), id_of(i));
  // Each item is the service twin, as GET /twins/{id} shows it.
  EXPECT_EQ(items[7].find("tags")->find("floor")->as_int(), 7);
  EXPECT_EQ(items[7].find("properties")->find("reported")->find("temp")->as_int(), 7);
  EXPECT_EQ(items[7].find("status")->as_string(), "enabled");
  auto first = runner_->run("SELECT * FROM devices", {}, 0);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->items.size(), query_runner::default_page_size);
  EXPECT_EQ(first->item_type, "twin");
}

TEST_F(query_runner_test, SparseWhereAcrossScanChunksAndMissingTwins) {
  seed(3000);
  std::vector<std::size_t> sizes;
  auto items = all_pages("SELECT * FROM devices WHERE tags.floor = 7", 100, &sizes);
  ASSERT_EQ(items.size(), 300u);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{100, 100, 100}));  // exactly full: no empty trailing page
  std::set<std::string> ids;
  for (auto& t : items) ids.insert(t.find("deviceId")->as_string());
  EXPECT_EQ(ids.size(), 300u);
  // Identities without a stored twin are queried with a fresh twin.
  store::write_batch b;
  device_record d;
  d.device_id = "e-no-twin";
  d.generation_id = "1";
  d.created_ms = t0;
  b.ops.push_back(store::put_op{store::table::devices, d.device_id, encode_device_record(d)});
  ASSERT_TRUE(store_->submit_and_wait(std::move(b)).ok());
  auto r = runner_->run("SELECT * FROM devices WHERE deviceId = 'e-no-twin'", {}, 10);
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->items.size(), 1u);
  EXPECT_EQ(r->items[0].find("properties")->find("desired")->find("$version")->as_int(), 1);
  EXPECT_TRUE(r->continuation.empty());
}

TEST_F(query_runner_test, TopCapsTheTotal) {
  seed(100);
  std::vector<std::size_t> sizes;
  EXPECT_EQ(all_pages("SELECT TOP 25 * FROM devices", 10, &sizes).size(), 25u);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{10, 10, 5}));
  auto r = runner_->run("SELECT TOP 5 * FROM devices WHERE tags.floor = 1", {}, 10);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->items.size(), 5u);
  EXPECT_TRUE(r->continuation.empty());
  r = runner_->run("SELECT TOP 10 * FROM devices", {}, 10);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->items.size(), 10u);
  EXPECT_TRUE(r->continuation.empty());  // TOP reached exactly at the page end
}

TEST_F(query_runner_test, ModuleTwins) {
  for (auto dev : {"a", "b", "c"}) {
    ASSERT_TRUE(reg_->create({.device_id = dev}));
    for (auto mod : {"m1", "m2"}) ASSERT_TRUE(reg_->create({.device_id = dev, .module_id = mod}));
  }
  std::promise<result<twin_document>> done;
  twin_update u;
  u.desired = json::object{{"level", 5}};
  eng_->twins().update("b", "m2", u, [&](result<twin_document> r) { done.set_value(std::move(r)); });
  ASSERT_TRUE(done.get_future().get());

  auto all = all_pages("SELECT * FROM devices.modules", 4);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0].find("deviceId")->as_string(), "a");
  EXPECT_EQ(all[0].find("moduleId")->as_string(), "m1");
  EXPECT_EQ(all[5].find("moduleId")->as_string(), "m2");
  EXPECT_EQ(all_pages("SELECT * FROM devices.modules WHERE moduleId = 'm1'", 10).size(), 3u);
  auto r = all_pages("SELECT * FROM devices.modules WHERE properties.desired.level = 5", 10);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].find("deviceId")->as_string(), "b");
  // FROM devices still sees only the device twins.
  EXPECT_EQ(all_pages("SELECT * FROM devices", 100).size(), 3u);
}

TEST_F(query_runner_test, AggregatesArePagedByOffset) {
  seed(300);
  std::vector<std::size_t> sizes;
  auto rows = all_pages("SELECT tags.building AS b, COUNT() AS n FROM devices GROUP BY tags.building", 7, &sizes);
  ASSERT_EQ(rows.size(), 30u);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{7, 7, 7, 7, 2}));
  std::set<std::string> groups;
  std::int64_t total = 0;
  for (auto& row : rows) {
    groups.insert(row.find("b")->as_string());
    total += row.find("n")->as_int();
  }
  EXPECT_EQ(groups.size(), 30u);
  EXPECT_EQ(total, 300);
  auto r = runner_->run("SELECT COUNT() AS n FROM devices WHERE tags.floor < 5", {}, 10);
  ASSERT_TRUE(r) << r.err().message;
  ASSERT_EQ(r->items.size(), 1u);
  EXPECT_EQ(r->items[0].find("n")->as_int(), 150);
  EXPECT_EQ(r->item_type, "raw");
  EXPECT_EQ(all_pages("SELECT TOP 3 tags.building AS b, COUNT() AS n FROM devices GROUP BY tags.building", 2).size(), 3u);
}

TEST_F(query_runner_test, ProjectionsAndJobs) {
  seed(20);
  auto r = runner_->run("SELECT deviceId, tags.floor AS f FROM devices WHERE tags.floor = 3", {}, 10);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->item_type, "raw");
  ASSERT_EQ(r->items.size(), 2u);
  EXPECT_EQ(r->items[0].find("deviceId")->as_string(), id_of(3));
  EXPECT_EQ(r->items[0].find("f")->as_int(), 3);
  EXPECT_FALSE(r->items[0].find("tags"));
  r = runner_->run("SELECT * FROM devices.jobs", {}, 10);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->item_type, "deviceJob");
  EXPECT_TRUE(r->items.empty());
  EXPECT_TRUE(r->continuation.empty());
}

TEST_F(query_runner_test, ContinuationTokensAreCheckedAndSyntaxErrorsReported) {
  seed(30);
  const std::string q = "SELECT * FROM devices";
  auto r = runner_->run(q, {}, 10);
  ASSERT_TRUE(r);
  const auto token = r->continuation;
  ASSERT_FALSE(token.empty());
  EXPECT_TRUE(runner_->run(q, token, 10));
  // Altered, for another query, from another runner (another secret), garbage, expired.
  auto tampered = token;
  tampered[5] = tampered[5] == 'x' ? 'y' : 'x';
  EXPECT_EQ(runner_->run(q, tampered, 10).err().code, errc::invalid_argument);
  EXPECT_EQ(runner_->run("SELECT * FROM devices WHERE tags.floor = 1", token, 10).err().code, errc::invalid_argument);
  query_runner other(*eng_, *reg_, std::chrono::seconds(600));
  EXPECT_EQ(other.run(q, token, 10).err().code, errc::invalid_argument);
  EXPECT_EQ(runner_->run(q, "!!!", 10).err().code, errc::invalid_argument);
  query_runner short_lived(*eng_, *reg_, std::chrono::seconds(0));
  auto s = short_lived.run(q, {}, 10);
  ASSERT_TRUE(s);
  auto expired = short_lived.run(q, s->continuation, 10);
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.err().message.find("expired"), std::string::npos) << expired.err().message;

  auto bad = runner_->run("SELECT * FORM devices", {}, 10);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.err().code, errc::invalid_argument);
  EXPECT_EQ(runner_->run("SELECT * FROM devices WHERE x = '" + std::string(9000, 'a') + "'", {}, 10).err().code,
            errc::too_large);
}

// Timings over 100,000 devices (run explicitly; see the top of the file).
TEST_F(query_runner_test, DISABLED_Perf100kDevices) {
  const int n = 100000;
  auto t = std::chrono::steady_clock::now();
  seed(n);
  auto ms = [&] {
    auto now = std::chrono::steady_clock::now();
    auto d = std::chrono::duration<double, std::milli>(now - t).count();
    t = now;
    return d;
  };
  std::cout << "seed " << n << " devices: " << ms() << " ms\n";
  auto first = runner_->run("SELECT * FROM devices WHERE tags.floor = 3", {}, 100);
  ASSERT_TRUE(first);
  std::cout << "WHERE tags.floor = 3, first page of 100: " << ms() << " ms\n";
  auto sparse = all_pages("SELECT * FROM devices WHERE tags.floor = 3 AND tags.building = 'b13'", 100);
  std::cout << "WHERE tags (" << sparse.size() << " matches, full scan): " << ms() << " ms\n";
  auto dense = all_pages("SELECT * FROM devices WHERE tags.floor = 3", 100);
  std::cout << "WHERE tags.floor = 3, all " << dense.size() << " results in pages of 100: " << ms() << " ms\n";
  auto groups = all_pages("SELECT tags.floor AS floor, COUNT() AS n FROM devices GROUP BY tags.floor", 100);
  std::cout << "GROUP BY tags.floor (" << groups.size() << " groups): " << ms() << " ms\n";
  auto count = runner_->run("SELECT COUNT() AS n FROM devices", {}, 100);
  ASSERT_TRUE(count);
  std::cout << "COUNT() over all: " << ms() << " ms\n";
  EXPECT_EQ(dense.size(), 10000u);
  EXPECT_EQ(groups.size(), 10u);
}

}  // namespace
}  // namespace fleethub::hub

namespace fleethub::hub {
namespace {

// The WHERE fast path (tags and user properties read from the twin itself, ids from the record) must agree
// with evaluating the condition on the full service twin (what SELECT * returns) for every kind of path.
TEST_F(query_runner_test, FastPathAgreesWithTheServiceTwin) {
  seed(60);
  ASSERT_TRUE(reg_->update({.device_id = id_of(3), .enabled = false}));
  const auto twins = all_pages("SELECT * FROM devices", 100);
  ASSERT_EQ(twins.size(), 60u);
  const char* conditions[] = {
      "tags.floor = 3",
      "TAGS.Floor = 3",
      "tags = tags",
      "IS_OBJECT(tags)",
      "properties.reported.temp > 50",
      "Properties.Reported.TEMP > 50",
      "IS_DEFINED(properties.reported.$metadata.temp)",
      "properties.reported.$version = 2",
      "IS_OBJECT(properties.desired)",
      "deviceId = 'd000007'",
      "DeviceId = 'd000007'",
      "STARTSWITH(deviceId, 'd00001')",
      "IS_DEFINED(moduleId)",
      "status = 'disabled'",
      "tags.nope = 1",
      "properties.desired.x = 1",
  };
  for (const char* c : conditions) {
    const std::string text = std::string("SELECT deviceId FROM devices WHERE ") + c;
    auto q = fleethub::query::compile_query(text);
    ASSERT_TRUE(q) << c;
    json::array want;
    for (const auto& t : twins)
      if (q->matches(t)) want.push_back(json::object{{"deviceId", *t.find("deviceId")}});
    EXPECT_EQ(json::serialize(json::value(all_pages(text, 100))), json::serialize(json::value(want))) << c;
  }
  EXPECT_EQ(all_pages("SELECT deviceId FROM devices WHERE tags.floor = 3", 100).size(), 6u);
  EXPECT_EQ(all_pages("SELECT deviceId FROM devices WHERE IS_DEFINED(properties.reported.$metadata.temp)", 100).size(),
            60u);
  EXPECT_EQ(all_pages("SELECT deviceId FROM devices WHERE status = 'disabled'", 100).size(), 1u);
  EXPECT_EQ(all_pages("SELECT deviceId FROM devices WHERE DeviceId = 'd000007'", 100).size(), 1u);
}

}  // namespace
}  // namespace fleethub::hub
