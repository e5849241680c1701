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

// --- twins, methods and system events through the engine ----------------------------------------------------

// Subscribes `id` to `filters` (QoS 0) and waits until the subscription is in force.
void subscribe_to(engine& eng, const client_identity& id, const std::vector<std::string>& filters) {
  std::vector<proto::mqtt::subscription> subs;
  for (auto& f : filters) subs.push_back({f, 0});
  std::promise<std::vector<std::uint8_t>> codes;
  eng.subscribe(id, subs, [&](std::vector<std::uint8_t> c) { codes.set_value(std::move(c)); });
  auto got = codes.get_future().get();
  for (auto c : got) ASSERT_NE(c, proto::mqtt::suback_failure);
}

// Waits (up to 5 s) for a delivery whose topic starts with `prefix`; returns a copy of it.
std::optional<outbound_message> wait_for_topic(recording_link& l, const std::string& prefix) {
  std::unique_lock lk(l.mu);
  std::optional<outbound_message> found;
  l.cv.wait_for(lk, std::chrono::seconds(5), [&] {
    for (auto& m : l.delivered)
      if (m.topic.rfind(prefix, 0) == 0) {
        found = m;
        return true;
      }
    return false;
  });
  return found;
}

std::size_t delivered_count(recording_link& l) {
  std::lock_guard lk(l.mu);
  return l.delivered.size();
}

// Every message in the event log with the given source.
std::vector<message> logged(store::backend& s, message_source src) {
  s.submit_and_wait({});  // barrier: everything submitted so far is committed
  std::vector<message> out;
  for (std::uint32_t p = 0; p < s.partition_count(); ++p) {
    auto rows = s.read_events(p, 0, 100000);
    EXPECT_TRUE(rows);
    if (!rows) continue;
    for (auto& row : *rows) {
      auto m = decode_message(row.record);
      EXPECT_TRUE(m);
      if (m && m->source == src) out.push_back(std::move(*m));
    }
  }
  return out;
}

proto::mqtt::publish_packet pub(std::string topic, std::string_view body = {}) {
  proto::mqtt::publish_packet p;
  p.topic = std::move(topic);
  p.payload = to_bytes(std::string(body));
  return p;
}

TEST_F(EngineTest, TwinGetAnswersOnTheResponseTopic) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"$iothub/twin/res/#"});
  auto out = eng_->on_publish(id, pub("$iothub/twin/GET/?$rid=X"), now());
  EXPECT_TRUE(std::holds_alternative<publish_handled>(out));
  auto m = wait_for_topic(*l, "$iothub/twin/res/");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "$iothub/twin/res/200/?$rid=X");
  EXPECT_EQ(m->qos, 0);
  auto body = json::parse(as_string_view(m->payload));
  ASSERT_TRUE(body) << as_string_view(m->payload);
  EXPECT_EQ(body->find("desired")->find("$version")->as_int(), 1);
  EXPECT_EQ(body->find("reported")->find("$version")->as_int(), 1);
  EXPECT_EQ(body->find("desired")->find("$metadata"), nullptr) << "the device view has no metadata";
  EXPECT_TRUE(logged(*store_, message_source::twin_change_events).empty()) << "a read is not a change";
}

TEST_F(EngineTest, TwinGetWithoutSubscriptionSendsNothing) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  EXPECT_TRUE(std::holds_alternative<publish_handled>(eng_->on_publish(id, pub("$iothub/twin/GET/?$rid=1"), now())));
  store_->submit_and_wait({});
  EXPECT_EQ(delivered_count(*l), 0u);
}

TEST_F(EngineTest, ReportedPatchIsAnswered204WithTheNewVersion) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"$iothub/twin/res/#"});
  auto out = eng_->on_publish(id, pub("$iothub/twin/PATCH/properties/reported/?$rid=X", R"({"temp":21})"), now());
  EXPECT_TRUE(std::holds_alternative<publish_handled>(out));
  auto m = wait_for_topic(*l, "$iothub/twin/res/");
  ASSERT_TRUE(m) << "no response";
  EXPECT_EQ(m->topic, "$iothub/twin/res/204/?$rid=X&$version=2");
  EXPECT_TRUE(m->payload.empty());
  auto t = eng_->twins().get("dev1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->reported_version, 2);
  EXPECT_EQ(t->reported.find("temp")->as_int(), 21);
  // The change is in the log as a twin change event.
  auto ev = logged(*store_, message_source::twin_change_events);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(*find_property(ev[0].app_properties, "opType"), "updateTwin");
  EXPECT_EQ(ev[0].device_id, "dev1");
  // A second patch: version 3; the GET shows it.
  eng_->on_publish(id, pub("$iothub/twin/PATCH/properties/reported/?$rid=Y", R"({"temp":22})"), now());
  auto m2 = wait_for_topic(*l, "$iothub/twin/res/204/?$rid=Y");
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->topic, "$iothub/twin/res/204/?$rid=Y&$version=3");
}

