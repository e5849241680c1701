// The REST API against a real engine, registry and LMDB store in a temp dir: requests built by hand as the
// azure-iot-hub SDK and device HTTP clients send them; status codes, headers and bodies checked.
#include "fleethub/hub/http_api.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "fleethub/core/encoding.hpp"
#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/sas.hpp"

namespace fleethub::hub {
namespace {

constexpr std::int64_t far_future = 4102444800;  // 2100-01-01

struct recording_link : connection_link {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<outbound_message> delivered;
  void kick(std::string) override {}
  void deliver(outbound_message m) override {
    {
      std::lock_guard lk(mu);
      delivered.push_back(std::move(m));
    }
    cv.notify_all();
  }
  void clear() {
    std::lock_guard lk(mu);
    delivered.clear();
  }
  std::optional<outbound_message> wait_for(const std::string& prefix) {
    std::unique_lock lk(mu);
    std::optional<outbound_message> found;
    cv.wait_for(lk, std::chrono::seconds(5), [&] {
      for (auto& m : delivered)
        if (m.topic.rfind(prefix, 0) == 0) {
          found = m;
          return true;
        }
      return false;
    });
    return found;
  }
};

class http_api_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-http-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    store::lmdb_options o;
    o.path = dir_.string();
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    reg_ = std::make_unique<registry>(*store_, [] { return to_unix_ms(std::chrono::system_clock::now()); });
    ASSERT_TRUE(reg_->ensure_default_policies());
    engine_options eo;
    eo.hostname = "hub.local";
    eo.c2d.feedback_interval = std::chrono::milliseconds(0);  // flush feedback at the next tick
    eng_ = std::make_unique<engine>(eo, *store_, *reg_, logger{});
    ASSERT_TRUE(eng_->c2d().load());
    api_ = std::make_unique<http_api>(*eng_, *reg_, http_api_options{"hub.local"});
    owner_ = policy_token("iothubowner");
  }
  void TearDown() override {
    api_.reset();
    eng_.reset();
    reg_.reset();
    if (store_) store_->close();
    std::filesystem::remove_all(dir_);
  }

