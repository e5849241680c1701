// The hub engine against a real LMDB store in a temp dir: authentication outcomes, topic rules, sessions
// (takeover, persistence across a reopen, redelivery), telemetry stamping.
#include "fleethub/hub/engine.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/sas.hpp"
#include "fleethub/hub/topics.hpp"

namespace fleethub::hub {
namespace {

using proto::mqtt::connack_code;

struct recording_link : connection_link {
  std::vector<std::string> kicks;
  std::vector<outbound_message> delivered;
  std::mutex mu;
  std::condition_variable cv;
  void kick(std::string reason) override {
    std::lock_guard lk(mu);
    kicks.push_back(std::move(reason));
  }
  void deliver(outbound_message m) override {
    {
      std::lock_guard lk(mu);
      delivered.push_back(std::move(m));
    }
    cv.notify_all();
  }
  bool wait_delivered(std::size_t n) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, std::chrono::seconds(5), [&] { return delivered.size() >= n; });
  }
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-engine-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    open();
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }
  void open(engine_options eo = {}) {
    store::lmdb_options o;
    o.path = dir_.string();
    auto s = store::open_lmdb(o);
    ASSERT_TRUE(s) << s.err().message;
    store_ = std::move(*s);
    reg_ = std::make_unique<registry>(*store_, [] { return std::int64_t{1700000000000}; });
    ASSERT_TRUE(reg_->ensure_default_policies());
    eng_ = std::make_unique<engine>(eo, *store_, *reg_, logger{});
  }
  // Subscribes the identity to its cloud-to-device topic and waits until the subscription is durable.
  void subscribe_devicebound(const client_identity& id) {
    std::promise<void> subscribed;
    eng_->subscribe(id, {{"devices/" + id.device_id + "/messages/devicebound/#", 1}},
                    [&](auto) { subscribed.set_value(); });
    subscribed.get_future().get();
  }
  void close() {
    eng_.reset();
    reg_.reset();
    if (store_) store_->close();
    store_.reset();
  }
  device_record make_device(const std::string& id) {
    auto d = reg_->create({.device_id = id});
    EXPECT_TRUE(d) << d.err().message;
    return *d;
  }
  connect_request request(const device_record& d, std::int64_t expiry = 4102444800) {
    connect_request r;
    r.client_id = d.device_id;
    r.username = "hub.local/" + d.device_id + "/?api-version=2019-10-01&DeviceClientType=x";
    r.password = make_sas_token("hub.local/devices/" + d.device_id, d.primary_key, expiry);
    r.clean_session = false;
    return r;
  }
  wall_time now() const { return std::chrono::system_clock::now(); }

  std::filesystem::path dir_;
  std::unique_ptr<store::backend> store_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<engine> eng_;
};

TEST_F(EngineTest, AcceptsDeviceKeyTokenAndStampsAuthMethod) {
  auto d = make_device("dev1");
  auto dec = eng_->authenticate(request(d), now());
  ASSERT_EQ(dec.code, connack_code::accepted) << dec.reason;
  EXPECT_EQ(dec.identity.device_id, "dev1");
  EXPECT_EQ(dec.identity.generation_id, d.generation_id);
  EXPECT_EQ(dec.identity.auth, connection_auth::sas);
}

TEST_F(EngineTest, SecondaryKeyWorks) {
  auto d = make_device("dev1");
  auto r = request(d);
  r.password = make_sas_token("hub.local/devices/dev1", d.secondary_key, 4102444800);
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::accepted);
}

TEST_F(EngineTest, RefusalCodes) {
  auto d = make_device("dev1");
  auto r = request(d);
  r.password = make_sas_token("hub.local/devices/dev1", reg_->get_policy("service")->primary_key, 4102444800);
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::not_authorized) << "wrong key";

  r = request(d, 1000);
  auto dec = eng_->authenticate(r, now());
  EXPECT_EQ(dec.code, connack_code::not_authorized);
  EXPECT_NE(dec.reason.find("expired"), std::string::npos) << dec.reason;

  r = request(d);
  r.password = "not a token";
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::bad_username_or_password);

  r = request(d);
  r.username.reset();
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::bad_username_or_password);

  r = request(d);
  r.client_id = "other";
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::identifier_rejected);

  r = request(d);
  r.client_id = "";
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::identifier_rejected);

  device_record ghost = d;
  ghost.device_id = "ghost";
  EXPECT_EQ(eng_->authenticate(request(ghost), now()).code, connack_code::not_authorized) << "unknown device";

  // A token for another device does not cover this one.
  auto d2 = make_device("dev2");
  r = request(d);
  r.password = make_sas_token("hub.local/devices/dev2", d2.primary_key, 4102444800);
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::not_authorized);
}