TEST_F(EngineTest, BadReportedPatchIsAnswered400) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"$iothub/twin/res/#"});
  for (const char* bad : {"{not json", "[1,2]"}) {
    SCOPED_TRACE(bad);
    auto n = delivered_count(*l);
    auto out = eng_->on_publish(id, pub("$iothub/twin/PATCH/properties/reported/?$rid=X", bad), now());
    EXPECT_TRUE(std::holds_alternative<publish_handled>(out));
    ASSERT_TRUE(l->wait_delivered(n + 1));
    outbound_message m;
    {
      std::lock_guard lk(l->mu);
      m = l->delivered[n];
    }
    EXPECT_EQ(m.topic, "$iothub/twin/res/400/?$rid=X");
    auto body = json::parse(as_string_view(m.payload));
    ASSERT_TRUE(body) << as_string_view(m.payload);
    ASSERT_NE(body->find("errorCode"), nullptr);
    EXPECT_EQ(body->find("errorCode")->as_int(), 400004);
    EXPECT_FALSE(body->find("message")->as_string().empty());
  }
  EXPECT_EQ(eng_->twins().get("dev1")->reported_version, 1);
  EXPECT_TRUE(logged(*store_, message_source::twin_change_events).empty());
}

TEST_F(EngineTest, DesiredChangeIsPushedToASubscribedDevice) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"$iothub/twin/PATCH/properties/desired/#"});
  twin_update u;
  u.desired = json::parse(R"({"fan":"on"})").value();
  std::promise<result<twin_document>> done;
  eng_->twins().update("dev1", "", u, [&](result<twin_document> r) { done.set_value(std::move(r)); });
  auto r = done.get_future().get();
  ASSERT_TRUE(r) << r.err().message;
  auto m = wait_for_topic(*l, "$iothub/twin/PATCH/properties/desired/");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
  auto body = json::parse(as_string_view(m->payload));
  ASSERT_TRUE(body) << as_string_view(m->payload);
  EXPECT_EQ(body->find("$version")->as_int(), 2);
  EXPECT_EQ(body->find("fan")->as_string(), "on");
  EXPECT_NE(as_string_view(m->payload).find("\"$version\":2"), std::string::npos) << as_string_view(m->payload);
}