  std::string policy_token(const std::string& name, std::string host = "hub.local", std::int64_t se = far_future) {
    return make_sas_token(host, reg_->get_policy(name)->primary_key, se, name);
  }
  std::string device_token(const device_record& d) {
    return make_sas_token("hub.local/devices/" + d.device_id, d.primary_key, far_future);
  }
  // Sends a request (owner token unless `auth` is given; "" sends none) and waits for the answer.
  proto::http::response send(std::string method, std::string target, std::string body = {},
                             std::vector<proto::http::header> headers = {}, std::optional<std::string> auth = {}) {
    proto::http::request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    r.headers = std::move(headers);
    auto a = auth.value_or(owner_);
    if (!a.empty()) r.headers.push_back({"Authorization", a});
    auto got = std::make_shared<std::promise<proto::http::response>>();
    auto fut = got->get_future();
    api_->handle(r, "127.0.0.1", [got](proto::http::response x) { got->set_value(std::move(x)); });
    EXPECT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return fut.get();
  }
  static json::value body_of(const proto::http::response& r) {
    auto v = json::parse(r.body);
    EXPECT_TRUE(v) << r.body;
    return v ? *v : json::value();
  }
  static std::string header(const proto::http::response& r, std::string_view name) {
    const auto* v = r.find(name);
    return v ? *v : std::string();
  }
  // Asserts an IoT Hub error answer.
  static void expect_error(const proto::http::response& r, int status, const std::string& name, int code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(header(r, "iothub-errorcode"), name) << r.body;
    EXPECT_EQ(header(r, "Content-Type"), "application/json; charset=utf-8");
    auto b = body_of(r);
    ASSERT_TRUE(b.find("errorCode")) << r.body;
    EXPECT_EQ(b.find("errorCode")->as_int(), code) << r.body;
    EXPECT_TRUE(b.find("trackingId") && b.find("message") && b.find("timestampUtc") && b.find("info")) << r.body;
  }
  device_record make_device(const std::string& id) {
    auto d = reg_->create({.device_id = id});
    EXPECT_TRUE(d) << d.err().message;
    return *d;
  }
  // Sends a C2D message and waits until it is durable.
  void send_c2d(const std::string& device, std::string body, c2d_ack ack = c2d_ack::none) {
    c2d_send_request req;
    req.device_id = device;
    req.body = to_bytes(body);
    req.system_properties.push_back({std::string(sysprop::message_id), "mid-" + body});
    req.app_properties.push_back({"color", "red"});
    req.ack = ack;
    std::promise<result<c2d_sent>> done;
    eng_->c2d().send(std::move(req), [&](result<c2d_sent> r) { done.set_value(std::move(r)); });
    auto r = done.get_future().get();
    ASSERT_TRUE(r) << r.err().message;
  }
  std::vector<message> telemetry() {
    store_->submit_and_wait({});
    std::vector<message> out;
    for (std::uint32_t p = 0; p < store_->partition_count(); ++p) {
      auto rows = store_->read_events(p, 0, 100000);
      if (!rows) continue;
      for (auto& row : *rows)
        if (auto m = decode_message(row.record); m && m->source == message_source::telemetry) out.push_back(*m);
    }
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<engine> eng_;
  std::unique_ptr<http_api> api_;
  std::string owner_;
};

constexpr const char* create_body =
    R"({"deviceId":"dev1","status":"enabled","authentication":{"symmetricKey":{"primaryKey":null,"secondaryKey":null},"type":"sas"},"capabilities":{"iotEdge":false}})";

TEST_F(http_api_test, DevicePutAnswers200OnCreateAndUpdateAndGeneratesKeys) {
  auto r = send("PUT", "/devices/dev1?api-version=2021-04-12", create_body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(header(r, "Content-Type"), "application/json; charset=utf-8");
  auto d = body_of(r);
  EXPECT_EQ(d.find("deviceId")->as_string(), "dev1");
  const auto key = d.find("authentication")->find("symmetricKey")->find("primaryKey")->as_string();
  EXPECT_EQ(base64_decode(key)->size(), 32u);
  EXPECT_EQ(d.find("status")->as_string(), "enabled");
  EXPECT_EQ(d.find("connectionState")->as_string(), "Disconnected");
  EXPECT_EQ(d.find("lastActivityTime")->as_string(), "0001-01-01T00:00:00Z");
  EXPECT_FALSE(d.find("generationId")->as_string().empty());
  const auto etag = d.find("etag")->as_string();

  // Update with the current etag (quoted, as the SDK sends it), keys given: kept.
  std::string upd = R"({"deviceId":"dev1","status":"disabled","statusReason":"maintenance","etag":"bogus",)"
                    R"("authentication":{"type":"sas","symmetricKey":{"primaryKey":")" + key +
                    R"(","secondaryKey":")" + key + R"("}}})";
  r = send("PUT", "/devices/dev1", upd, {{"If-Match", "\"" + etag + "\""}});
  ASSERT_EQ(r.status, 200) << r.body;
  d = body_of(r);
  EXPECT_EQ(d.find("status")->as_string(), "disabled");
  EXPECT_EQ(d.find("statusReason")->as_string(), "maintenance");
  EXPECT_EQ(d.find("authentication")->find("symmetricKey")->find("secondaryKey")->as_string(), key);
  EXPECT_NE(d.find("etag")->as_string(), etag);

  // A stale etag fails; the quoted wildcard does not.
  expect_error(send("PUT", "/devices/dev1", upd, {{"If-Match", "\"" + etag + "\""}}), 412, "PreconditionFailed", 412001);
  EXPECT_EQ(send("PUT", "/devices/dev1", upd, {{"If-Match", "\"*\""}}).status, 200);
  // The body's device id must match the path.
  expect_error(send("PUT", "/devices/dev2", create_body), 400, "ArgumentInvalid", 400004);
}

TEST_F(http_api_test, DeviceGetListDelete) {
  for (auto id : {"a", "b", "c"}) make_device(id);
  auto r = send("GET", "/devices/b?api-version=2021-04-12");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r).find("deviceId")->as_string(), "b");
  expect_error(send("GET", "/devices/nope"), 404, "DeviceNotFound", 404001);

  r = send("GET", "/devices?top=2");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r).as_array().size(), 2u);
  EXPECT_EQ(body_of(send("GET", "/devices?top=0")).as_array().size(), 3u);  // out of range -> 1000

  auto etag = reg_->get("b")->etag;
  expect_error(send("DELETE", "/devices/b", {}, {{"If-Match", "\"stale\""}}), 412, "PreconditionFailed", 412001);
  r = send("DELETE", "/devices/b", {}, {{"If-Match", "\"" + etag + "\""}});
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  expect_error(send("GET", "/devices/b"), 404, "DeviceNotFound", 404001);
  EXPECT_EQ(send("DELETE", "/devices/c", {}, {{"If-Match", "\"*\""}}).status, 204);
  expect_error(send("DELETE", "/devices/c"), 404, "DeviceNotFound", 404001);
  // Percent-encoded ids and a trailing slash.
  make_device("x#1");
  EXPECT_EQ(body_of(send("GET", "/devices/x%231/")).find("deviceId")->as_string(), "x#1");
}

