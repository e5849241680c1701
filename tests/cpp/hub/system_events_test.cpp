// The hub's own event messages (semantics.md §8.3, §8.4): connection state, identity lifecycle and twin change
// events with IoT Hub's system and application properties, and the increasing connection-state sequence number.
#include "fleethub/hub/system_events.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "fleethub/core/encoding.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/core/message_codec.hpp"

namespace fleethub::hub {
namespace {

constexpr std::int64_t t0 = 1700000000123;

std::string prop(const property_list& props, std::string_view key) {
  auto* v = find_property(props, key);
  return v ? *v : "<absent>";
}
std::size_t count_key(const property_list& props, std::string_view key) {
  return static_cast<std::size_t>(
      std::count_if(props.begin(), props.end(), [&](const property& p) { return p.key == key; }));
}
bool is_upper_hex64(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}
bool is_uuid(const std::string& s) { return s.size() == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'; }

// The properties every system event has, whatever its kind.
void expect_common(const message& m, const std::string& hub, const std::string& device, const std::string& module,
                   message_source src, const std::string& source_name, const std::string& op,
                   const std::string& schema, std::int64_t now) {
  SCOPED_TRACE(op + " " + device + "/" + module);
  EXPECT_EQ(m.source, src);
  EXPECT_EQ(m.device_id, device);
  EXPECT_EQ(m.module_id, module);
  EXPECT_EQ(m.enqueued_time_ms, now);
  EXPECT_EQ(m.auth, connection_auth::none);
  const auto& s = m.system_properties;
  EXPECT_TRUE(is_uuid(prop(s, sysprop::message_id))) << prop(s, sysprop::message_id);
  EXPECT_TRUE(is_uuid(prop(s, sysprop::correlation_id))) << prop(s, sysprop::correlation_id);
  EXPECT_EQ(prop(s, sysprop::user_id), hub);
  EXPECT_EQ(prop(s, sysprop::content_type), "application/json");
  EXPECT_EQ(prop(s, sysprop::content_encoding), "utf-8");
  EXPECT_EQ(prop(s, sysprop::connection_device_id), device);
  if (module.empty()) {
    EXPECT_EQ(find_property(s, sysprop::connection_module_id), nullptr);
  } else {
    EXPECT_EQ(prop(s, sysprop::connection_module_id), module);
  }
  auto full = full_system_properties(m);
  EXPECT_EQ(prop(full, sysprop::message_source), source_name);
  EXPECT_EQ(prop(full, sysprop::enqueued_time), format_iso8601(now));
  EXPECT_EQ(count_key(full, sysprop::connection_device_id), 1u) << "not repeated by the derived properties";
  EXPECT_EQ(prop(full, sysprop::user_id), hub);

  const auto& a = m.app_properties;
  EXPECT_EQ(prop(a, "hubName"), hub);
  EXPECT_EQ(prop(a, "deviceId"), device);
  if (module.empty()) {
    EXPECT_EQ(find_property(a, "moduleId"), nullptr);
  } else {
    EXPECT_EQ(prop(a, "moduleId"), module);
  }
  EXPECT_EQ(prop(a, "opType"), op);
  EXPECT_EQ(prop(a, "iothub-message-schema"), schema);
  EXPECT_EQ(prop(a, "operationTimestamp"), format_iso8601(now));
  EXPECT_EQ(prop(a, "operationTimestamp"), "2023-11-14T22:13:20.123Z");

  // It survives the event log's record format with its source.
  auto rec = encode_message(m);
  EXPECT_EQ(peek_message_source(rec), std::optional<message_source>(src));
  auto back = decode_message(rec);
  ASSERT_TRUE(back) << back.err().message;
  EXPECT_EQ(*back, m);
}

TEST(SystemEvents, HubNameIsTheFirstHostLabel) {
  EXPECT_EQ(system_events("myhub.azure-devices.net").hub_name(), "myhub");
  EXPECT_EQ(system_events("localhost").hub_name(), "localhost");
  EXPECT_EQ(system_events("a.b.c").hub_name(), "a");
  EXPECT_EQ(system_events("").hub_name(), "");
}

TEST(SystemEvents, ConnectionStateEvents) {
  system_events ev("myhub.azure-devices.net");
  auto c = ev.connection_state("dev1", "", true, t0);
  expect_common(c, "myhub", "dev1", "", message_source::device_connection_state_events, "deviceConnectionStateEvents",
                "deviceConnected", "deviceConnectionStateNotification", t0);
  auto d = ev.connection_state("dev1", "", false, t0);
  expect_common(d, "myhub", "dev1", "", message_source::device_connection_state_events, "deviceConnectionStateEvents",
                "deviceDisconnected", "deviceConnectionStateNotification", t0);
  auto m = ev.connection_state("dev1", "mod1", true, t0);
  expect_common(m, "myhub", "dev1", "mod1", message_source::device_connection_state_events,
                "deviceConnectionStateEvents", "deviceConnected", "deviceConnectionStateNotification", t0);
  EXPECT_NE(*find_property(c.system_properties, sysprop::message_id),
            *find_property(d.system_properties, sysprop::message_id));

  // Body: {"sequenceNumber":"<64 hex>"}, increasing from event to event.
  std::string prev;
  for (auto* msg : {&c, &d, &m}) {
    auto body = json::parse(as_string_view(msg->body));
    ASSERT_TRUE(body) << as_string_view(msg->body);
    ASSERT_TRUE(body->is_object());
    EXPECT_EQ(body->as_object().size(), 1u);
    auto* seq = body->find("sequenceNumber");
    ASSERT_NE(seq, nullptr);
    ASSERT_TRUE(seq->is_string());
    EXPECT_TRUE(is_upper_hex64(seq->as_string())) << seq->as_string();
    EXPECT_GT(seq->as_string(), prev);
    prev = seq->as_string();
  }
}

TEST(SystemEvents, LifecycleEvents) {
  system_events ev("myhub.azure-devices.net");
  const std::string twin = R"({"deviceId":"dev1","etag":"AAAAAAAAAAE=","version":1})";
  auto c = ev.lifecycle("dev1", "", true, twin, t0);
  expect_common(c, "myhub", "dev1", "", message_source::device_lifecycle_events, "deviceLifecycleEvents",
                "createDeviceIdentity", "deviceLifecycleNotification", t0);
  EXPECT_EQ(as_string_view(c.body), twin);
  auto d = ev.lifecycle("dev1", "mod1", false, "{}", t0);
  expect_common(d, "myhub", "dev1", "mod1", message_source::device_lifecycle_events, "deviceLifecycleEvents",
                "deleteDeviceIdentity", "deviceLifecycleNotification", t0);
  EXPECT_EQ(as_string_view(d.body), "{}");
}

TEST(SystemEvents, TwinChangeEvents) {
  system_events ev("hub2.example.org");
  const std::string patch = R"({"version":2,"tags":{"a":1}})";
  auto u = ev.twin_change("dev1", "", false, patch, t0);
  expect_common(u, "hub2", "dev1", "", message_source::twin_change_events, "twinChangeEvents", "updateTwin",
                "twinChangeNotification", t0);
  EXPECT_EQ(as_string_view(u.body), patch);
  auto r = ev.twin_change("dev1", "m", true, "{\"deviceId\":\"dev1\"}", t0);
  expect_common(r, "hub2", "dev1", "m", message_source::twin_change_events, "twinChangeEvents", "replaceTwin",
                "twinChangeNotification", t0);
}

TEST(SystemEvents, SequenceNumbersIncreaseStrictly) {
  system_events ev("h");
  std::string prev = ev.next_sequence_number(t0);
  EXPECT_TRUE(is_upper_hex64(prev)) << prev;
  std::int64_t now = t0;
  std::uint32_t x = 7;
  for (int i = 0; i < 10000; ++i) {
    // The clock mostly stands still or moves forward, and sometimes goes back by up to a few seconds.
    x = x * 1103515245 + 12345;
    switch ((x >> 16) % 4) {
      case 0: break;
      case 1: now += (x >> 20) % 5; break;
      case 2: now -= (x >> 20) % 5000; break;
      case 3: now += 1000; break;
    }
    auto s = ev.next_sequence_number(now);
    ASSERT_TRUE(is_upper_hex64(s)) << s;
    ASSERT_GT(s, prev) << "call " << i << " at " << now;
    prev = s;
  }
}

TEST(SystemEvents, SequenceNumbersSurviveTheClockGoingBack) {
  system_events ev("h");
  auto a = ev.next_sequence_number(t0 + 60000);
  auto b = ev.next_sequence_number(t0);  // a minute back
  auto c = ev.next_sequence_number(0);
  EXPECT_GT(b, a);
  EXPECT_GT(c, b);
  // Events made from messages also carry increasing numbers when the clock goes back.
  auto e1 = ev.connection_state("d", "", true, t0 + 120000);
  auto e2 = ev.connection_state("d", "", false, t0);
  auto seq = [](const message& m) { return json::parse(as_string_view(m.body))->find("sequenceNumber")->as_string(); };
  EXPECT_GT(seq(e2), seq(e1));
  EXPECT_GT(seq(e1), c);
}

TEST(SystemEvents, SequenceNumbersOrderAcrossInstancesWhenTimeMovesOn) {
  // A restart (a new instance) later in time sorts after everything the earlier run made.
  system_events first("h");
  std::string last;
  for (int i = 0; i < 1000; ++i) last = first.next_sequence_number(t0);
  system_events second("h");
  EXPECT_GT(second.next_sequence_number(t0 + 1), last);
}

TEST(SystemEvents, SequenceNumbersAreUniqueAcrossThreads) {
  system_events ev("h");
  constexpr int threads = 4, per_thread = 2500;
  std::vector<std::vector<std::string>> got(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::string prev;
      for (int i = 0; i < per_thread; ++i) {
        auto s = ev.next_sequence_number(t0 + i);
        EXPECT_GT(s, prev);  // increasing as each thread sees them, too
        prev = s;
        got[t].push_back(std::move(s));
      }
    });
  for (auto& t : ts) t.join();
  std::set<std::string> all;
  for (auto& v : got) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(threads * per_thread));
}

}  // namespace
}  // namespace fleethub::hub