TEST_F(EngineTest, InvokeMethodRoundTrip) {
  auto d = make_device("dev1");
  auto other = make_device("dev2");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto id2 = eng_->authenticate(request(other), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  eng_->attach(id2, false, std::make_shared<recording_link>());
  subscribe_to(*eng_, id, {"$iothub/methods/POST/#"});
  method_request req;
  req.device_id = "dev1";
  req.method_name = "reboot";
  req.payload = to_bytes(R"({"delay":5})");
  std::promise<result<method_response>> got;
  std::atomic<int> calls{0};
  eng_->invoke_method(req, [&](result<method_response>&& r) {
    ++calls;
    got.set_value(std::move(r));
  });
  auto m = wait_for_topic(*l, "$iothub/methods/POST/");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->qos, 0);
  EXPECT_EQ(as_string_view(m->payload), R"({"delay":5})");
  const std::string prefix = "$iothub/methods/POST/reboot/?$rid=";
  ASSERT_EQ(m->topic.rfind(prefix, 0), 0u) << m->topic;
  auto rid = m->topic.substr(prefix.size());
  ASSERT_FALSE(rid.empty());
  EXPECT_EQ(eng_->pending_methods(), 1u);
  // Another device cannot answer for it.
  EXPECT_TRUE(std::holds_alternative<publish_handled>(
      eng_->on_publish(id2, pub("$iothub/methods/res/200/?$rid=" + rid, "{}"), now())));
  EXPECT_EQ(calls.load(), 0);
  // The device answers.
  auto out = eng_->on_publish(id, pub("$iothub/methods/res/200/?$rid=" + rid, R"({"ok":true})"), now());
  EXPECT_TRUE(std::holds_alternative<publish_handled>(out));
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto r = fut.get();
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(as_string_view(r->payload), R"({"ok":true})");
  EXPECT_EQ(eng_->pending_methods(), 0u);
  // A repeated answer is dropped.
  eng_->on_publish(id, pub("$iothub/methods/res/200/?$rid=" + rid, "{}"), now());
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(EngineTest, InvokeMethodErrors) {
  method_request req;
  req.device_id = "ghost";
  req.method_name = "reboot";
  std::optional<result<method_response>> r;
  eng_->invoke_method(req, [&](result<method_response>&& x) { r.emplace(std::move(x)); });
  ASSERT_TRUE(r.has_value()) << "refused at once";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->err().code, errc::not_found);

  // Registered but offline, no connect timeout: not connected.
  auto d = make_device("dev1");
  req.device_id = "dev1";
  r.reset();
  eng_->invoke_method(req, [&](result<method_response>&& x) { r.emplace(std::move(x)); });
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->err().code, errc::not_connected);

  // Connected but not subscribed to methods: not connected either.
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  r.reset();
  eng_->invoke_method(req, [&](result<method_response>&& x) { r.emplace(std::move(x)); });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->err().code, errc::not_connected);
  EXPECT_EQ(delivered_count(*l), 0u);

  // A bad request is refused before anything is sent.
  subscribe_to(*eng_, id, {"$iothub/methods/POST/#"});
  req.method_name = "a/b";
  r.reset();
  eng_->invoke_method(req, [&](result<method_response>&& x) { r.emplace(std::move(x)); });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->err().code, errc::invalid_argument);
  EXPECT_EQ(delivered_count(*l), 0u);
  EXPECT_EQ(eng_->pending_methods(), 0u);
}

TEST_F(EngineTest, InvokeMethodWaitsForTheDeviceToSubscribe) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  method_request req;
  req.device_id = "dev1";
  req.method_name = "wake";
  req.connect_timeout = std::chrono::seconds(30);
  std::promise<result<method_response>> got;
  eng_->invoke_method(req, [&](result<method_response>&& r) { got.set_value(std::move(r)); });
  EXPECT_EQ(eng_->pending_methods(), 1u);
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  EXPECT_EQ(delivered_count(*l), 0u) << "connected but not subscribed yet";
  subscribe_to(*eng_, id, {"$iothub/methods/POST/#"});
  auto m = wait_for_topic(*l, "$iothub/methods/POST/wake/?$rid=");
  ASSERT_TRUE(m) << "sent once subscribed";
  auto rid = m->topic.substr(m->topic.find("$rid=") + 5);
  eng_->on_publish(id, pub("$iothub/methods/res/500/?$rid=" + rid), now());
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto r = fut.get();
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->status, 500);
  EXPECT_TRUE(r->payload.empty());
}

TEST_F(EngineTest, AttachAndDetachLogConnectionStateEvents) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  auto l2 = std::make_shared<recording_link>();
  eng_->attach(id, false, l2);  // takeover: still connected, no second deviceConnected
  eng_->detach(id, l1.get(), "kicked");  // the old link: no-op
  eng_->detach(id, l2.get(), "gone");
  eng_->detach(id, l2.get(), "gone again");  // already detached
  auto ev = logged(*store_, message_source::device_connection_state_events);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(*find_property(ev[0].app_properties, "opType"), "deviceConnected");
  EXPECT_EQ(*find_property(ev[1].app_properties, "opType"), "deviceDisconnected");
  std::string prev;
  for (auto& m : ev) {
    EXPECT_EQ(m.device_id, "dev1");
    EXPECT_EQ(*find_property(m.app_properties, "iothub-message-schema"), "deviceConnectionStateNotification");
    EXPECT_EQ(*find_property(m.app_properties, "deviceId"), "dev1");
    EXPECT_EQ(*find_property(full_system_properties(m), sysprop::message_source), "deviceConnectionStateEvents");
    EXPECT_EQ(*find_property(m.system_properties, sysprop::user_id), eng_->events().hub_name());
    auto body = json::parse(as_string_view(m.body));
    ASSERT_TRUE(body);
    auto seq = body->find("sequenceNumber")->as_string();
    EXPECT_EQ(seq.size(), 64u);
    EXPECT_GT(seq, prev) << "sequence numbers increase";
    prev = seq;
  }
  // The device's creation is in the log as a lifecycle event, in the same partition before them.
  auto life = logged(*store_, message_source::device_lifecycle_events);
  ASSERT_EQ(life.size(), 1u);
  EXPECT_EQ(*find_property(life[0].app_properties, "opType"), "createDeviceIdentity");
}