TEST_F(http_api_test, ModulesCrud) {
  make_device("dev1");
  auto r = send("PUT", "/devices/dev1/modules/m1", R"({"moduleId":"m1","deviceId":"dev1","managedBy":"me"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto m = body_of(r);
  EXPECT_EQ(m.find("moduleId")->as_string(), "m1");
  EXPECT_EQ(m.find("managedBy")->as_string(), "me");
  EXPECT_FALSE(m.find("authentication")->find("symmetricKey")->find("primaryKey")->is_null());
  r = send("PUT", "/devices/dev1/modules/m1", R"({"moduleId":"m1","deviceId":"dev1"})",
           {{"If-Match", "\"" + m.find("etag")->as_string() + "\""}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(send("GET", "/devices/dev1/modules/m1").status, 200);
  r = send("GET", "/devices/dev1/modules");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r).as_array().size(), 1u);
  expect_error(send("GET", "/devices/dev1/modules/m2"), 404, "ModuleNotFound", 404010);
  expect_error(send("GET", "/devices/ghost/modules/m1"), 404, "DeviceNotFound", 404001);
  expect_error(send("PUT", "/devices/ghost/modules/m1", "{}"), 404, "DeviceNotFound", 404001);
  expect_error(send("GET", "/devices/ghost/modules"), 404, "DeviceNotFound", 404001);
  EXPECT_EQ(send("DELETE", "/devices/dev1/modules/m1").status, 204);
  expect_error(send("DELETE", "/devices/dev1/modules/m1"), 404, "ModuleNotFound", 404010);
}

TEST_F(http_api_test, BulkRegistryOperations) {
  auto r = send("POST", "/devices",
                R"([{"id":"b1","importMode":"create","tags":{"site":"x"}},{"id":"b2","importMode":"create","status":"disabled"}])");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_of(r).find("isSuccessful")->as_bool(), true);
  EXPECT_TRUE(body_of(r).find("errors")->as_array().empty());
  EXPECT_FALSE(reg_->get("b2")->enabled);
  EXPECT_EQ(eng_->twins().get("b1")->tags.find("site")->as_string(), "x");

  // A duplicate create and an unknown mode fail per item; the others still apply.
  r = send("POST", "/devices",
           R"([{"id":"b1","importMode":"create"},{"id":"b3"},{"id":"b2","importMode":"bogus"},)"
           R"({"id":"b2","importMode":"updateTwin","tags":{"floor":3}}])");
  ASSERT_EQ(r.status, 400) << r.body;
  auto b = body_of(r);
  EXPECT_FALSE(b.find("isSuccessful")->as_bool());
  const auto& errs = b.find("errors")->as_array();
  ASSERT_EQ(errs.size(), 2u) << r.body;
  EXPECT_EQ(errs[0].find("deviceId")->as_string(), "b1");
  EXPECT_EQ(errs[0].find("errorCode")->as_string(), "DeviceAlreadyExists");
  EXPECT_EQ(errs[0].find("operation")->as_string(), "create");
  EXPECT_EQ(errs[1].find("errorCode")->as_string(), "ArgumentInvalid");
  EXPECT_TRUE(reg_->get("b3"));
  EXPECT_EQ(eng_->twins().get("b2")->tags.find("floor")->as_int(), 3);

  r = send("POST", "/devices", R"([{"id":"b3","importMode":"deleteIfMatchETag","eTag":"nope"},{"id":"b1","importMode":"delete"}])");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(body_of(r).find("errors")->as_array()[0].find("errorCode")->as_string(), "PreconditionFailed");
  EXPECT_FALSE(reg_->get("b1"));
  std::string many = "[";
  for (int i = 0; i < 101; ++i) many += std::string(i ? "," : "") + R"({"id":"m)" + std::to_string(i) + "\"}";
  expect_error(send("POST", "/devices", many + "]"), 400, "ArgumentInvalid", 400004);
}