TEST_F(EngineTest, DisabledDeviceRefused) {
  auto d = make_device("dev1");
  ASSERT_TRUE(reg_->update({.device_id = "dev1", .enabled = false}));
  auto dec = eng_->authenticate(request(d), now());
  EXPECT_EQ(dec.code, connack_code::not_authorized);
  EXPECT_NE(dec.reason.find("disabled"), std::string::npos);
}

TEST_F(EngineTest, PolicyTokenWithDeviceConnect) {
  auto d = make_device("dev1");
  auto r = request(d);
  auto pol = reg_->get_policy("device");
  r.password = make_sas_token("hub.local/devices/dev1", pol->primary_key, 4102444800, "device");
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::accepted);
  auto svc = reg_->get_policy("service");
  r.password = make_sas_token("hub.local/devices/dev1", svc->primary_key, 4102444800, "service");
  EXPECT_EQ(eng_->authenticate(r, now()).code, connack_code::not_authorized) << "service lacks DeviceConnect";
}

TEST_F(EngineTest, ModuleIdentity) {
  make_device("dev1");
  auto m = reg_->create({.device_id = "dev1", .module_id = "mod1"});
  ASSERT_TRUE(m) << m.err().message;
  connect_request r;
  r.client_id = "dev1/mod1";
  r.username = "hub.local/dev1/mod1/?api-version=2019-10-01";
  r.password = make_sas_token("hub.local/devices/dev1/modules/mod1", m->primary_key, 4102444800);
  auto dec = eng_->authenticate(r, now());
  ASSERT_EQ(dec.code, connack_code::accepted) << dec.reason;
  EXPECT_EQ(dec.identity.module_id, "mod1");
  auto out = eng_->on_publish(dec.identity, {.topic = "devices/dev1/modules/mod1/messages/events/", .payload = {}},
                              now());
  ASSERT_TRUE(std::holds_alternative<publish_telemetry>(out));
  EXPECT_EQ(*find_property(full_system_properties(std::get<publish_telemetry>(out).msg), sysprop::connection_module_id),
            "mod1");
}

TEST_F(EngineTest, TelemetryStampingAndTopicRules) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  proto::mqtt::publish_packet p;
  p.topic = "devices/dev1/messages/events/%24.mid=m1&%24.ct=application%2Fjson&a=1";
  p.payload = to_bytes("{}");
  p.qos = 1;
  p.packet_id = 1;
  auto out = eng_->on_publish(id, p, now());
  ASSERT_TRUE(std::holds_alternative<publish_telemetry>(out));
  auto& m = std::get<publish_telemetry>(out).msg;
  EXPECT_EQ(*find_property(m.system_properties, sysprop::message_id), "m1");
  EXPECT_EQ(*find_property(m.system_properties, sysprop::content_type), "application/json");
  auto full = full_system_properties(m);
  EXPECT_EQ(*find_property(full, sysprop::connection_device_id), "dev1");
  EXPECT_EQ(*find_property(full, sysprop::connection_auth_generation_id), d.generation_id);
  EXPECT_EQ(*find_property(full, sysprop::connection_auth_method),
            "{\"scope\":\"device\",\"type\":\"sas\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}");
  EXPECT_NE(find_property(full, sysprop::enqueued_time), nullptr);
  EXPECT_EQ(*find_property(m.app_properties, "a"), "1");
  EXPECT_EQ(std::get<publish_telemetry>(out).partition, partition_for("dev1", store_->partition_count()));

  p.topic = "devices/dev1/messages/events/";  // no properties: a message id is generated
  out = eng_->on_publish(id, p, now());
  EXPECT_EQ(find_property(std::get<publish_telemetry>(out).msg.system_properties, sysprop::message_id)->size(), 36u);

  p.topic = "devices/dev2/messages/events/";
  EXPECT_TRUE(std::holds_alternative<publish_close>(eng_->on_publish(id, p, now())));
  p.topic = "devices/dev1x/messages/events/";
  EXPECT_TRUE(std::holds_alternative<publish_close>(eng_->on_publish(id, p, now())));
  p.topic = "foo/bar";
  EXPECT_TRUE(std::holds_alternative<publish_close>(eng_->on_publish(id, p, now())));
  p.topic = "$iothub/twin/GET/?$rid=1";
  EXPECT_TRUE(std::holds_alternative<publish_handled>(eng_->on_publish(id, p, now())));

  p.topic = "devices/dev1/messages/events/";
  p.payload.assign(256 * 1024 + 1, 'x');
  EXPECT_TRUE(std::holds_alternative<publish_close>(eng_->on_publish(id, p, now()))) << "over 256 KB";

  p.payload = to_bytes("r");
  p.retain = true;
  out = eng_->on_publish(id, p, now());
  EXPECT_EQ(*find_property(std::get<publish_telemetry>(out).msg.app_properties, "mqtt-retain"), "true");
}