TEST_F(EngineTest, ModuleConnectionEventsCarryTheModuleId) {
  make_device("dev1");
  auto m = *reg_->create({.device_id = "dev1", .module_id = "mod1"});
  connect_request r;
  r.client_id = "dev1/mod1";
  r.username = "hub.local/dev1/mod1/";
  r.password = make_sas_token("hub.local/devices/dev1/modules/mod1", m.primary_key, 4102444800);
  auto id = eng_->authenticate(r, now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, true, l);
  eng_->detach(id, l.get(), "bye");
  auto ev = logged(*store_, message_source::device_connection_state_events);
  ASSERT_EQ(ev.size(), 2u);
  for (auto& e : ev) {
    EXPECT_EQ(e.module_id, "mod1");
    EXPECT_EQ(*find_property(e.app_properties, "moduleId"), "mod1");
    EXPECT_EQ(*find_property(e.system_properties, sysprop::connection_module_id), "mod1");
  }
}

TEST_F(EngineTest, RegistryCreateAndDeleteWriteTwinAndLifecycleEvent) {
  make_device("dev1");
  auto t = eng_->twins().get("dev1");
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(twin_etag(*t), "AAAAAAAAAAE=");
  ASSERT_TRUE(store_->get(store::table::twins, "dev1")->has_value()) << "the twin is stored with the identity";
  ASSERT_TRUE(reg_->remove("dev1"));
  EXPECT_FALSE(store_->get(store::table::twins, "dev1")->has_value());
  EXPECT_EQ(eng_->twins().get("dev1").err().code, errc::not_found);
  auto life = logged(*store_, message_source::device_lifecycle_events);
  ASSERT_EQ(life.size(), 2u);
  EXPECT_EQ(*find_property(life[0].app_properties, "opType"), "createDeviceIdentity");
  EXPECT_EQ(*find_property(life[1].app_properties, "opType"), "deleteDeviceIdentity");
  EXPECT_EQ(*find_property(life[1].app_properties, "iothub-message-schema"), "deviceLifecycleNotification");
}

// --- cloud-to-device messages through the engine (c2d_queues + MQTT delivery) -------------------------------

// Sends a C2D message through the engine's queues and waits until it is durable (and pumped: the commit
// callback runs the engine's pump before `done`).
c2d_sent c2d_send(engine& eng, const std::string& device, std::string_view body, const std::string& mid = {}) {
  c2d_send_request r;
  r.device_id = device;
  r.body = to_bytes(std::string(body));
  if (!mid.empty()) r.system_properties.push_back({"message-id", mid});
  std::promise<result<c2d_sent>> p;
  eng.c2d().send(std::move(r), [&](result<c2d_sent> s) { p.set_value(std::move(s)); });
  auto f = p.get_future();
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "send never completed";
    return {};
  }
  auto s = f.get();
  EXPECT_TRUE(s) << s.err().message;
  return s ? *s : c2d_sent{};
}

// Copies of the link's deliveries on the device's devicebound topic, once there are at least n (waits up to
// 5 s; fewer come back on a timeout).
std::vector<outbound_message> devicebound(recording_link& l, const std::string& device, std::size_t n) {
  const std::string prefix = "devices/" + device + "/messages/devicebound/";
  std::vector<outbound_message> out;
  std::unique_lock lk(l.mu);
  l.cv.wait_for(lk, std::chrono::seconds(5), [&] {
    out.clear();
    for (auto& m : l.delivered)
      if (m.topic.rfind(prefix, 0) == 0) out.push_back(m);
    return out.size() >= n;
  });
  return out;
}