TEST_F(http_api_test, TwinGetPatchPutWithEtags) {
  make_device("dev1");
  auto r = send("GET", "/twins/dev1?api-version=2021-04-12");
  ASSERT_EQ(r.status, 200) << r.body;
  auto t = body_of(r);
  EXPECT_EQ(t.find("deviceId")->as_string(), "dev1");
  EXPECT_EQ(t.find("deviceEtag")->as_string(), reg_->get("dev1")->etag);
  const auto etag = t.find("etag")->as_string();

  r = send("PATCH", "/twins/dev1", R"({"tags":{"floor":2},"properties":{"desired":{"fan":"on"}}})",
           {{"If-Match", "\"" + etag + "\""}});
  ASSERT_EQ(r.status, 200) << r.body;
  t = body_of(r);
  EXPECT_EQ(t.find("tags")->find("floor")->as_int(), 2);
  EXPECT_EQ(t.find("properties")->find("desired")->find("fan")->as_string(), "on");
  EXPECT_EQ(t.find("properties")->find("desired")->find("$version")->as_int(), 2);
  EXPECT_NE(t.find("etag")->as_string(), etag);
  expect_error(send("PATCH", "/twins/dev1", R"({"tags":{"floor":3}})", {{"If-Match", "\"" + etag + "\""}}), 412,
               "PreconditionFailed", 412001);

  r = send("PUT", "/twins/dev1", R"({"properties":{"desired":{"mode":"eco"}}})", {{"If-Match", "\"*\""}});
  ASSERT_EQ(r.status, 200) << r.body;
  t = body_of(r);
  EXPECT_TRUE(t.find("tags")->as_object().empty());  // replace: tags not given become empty
  EXPECT_FALSE(t.find("properties")->find("desired")->find("fan"));
  EXPECT_EQ(body_of(send("GET", "/twins/dev1")), t);

  expect_error(send("PATCH", "/twins/dev1", R"({"properties":{"reported":{"x":1}}})"), 400, "ArgumentInvalid", 400004);
  expect_error(send("PATCH", "/twins/dev1", "{not json"), 400, "ArgumentInvalid", 400004);
  expect_error(send("GET", "/twins/ghost"), 404, "DeviceNotFound", 404001);
  // Module twins.
  ASSERT_TRUE(reg_->create({.device_id = "dev1", .module_id = "m1"}));
  r = send("PATCH", "/twins/dev1/modules/m1", R"({"properties":{"desired":{"k":1}}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_of(r).find("moduleId")->as_string(), "m1");
  expect_error(send("GET", "/twins/dev1/modules/m9"), 404, "ModuleNotFound", 404010);
  // RegistryRead may read twins, not write them.
  EXPECT_EQ(send("GET", "/twins/dev1", {}, {}, policy_token("registryRead")).status, 200);
  expect_error(send("PATCH", "/twins/dev1", "{}", {}, policy_token("registryRead")), 401, "IotHubUnauthorized", 401003);
}

TEST_F(http_api_test, MethodInvokeOfflineAndOnline) {
  auto d = make_device("dev1");
  const std::string call = R"({"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":10})";
  expect_error(send("POST", "/twins/dev1/methods?api-version=2021-04-12", call), 404, "DeviceNotOnline", 404103);
  expect_error(send("POST", "/twins/ghost/methods", call), 404, "DeviceNotFound", 404001);
  expect_error(send("POST", "/twins/dev1/methods", R"({"payload":1})"), 400, "ArgumentInvalid", 400004);

  connect_request cr;
  cr.client_id = "dev1";
  cr.username = "hub.local/dev1/?api-version=2021-04-12";
  cr.password = device_token(d);
  auto dec = eng_->authenticate(cr, std::chrono::system_clock::now());
  ASSERT_EQ(dec.code, proto::mqtt::connack_code::accepted) << dec.reason;
  auto link = std::make_shared<recording_link>();
  eng_->attach(dec.identity, true, link);
  std::promise<void> subscribed;
  eng_->subscribe(dec.identity, {{"$iothub/methods/POST/#", 0}}, [&](auto) { subscribed.set_value(); });
  subscribed.get_future().get();

  for (std::string answer : {std::string(R"({"ok":true})"), std::string("not json")}) {
    auto got = std::make_shared<std::promise<proto::http::response>>();
    proto::http::request req;
    req.method = "POST";
    req.target = "/twins/dev1/methods";
    req.body = call;
    req.headers.push_back({"Authorization", owner_});
    link->clear();
    api_->handle(req, "", [got](proto::http::response x) { got->set_value(std::move(x)); });
    auto m = link->wait_for("$iothub/methods/POST/reboot/?$rid=");
    ASSERT_TRUE(m);
    EXPECT_EQ(as_string_view(m->payload), R"({"delay":1})");
    auto rid = m->topic.substr(std::string("$iothub/methods/POST/reboot/?$rid=").size());
    proto::mqtt::publish_packet p;
    p.topic = "$iothub/methods/res/201/?$rid=" + rid;
    p.payload = to_bytes(answer);
    eng_->on_publish(dec.identity, std::move(p), std::chrono::system_clock::now());
    auto fut = got->get_future();
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    auto r = fut.get();
    ASSERT_EQ(r.status, 200) << r.body;
    auto b = body_of(r);
    EXPECT_EQ(b.find("status")->as_int(), 201);
    if (answer == "not json") EXPECT_EQ(b.find("payload")->as_string(), "not json");
    else EXPECT_TRUE(b.find("payload")->find("ok")->as_bool());
  }
  EXPECT_EQ(body_of(send("GET", "/statistics/service")).find("connectedDeviceCount")->as_int(), 1);
}

TEST_F(http_api_test, QueryWhereGroupByAndPaging) {
  for (int i = 0; i < 23; ++i) {
    auto id = "q" + std::to_string(100 + i);
    make_device(id);
    auto r = send("PATCH", "/twins/" + id, R"({"tags":{"floor":)" + std::to_string(i % 3) + "}}");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  const std::string q = R"({"query":"SELECT * FROM devices WHERE tags.floor = 1"})";
  std::vector<std::string> ids;
  std::string cont;
  int pages = 0;
  do {
    std::vector<proto::http::header> h{{"x-ms-max-item-count", "3"}};
    if (!cont.empty()) h.push_back({"x-ms-continuation", cont});
    auto r = send("POST", "/devices/query?api-version=2021-04-12", q, h);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(header(r, "x-ms-item-type"), "twin");
    auto items = body_of(r).as_array();
    EXPECT_LE(items.size(), 3u);
    for (auto& t : items) ids.push_back(t.find("deviceId")->as_string());
    cont = header(r, "x-ms-continuation");
    ++pages;
  } while (!cont.empty() && pages < 20);
  EXPECT_EQ(ids.size(), 8u);  // i % 3 == 1 for i in 0..22
  EXPECT_EQ(pages, 3);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));

  auto r = send("POST", "/devices/query",
                R"({"query":"SELECT tags.floor AS floor, COUNT() AS n FROM devices GROUP BY tags.floor"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(header(r, "x-ms-item-type"), "raw");
  auto rows = body_of(r).as_array();
  ASSERT_EQ(rows.size(), 3u) << r.body;
  std::int64_t total = 0;
  for (auto& row : rows) total += row.find("n")->as_int();
  EXPECT_EQ(total, 23);

  // A tampered continuation, and a syntax error, are 400.
  r = send("POST", "/devices/query", q, {{"x-ms-max-item-count", "3"}});
  cont = header(r, "x-ms-continuation");
  ASSERT_FALSE(cont.empty());
  cont[cont.size() / 2] = cont[cont.size() / 2] == 'A' ? 'B' : 'A';
  expect_error(send("POST", "/devices/query", q, {{"x-ms-continuation", cont}}), 400, "ArgumentInvalid", 400004);
  expect_error(send("POST", "/devices/query", R"({"query":"SELECT * FORM devices"})"), 400, "ArgumentInvalid", 400004);
  expect_error(send("POST", "/devices/query", R"({"q":1})"), 400, "ArgumentInvalid", 400004);
}

TEST_F(http_api_test, StatisticsAndPurge) {
  make_device("a");
  auto b = make_device("b");
  ASSERT_TRUE(reg_->update({.device_id = "b", .enabled = false}));
  auto r = send("GET", "/statistics/devices", {}, {}, policy_token("registryRead"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto s = body_of(r);
  EXPECT_EQ(s.find("totalDeviceCount")->as_int(), 2);
  EXPECT_EQ(s.find("enabledDeviceCount")->as_int(), 1);
  EXPECT_EQ(s.find("disabledDeviceCount")->as_int(), 1);
  EXPECT_EQ(body_of(send("GET", "/statistics/service")).find("connectedDeviceCount")->as_int(), 0);

  send_c2d("a", "one");
  send_c2d("a", "two");
  EXPECT_EQ(body_of(send("GET", "/devices/a")).find("cloudToDeviceMessageCount")->as_int(), 2);
  r = send("DELETE", "/devices/a/commands?api-version=2021-04-12", {}, {}, policy_token("service"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto p = body_of(r);
  EXPECT_EQ(p.find("totalMessagesPurged")->as_int(), 2);
  EXPECT_EQ(p.find("deviceId")->as_string(), "a");
  EXPECT_TRUE(p.find("moduleId")->is_null());
  expect_error(send("DELETE", "/devices/ghost/commands"), 404, "DeviceNotFound", 404001);
}

TEST_F(http_api_test, FeedbackReceiveCompleteAbandon) {
  auto d = make_device("dev1");
  EXPECT_EQ(send("GET", "/messages/serviceBound/feedback?api-version=2021-04-12").status, 204);
  send_c2d("dev1", "hello", c2d_ack::full);
  ASSERT_EQ(send("DELETE", "/devices/dev1/commands").status, 200);  // Purged feedback
  eng_->expire(std::chrono::steady_clock::now());                      // batches it
  auto r = send("GET", "/messages/serviceBound/feedback", {}, {}, policy_token("service"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(header(r, "Content-Type"), "application/vnd.microsoft.iothub.feedback.json");
  auto etag = header(r, "ETag");
  ASSERT_GE(etag.size(), 3u);
  EXPECT_EQ(etag.front(), '"');
  EXPECT_EQ(etag.back(), '"');
  auto recs = body_of(r).as_array();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].find("statusCode")->as_string(), "Purged");
  EXPECT_EQ(recs[0].find("originalMessageId")->as_string(), "mid-hello");
  auto lock = etag.substr(1, etag.size() - 2);
  EXPECT_EQ(send("GET", "/messages/serviceBound/feedback").status, 204);  // locked
  EXPECT_EQ(send("POST", "/messages/serviceBound/feedback/" + lock + "/abandon").status, 204);
  r = send("GET", "/messages/serviceBound/feedback");
  ASSERT_EQ(r.status, 200);
  lock = header(r, "ETag");
  EXPECT_EQ(header(r, "iothub-deliverycount"), "1");
  EXPECT_EQ(send("DELETE", "/messages/serviceBound/feedback/" + percent_encode(lock)).status, 204);
  EXPECT_EQ(send("GET", "/messages/serviceBound/feedback").status, 204);
  expect_error(send("DELETE", "/messages/serviceBound/feedback/nope"), 412, "DeviceMessageLockLost", 412002);
  expect_error(send("GET", "/messages/serviceBound/feedback", {}, {}, policy_token("registryReadWrite")), 401,
               "IotHubUnauthorized", 401003);
}

TEST_F(http_api_test, AuthFailures) {
  make_device("dev1");
  expect_error(send("GET", "/devices/dev1", {}, {}, ""), 401, "IotHubUnauthorized", 401003);
  expect_error(send("GET", "/devices/dev1", {}, {}, "Bearer x"), 401, "IotHubUnauthorized", 401003);
  // Signed with another policy's key under this policy's name.
  auto forged = make_sas_token("hub.local", reg_->get_policy("service")->primary_key, far_future, "iothubowner");
  expect_error(send("GET", "/devices/dev1", {}, {}, forged), 401, "IotHubUnauthorized", 401003);
  expect_error(send("GET", "/devices/dev1", {}, {}, policy_token("iothubowner", "hub.local", 1000)), 401,
               "IotHubUnauthorized", 401003);
  auto r = send("PUT", "/devices/dev2", "{}", {}, policy_token("registryRead"));
  expect_error(r, 401, "IotHubUnauthorized", 401003);
  EXPECT_NE(body_of(r).find("message")->as_string().find("RegistryWrite"), std::string::npos) << r.body;
  expect_error(send("GET", "/devices/dev1", {}, {}, policy_token("service")), 401, "IotHubUnauthorized", 401003);
  expect_error(send("GET", "/devices/dev1", {}, {}, device_token(*reg_->get("dev1"))), 401, "IotHubUnauthorized",
               401003);
  auto unknown = make_sas_token("hub.local", reg_->get_policy("iothubowner")->primary_key, far_future, "nosuch");
  expect_error(send("GET", "/devices/dev1", {}, {}, unknown), 401, "IotHubUnauthorized", 401003);
  // Any host (with a port, as the SDK's quote_plus(HostName) sends it) and the secondary key are accepted.
  EXPECT_EQ(send("GET", "/devices/dev1", {}, {}, policy_token("registryRead", "other.host:8443")).status, 200);
  auto secondary = make_sas_token("hub.local", reg_->get_policy("registryReadWrite")->secondary_key, far_future,
                                  "registryReadWrite");
  EXPECT_EQ(send("PUT", "/devices/dev3", "{}", {}, secondary).status, 200);
}

TEST_F(http_api_test, UnknownRoutesMethodsAndUnsupportedFeatures) {
  make_device("dev1");
  auto r = send("GET", "/nothing/here");
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(header(r, "iothub-errorcode").empty());
  EXPECT_EQ(send("GET", "/devices/dev1/whatever").status, 404);
  r = send("PATCH", "/devices/dev1");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(header(r, "Allow"), "GET, PUT, DELETE");
  EXPECT_EQ(send("DELETE", "/twins/dev1").status, 405);
  EXPECT_EQ(send("GET", "/jobs/v2/query?jobType=x").status, 501);
  EXPECT_EQ(send("GET", "/configurations?top=10").status, 501);
  EXPECT_EQ(send("GET", "/digitaltwins/dev1").status, 501);
  EXPECT_EQ(send("POST", "/devices/dev1/files", R"({"blobName":"x"})").status, 501);
  // Fixed segments are case-insensitive; api-version is ignored.
  EXPECT_EQ(send("GET", "/Devices/dev1?api-version=1999-01-01").status, 200);
}

TEST_F(http_api_test, DeviceTelemetrySingleAndBatch) {
  auto d = make_device("dev1");
  auto tok = device_token(d);
  auto r = send("POST", "/devices/dev1/messages/events?api-version=2016-11-14", "temp=21",
                {{"iothub-messageid", "m-1"}, {"iothub-correlationid", "c-1"}, {"iothub-contenttype", "text/plain"},
                 {"iothub-app-color", "blue"}, {"iothub-to", "/devices/dev1/messages/events"}},
                tok);
  ASSERT_EQ(r.status, 204) << r.body;
  auto msgs = telemetry();
  ASSERT_EQ(msgs.size(), 1u);
  const auto& m = msgs[0];
  EXPECT_EQ(as_string_view(m.body), "temp=21");
  EXPECT_EQ(*find_property(m.system_properties, sysprop::message_id), "m-1");
  EXPECT_EQ(*find_property(m.system_properties, sysprop::correlation_id), "c-1");
  EXPECT_EQ(*find_property(m.system_properties, sysprop::content_type), "text/plain");
  EXPECT_EQ(*find_property(m.app_properties, "color"), "blue");
  EXPECT_EQ(m.auth, connection_auth::sas);
  EXPECT_EQ(m.auth_generation_id, d.generation_id);
  EXPECT_GT(m.enqueued_time_ms, 0);

  const std::string batch =
      R"([{"body":")" + base64_encode(as_bytes("one")) + R"(","base64Encoded":true,"properties":{"iothub-app-k":"v"}},)"
      R"({"body":"two","properties":{"iothub-messageid":"m-2","plain":"p"}}])";
  r = send("POST", "/devices/dev1/messages/events", batch, {{"Content-Type", "application/vnd.microsoft.iothub.json"}},
           make_sas_token("hub.local/devices/dev1", reg_->get_policy("device")->primary_key, far_future, "device"));
  ASSERT_EQ(r.status, 204) << r.body;
  msgs = telemetry();
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(as_string_view(msgs[1].body), "one");
  EXPECT_EQ(*find_property(msgs[1].app_properties, "k"), "v");
  EXPECT_NE(find_property(msgs[1].system_properties, sysprop::message_id), nullptr);  // generated
  EXPECT_EQ(msgs[1].auth, connection_auth::sas_token);
  EXPECT_EQ(*find_property(msgs[2].system_properties, sysprop::message_id), "m-2");
  EXPECT_EQ(*find_property(msgs[2].app_properties, "plain"), "p");

  expect_error(send("POST", "/devices/dev1/messages/events", std::string(257 * 1024, 'x'), {}, tok), 413,
               "MessageTooLarge", 413001);
  expect_error(send("POST", "/devices/dev1/messages/events", "[1]",
                    {{"Content-Type", "application/vnd.microsoft.iothub.json"}}, tok),
               400, "ArgumentInvalid", 400004);
  // Another device's token, no token, and a disabled device.
  auto other = make_device("dev2");
  expect_error(send("POST", "/devices/dev1/messages/events", "x", {}, device_token(other)), 401, "IotHubUnauthorized",
               401003);
  expect_error(send("POST", "/devices/dev1/messages/events", "x", {}, ""), 401, "IotHubUnauthorized", 401003);
  ASSERT_TRUE(reg_->update({.device_id = "dev2", .enabled = false}));
  expect_error(send("POST", "/devices/dev2/messages/events", "x", {}, device_token(other)), 403, "DeviceDisabled",
               403012);
  // Module telemetry with the module's key.
  auto mod = reg_->create({.device_id = "dev1", .module_id = "m1"});
  ASSERT_TRUE(mod);
  r = send("POST", "/devices/dev1/modules/m1/messages/events", "hi", {},
           make_sas_token("hub.local/devices/dev1/modules/m1", mod->primary_key, far_future));
  ASSERT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(telemetry().back().module_id, "m1");
}

TEST_F(http_api_test, C2dReceiveCompleteRejectAbandon) {
  auto d = make_device("dev1");
  auto tok = device_token(d);
  const std::string base = "/devices/dev1/messages/devicebound";
  EXPECT_EQ(send("GET", base + "?api-version=2016-11-14", {}, {}, tok).status, 204);
  send_c2d("dev1", "one", c2d_ack::positive);
  send_c2d("dev1", "two");
  send_c2d("dev1", "three");

  auto r = send("GET", "/devices/dev1/messages/deviceBound", {}, {}, tok);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "one");
  auto etag = header(r, "ETag");
  ASSERT_GE(etag.size(), 3u);
  EXPECT_EQ(etag.front(), '"');
  EXPECT_EQ(header(r, "iothub-messageid"), "mid-one");
  EXPECT_EQ(header(r, "iothub-to"), "/devices/dev1/messages/devicebound");
  EXPECT_EQ(header(r, "iothub-ack"), "positive");
  EXPECT_EQ(header(r, "iothub-deliverycount"), "0");
  EXPECT_EQ(header(r, "iothub-app-color"), "red");
  EXPECT_FALSE(header(r, "iothub-sequencenumber").empty());
  EXPECT_FALSE(header(r, "iothub-expiry").empty());
  // Complete with the quoted lock token in the path (and csdk's If-Match).
  EXPECT_EQ(send("DELETE", base + "/" + percent_encode(etag), {}, {{"If-Match", etag}}, tok).status, 204);
  expect_error(send("DELETE", base + "/" + percent_encode(etag), {}, {}, tok), 412, "DeviceMessageLockLost", 412002);

  r = send("GET", base, {}, {}, tok);
  ASSERT_EQ(r.body, "two");
  auto lock = header(r, "ETag");
  lock = lock.substr(1, lock.size() - 2);
  EXPECT_EQ(send("POST", base + "/" + lock + "/abandon", {}, {}, tok).status, 204);
  r = send("GET", base, {}, {{"IotHub-MessageLockTimeout", "1"}}, tok);
  ASSERT_EQ(r.body, "two");
  EXPECT_EQ(header(r, "iothub-deliverycount"), "1");
  lock = header(r, "ETag");
  lock = lock.substr(1, lock.size() - 2);
  EXPECT_EQ(send("DELETE", base + "/" + lock + "?api-version=2016-11-14&reject", {}, {}, tok).status, 204);

  r = send("GET", base, {}, {{"IotHub-MessageLockTimeout", "1"}}, tok);
  ASSERT_EQ(r.body, "three");
  lock = header(r, "ETag");
  lock = lock.substr(1, lock.size() - 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the 1 s lock lapses
  expect_error(send("DELETE", base + "/" + lock, {}, {}, tok), 412, "DeviceMessageLockLost", 412002);
  expect_error(send("GET", base, {}, {{"IotHub-MessageLockTimeout", "x"}}, tok), 400, "ArgumentInvalid", 400004);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 1u);
  eng_->expire(std::chrono::steady_clock::now());  // the lapsed lock is released at the tick
  EXPECT_EQ(send("GET", base, {}, {}, tok).body, "three");
}

}  // namespace
}  // namespace fleethub::hub

namespace fleethub::hub {
namespace {

// Which requests the net layer moves off its io threads: those that wait for a commit or scan the registry.
TEST(HttpApiMayBlock, RegistryWritesQueriesAndSettlementsOnly) {
  auto req = [](std::string method, std::string target) {
    proto::http::request r;
    r.method = std::move(method);
    r.target = std::move(target);
    return r;
  };
  for (auto& [m, t] : std::vector<std::pair<std::string, std::string>>{
           {"PUT", "/devices/d1?api-version=2021-04-12"},
           {"DELETE", "/devices/d1"},
           {"PUT", "/devices/d1/modules/m1"},
           {"POST", "/devices?api-version=2021-04-12"},
           {"GET", "/devices?top=1000"},
           {"POST", "/devices/query?api-version=2021-04-12"},
           {"DELETE", "/devices/d1/commands"},
           {"DELETE", "/devices/d1/messages/devicebound/lock?reject"},
           {"POST", "/devices/d1/messages/deviceBound/lock/abandon"},
           {"DELETE", "/messages/serviceBound/feedback/lock"},
           {"POST", "/messages/serviceBound/feedback/lock/abandon"},
       })
    EXPECT_TRUE(http_api::may_block(req(m, t))) << m << " " << t;
  for (auto& [m, t] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/devices/d1"},
           {"POST", "/devices/d1/messages/events"},
           {"GET", "/devices/d1/messages/devicebound"},
           {"GET", "/twins/d1"},
           {"PATCH", "/twins/d1"},
           {"PUT", "/twins/d1"},
           {"POST", "/twins/d1/methods"},
           {"GET", "/statistics/devices"},
           {"GET", "/messages/serviceBound/feedback"},
           {"GET", "not a target"},
       })
    EXPECT_FALSE(http_api::may_block(req(m, t))) << m << " " << t;
}

}  // namespace
}  // namespace fleethub::hub