TEST_F(EngineTest, IngestCommitsBeforeCallback) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  std::vector<publish_telemetry> batch;
  for (int i = 0; i < 3; ++i) {
    auto out = eng_->on_publish(id, {.topic = "devices/dev1/messages/events/", .payload = to_bytes(std::to_string(i))},
                                now());
    batch.push_back(std::get<publish_telemetry>(out));
  }
  auto part = batch[0].partition;
  std::promise<store::commit_result> done;
  eng_->ingest(std::move(batch), [&](const store::commit_result& r) { done.set_value(r); });
  auto r = done.get_future().get();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.sequence_numbers.size(), 3u);
  // The device's creation put a lifecycle event first.
  auto rows = store_->read_events(part, r.sequence_numbers[0], 10);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 3u);
  auto m = decode_message((*rows)[2].record);
  ASSERT_TRUE(m);
  EXPECT_EQ(as_string_view(m->body), "2");
}

TEST_F(EngineTest, SubscriptionRulesAndTakeover) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  auto a = eng_->attach(id, false, l1);
  EXPECT_FALSE(a.session_present);
  std::promise<std::vector<std::uint8_t>> codes;
  eng_->subscribe(id,
                  {{"devices/dev1/messages/devicebound/#", 1},
                   {"devices/dev2/messages/devicebound/#", 1},
                   {"$iothub/methods/POST/#", 2},
                   {"#", 0}},
                  [&](std::vector<std::uint8_t> c) { codes.set_value(std::move(c)); });
  EXPECT_EQ(codes.get_future().get(), (std::vector<std::uint8_t>{1, 0x80, 1, 0x80}));

  auto l2 = std::make_shared<recording_link>();
  auto b = eng_->attach(id, false, l2);
  EXPECT_TRUE(b.session_present);
  ASSERT_EQ(l1->kicks.size(), 1u) << "the older connection is closed";
  eng_->detach(id, l1.get(), "old");  // the kicked connection goes away; the new one keeps the session
  EXPECT_TRUE(eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/x", to_bytes("hi"), 1));
  ASSERT_TRUE(l2->wait_delivered(1));
  EXPECT_EQ(l2->delivered[0].qos, 1);
  EXPECT_TRUE(eng_->connection_state("dev1").connected);
}

TEST_F(EngineTest, PersistentSessionSurvivesReopenWithUnackedMessages) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  ASSERT_TRUE(eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/a", to_bytes("one"), 1));
  ASSERT_TRUE(eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/b", to_bytes("two"), 1));
  ASSERT_TRUE(l1->wait_delivered(2));
  eng_->on_puback(id, l1->delivered[0].packet_id);  // first acknowledged, second not
  eng_->detach(id, l1.get(), "gone");
  close();
  open();
  auto l2 = std::make_shared<recording_link>();
  auto a = eng_->attach(id, false, l2);
  EXPECT_TRUE(a.session_present);
  ASSERT_EQ(a.resend.size(), 1u);
  EXPECT_EQ(as_string_view(a.resend[0].payload), "two");
  EXPECT_TRUE(a.resend[0].dup);
  // Subscriptions survived too.
  EXPECT_TRUE(eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/c", to_bytes("three"), 1));
  ASSERT_TRUE(l2->wait_delivered(1));
  EXPECT_NE(l2->delivered[0].packet_id, a.resend[0].packet_id) << "packet ids of in-flight messages are not reused";
}

TEST_F(EngineTest, OutboundWindowLimitsUnacknowledgedDeliveries) {
  close();
  engine_options eo;
  eo.max_inflight_outbound = 2;
  open(eo);
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/", to_bytes(std::to_string(i)), 1));
  ASSERT_TRUE(l1->wait_delivered(2));
  store_->submit_and_wait({});  // every message is durable by now
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(l1->delivered.size(), 2u) << "only the window is in flight";
  eng_->on_puback(id, l1->delivered[0].packet_id);
  ASSERT_TRUE(l1->wait_delivered(3));
  EXPECT_EQ(as_string_view(l1->delivered[2].payload), "2") << "in order";
  // Reconnect: the unacknowledged two are resent with DUP, the rest follow as the window allows.
  eng_->detach(id, l1.get(), "gone");
  auto l2 = std::make_shared<recording_link>();
  auto a = eng_->attach(id, false, l2);
  ASSERT_EQ(a.resend.size(), 2u);
  EXPECT_EQ(as_string_view(a.resend[0].payload), "1");
  EXPECT_EQ(as_string_view(a.resend[1].payload), "2");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(l2->delivered.empty()) << "window still full";
  eng_->on_puback(id, a.resend[0].packet_id);
  eng_->on_puback(id, a.resend[1].packet_id);
  ASSERT_TRUE(l2->wait_delivered(2));
  EXPECT_EQ(as_string_view(l2->delivered[0].payload), "3");
  EXPECT_EQ(as_string_view(l2->delivered[1].payload), "4");
}

TEST_F(EngineTest, CleanSessionDropsState) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  eng_->detach(id, l1.get(), "gone");
  auto a = eng_->attach(id, true, std::make_shared<recording_link>());
  EXPECT_FALSE(a.session_present);
  auto r = eng_->publish_to_client("dev1", "devices/dev1/messages/devicebound/a", to_bytes("x"), 1);
  EXPECT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::not_found);
}