TEST_F(EngineTest, C2dIsDeliveredAtQos1AndPubackCompletesIt) {
  close();
  engine_options eo;
  eo.max_inflight_outbound = 1;  // one at a time: the second waits for the first PUBACK
  open(eo);
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_devicebound(id);
  c2d_send(*eng_, "dev1", "one", "mid-1");
  c2d_send(*eng_, "dev1", "two", "mid-2");
  auto got = devicebound(*l, "dev1", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].qos, 1);
  EXPECT_NE(got[0].packet_id, 0);
  EXPECT_FALSE(got[0].dup);
  EXPECT_EQ(as_string_view(got[0].payload), "one");
  EXPECT_NE(got[0].topic.find("%24.mid=mid-1"), std::string::npos) << got[0].topic;
  EXPECT_NE(got[0].topic.find("%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound"), std::string::npos) << got[0].topic;
  EXPECT_EQ(got[0].topic.find("iothub-ack"), std::string::npos) << "no ack requested";
  store_->submit_and_wait({});
  EXPECT_EQ(delivered_count(*l), 1u) << "the window holds one";
  EXPECT_EQ(eng_->c2d().depth("dev1"), 2u) << "a delivered message stays queued until its PUBACK";

  eng_->on_puback(id, got[0].packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 1u) << "the PUBACK completed the first";
  got = devicebound(*l, "dev1", 2);
  ASSERT_EQ(got.size(), 2u) << "the next one follows the PUBACK";
  EXPECT_EQ(as_string_view(got[1].payload), "two");
  EXPECT_NE(got[1].topic.find("%24.mid=mid-2"), std::string::npos);
  EXPECT_EQ(got[1].qos, 1);
  EXPECT_NE(got[1].packet_id, got[0].packet_id);
  eng_->on_puback(id, got[1].packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
  eng_->on_puback(id, got[1].packet_id);  // a repeated PUBACK changes nothing
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
  EXPECT_EQ(eng_->c2d().counters().completed, 2u);
}

TEST_F(EngineTest, C2dQueuedWhileOfflineIsDeliveredInOrderAfterAttachAndSubscribe) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  for (int i = 0; i < 3; ++i) c2d_send(*eng_, "dev1", "m" + std::to_string(i));
  EXPECT_EQ(eng_->c2d().depth("dev1"), 3u);
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, true, l);
  store_->submit_and_wait({});
  EXPECT_EQ(delivered_count(*l), 0u) << "not subscribed yet";
  subscribe_devicebound(id);
  auto got = devicebound(*l, "dev1", 3);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(as_string_view(got[i].payload), "m" + std::to_string(i)) << "in queue order";
    EXPECT_EQ(got[i].qos, 1);
  }
  for (auto& m : got) eng_->on_puback(id, m.packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
}

TEST_F(EngineTest, C2dFlowsToAReturningPersistentSession) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  eng_->detach(id, l1.get(), "gone");
  c2d_send(*eng_, "dev1", "a");
  c2d_send(*eng_, "dev1", "b");
  EXPECT_EQ(delivered_count(*l1), 0u) << "nothing goes to a detached link";
  auto l2 = std::make_shared<recording_link>();
  auto a = eng_->attach(id, false, l2);  // the stored subscription is enough: no new SUBSCRIBE
  EXPECT_TRUE(a.session_present);
  auto got = devicebound(*l2, "dev1", 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(as_string_view(got[0].payload), "a");
  EXPECT_EQ(as_string_view(got[1].payload), "b");
  for (auto& m : got) eng_->on_puback(id, m.packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
}

TEST_F(EngineTest, C2dDetachBeforePubackReleasesForRedelivery) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  c2d_send(*eng_, "dev1", "x", "r1");
  auto first = devicebound(*l1, "dev1", 1);
  ASSERT_EQ(first.size(), 1u);
  eng_->detach(id, l1.get(), "gone before PUBACK");
  EXPECT_EQ(eng_->c2d().depth("dev1"), 1u) << "not completed";
  eng_->on_puback(id, first[0].packet_id);  // a PUBACK for the old connection's packet id after the detach
  EXPECT_EQ(eng_->c2d().depth("dev1"), 1u) << "the lock was released with the connection";
  c2d_send(*eng_, "dev1", "y", "r2");
  auto l2 = std::make_shared<recording_link>();
  eng_->attach(id, false, l2);
  auto got = devicebound(*l2, "dev1", 2);
  ASSERT_EQ(got.size(), 2u) << "the released message comes again, before the newer one";
  EXPECT_EQ(as_string_view(got[0].payload), "x");
  EXPECT_NE(got[0].topic.find("%24.mid=r1"), std::string::npos);
  EXPECT_EQ(as_string_view(got[1].payload), "y");
  EXPECT_EQ(devicebound(*l1, "dev1", 1).size(), 1u) << "the old link got nothing more";
  for (auto& m : got) eng_->on_puback(id, m.packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
}

TEST_F(EngineTest, C2dTakeoverReleasesTheOldConnectionsMessages) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l1 = std::make_shared<recording_link>();
  eng_->attach(id, false, l1);
  subscribe_devicebound(id);
  c2d_send(*eng_, "dev1", "x");
  ASSERT_EQ(devicebound(*l1, "dev1", 1).size(), 1u);
  auto l2 = std::make_shared<recording_link>();
  eng_->attach(id, false, l2);  // takes over without a detach of l1
  auto got = devicebound(*l2, "dev1", 1);
  ASSERT_EQ(got.size(), 1u) << "the unacknowledged message goes to the new connection";
  EXPECT_EQ(as_string_view(got[0].payload), "x");
  eng_->detach(id, l1.get(), "kicked");  // the old link's detach is a no-op
  eng_->on_puback(id, got[0].packet_id);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
}

TEST_F(EngineTest, C2dQos0SubscriptionIsDeliveredAtQos0AndCompletedAtOnce) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"devices/dev1/messages/devicebound/#"});  // QoS 0
  c2d_send(*eng_, "dev1", "z", "q0");
  auto got = devicebound(*l, "dev1", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].qos, 0);
  EXPECT_EQ(got[0].packet_id, 0);
  EXPECT_EQ(as_string_view(got[0].payload), "z");
  EXPECT_NE(got[0].topic.find("%24.mid=q0"), std::string::npos);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u) << "at most once: completed as it was sent";
  EXPECT_EQ(eng_->c2d().counters().completed, 1u);
}

TEST_F(EngineTest, C2dUnsubscribedOrModuleSessionsGetNothing) {
  auto d = make_device("dev1");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_to(*eng_, id, {"$iothub/twin/res/#"});  // something else
  c2d_send(*eng_, "dev1", "waiting");
  store_->submit_and_wait({});
  EXPECT_EQ(delivered_count(*l), 0u);
  EXPECT_EQ(eng_->c2d().depth("dev1"), 1u) << "kept for a later subscription";
}

TEST_F(EngineTest, C2dDeletingTheDeviceDropsItsQueue) {
  auto d = make_device("dev1");
  make_device("dev2");
  auto id = eng_->authenticate(request(d), now()).identity;
  auto l = std::make_shared<recording_link>();
  eng_->attach(id, false, l);
  subscribe_devicebound(id);
  c2d_send(*eng_, "dev1", "in flight");
  auto got = devicebound(*l, "dev1", 1);
  ASSERT_EQ(got.size(), 1u);
  eng_->detach(id, l.get(), "gone");
  c2d_send(*eng_, "dev1", "queued");
  c2d_send(*eng_, "dev2", "other");
  EXPECT_EQ(eng_->c2d().depth("dev1"), 2u);

  ASSERT_TRUE(reg_->remove("dev1"));
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
  EXPECT_EQ(eng_->c2d().depth("dev2"), 1u) << "other devices keep theirs";
  store_->submit_and_wait({});
  std::string prefix("dev1");
  prefix.push_back('\0');
  auto rows = store_->scan(store::table::c2d, prefix, {}, 100);
  ASSERT_TRUE(rows);
  EXPECT_TRUE(rows->empty()) << "erased from the store with the identity";
  eng_->on_puback(id, got[0].packet_id);  // a late PUBACK for the dropped message is harmless

  c2d_send_request r;
  r.device_id = "dev1";
  std::promise<result<c2d_sent>> p;
  eng_->c2d().send(r, [&](result<c2d_sent> s) { p.set_value(std::move(s)); });
  auto s = p.get_future().get();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().code, errc::not_found);

  // A new identity with the same id starts with an empty queue; the restart keeps it that way.
  make_device("dev1");
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
  close();
  open();
  ASSERT_TRUE(eng_->c2d().load());  // hub_server::start does this
  EXPECT_EQ(eng_->c2d().depth("dev1"), 0u);
  EXPECT_EQ(eng_->c2d().depth("dev2"), 1u);
}

}  // namespace
}  // namespace fleethub::hub