TEST_F(EngineTest, DisableAndDeleteKickLiveConnections) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  ASSERT_TRUE(reg_->update({.device_id = "dev1", .enabled = false}));
  ASSERT_EQ(l1->kicks.size(), 1u);
  EXPECT_EQ(l1->kicks[0], "device disabled");
  ASSERT_TRUE(reg_->remove("dev1"));
  EXPECT_EQ(l1->kicks.size(), 2u);
}

TEST_F(EngineTest, DeletingAModuleKicksOnlyThatModule) {
  auto d = make_device("dev1");
  auto m = *reg_->create({.device_id = "dev1", .module_id = "mod1"});
  auto dev_id = eng_->authenticate(request(d), now()).identity;
  connect_request r;
  r.client_id = "dev1/mod1";
  r.username = "hub.local/dev1/mod1/";
  r.password = make_sas_token("hub.local/devices/dev1/modules/mod1", m.primary_key, 4102444800);
  auto mod_id = eng_->authenticate(r, now()).identity;
  auto ld = std::make_shared<recording_link>(), lm = std::make_shared<recording_link>();
  eng_->attach(dev_id, true, ld);
  eng_->attach(mod_id, true, lm);
  ASSERT_TRUE(reg_->remove("dev1", "mod1"));
  EXPECT_EQ(lm->kicks.size(), 1u);
  EXPECT_TRUE(ld->kicks.empty()) << "the device's own connection stays";
}

TEST(Topics, PartitionIsStableFnv1a) {
  // FNV-1a 32 of "dev1" is 0x690992f7 (computed independently in Python; fleethub.partition_for agrees).
  EXPECT_EQ(partition_for("dev1", 4), 0x690992f7u % 4);
  EXPECT_EQ(partition_for("dev1", 32), 0x690992f7u % 32);
  EXPECT_LT(partition_for("anything", 4), 4u);
  EXPECT_EQ(partition_for("", 1), 0u);
}

TEST(Topics, Classification) {
  EXPECT_EQ(classify_publish("devices/d/messages/events", "d", "").kind, topic_kind::telemetry);
  EXPECT_EQ(classify_publish("devices/d/messages/events/a=b", "d", "").property_bag, "a=b");
  EXPECT_EQ(classify_publish("devices/d/messages/eventsX", "d", "").kind, topic_kind::forbidden);
  EXPECT_EQ(classify_publish("devices/d/modules/m/messages/events/", "d", "").kind, topic_kind::forbidden);
  EXPECT_EQ(classify_publish("devices/d/messages/events/", "d", "m").kind, topic_kind::forbidden);
  EXPECT_EQ(classify_publish("$iothub/methods/res/200/?$rid=1", "d", "").kind, topic_kind::method_response);
  EXPECT_TRUE(subscription_allowed("devices/d/messages/devicebound/#", "d", ""));
  EXPECT_FALSE(subscription_allowed("devices/e/messages/devicebound/#", "d", ""));
  EXPECT_TRUE(subscription_allowed("devices/d/modules/m/inputs/#", "d", "m"));
  EXPECT_FALSE(subscription_allowed("devices/+/messages/devicebound/#", "d", ""));
}

}  // namespace
}  // namespace fleethub::hub
