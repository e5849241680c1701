#include "fleethub/hub/system_events.hpp"

#include <cstdio>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {

system_events::system_events(std::string_view hostname)
    : hub_name_(hostname.substr(0, hostname.find('.'))) {}

std::string system_events::next_sequence_number(std::int64_t now_ms) {
  // Time first (microseconds), then a counter: increasing within a run, and across restarts as long as
  // the clock does not go back. IoT Hub's consumers compare these strings to order connect/disconnect.
  std::uint64_t us, n;
  {
    std::lock_guard lk(seq_mu_);
    us = std::max<std::uint64_t>(last_us_, static_cast<std::uint64_t>(now_ms) * 1000);
    last_us_ = us;
    n = ++counter_;
  }
  char buf[65];
  std::snprintf(buf, sizeof buf, "%032llX%032llX", static_cast<unsigned long long>(us),
                static_cast<unsigned long long>(n));
  return buf;
}

message system_events::base(message_source src, std::string_view device_id, std::string_view module_id,
                            std::string_view op_type, std::string_view schema, std::int64_t now_ms) {
  message m;
  m.source = src;
  m.device_id = std::string(device_id);
  m.module_id = std::string(module_id);
  m.enqueued_time_ms = now_ms;
  auto& s = m.system_properties;
  s.push_back({std::string(sysprop::message_id), new_uuid()});
  s.push_back({std::string(sysprop::correlation_id), new_uuid()});
  s.push_back({std::string(sysprop::user_id), hub_name_});
  s.push_back({std::string(sysprop::content_type), "application/json"});
  s.push_back({std::string(sysprop::content_encoding), "utf-8"});
  s.push_back({std::string(sysprop::connection_device_id), std::string(device_id)});
  if (!module_id.empty()) s.push_back({std::string(sysprop::connection_module_id), std::string(module_id)});
  auto& a = m.app_properties;
  a.push_back({"hubName", hub_name_});
  a.push_back({"deviceId", std::string(device_id)});
  if (!module_id.empty()) a.push_back({"moduleId", std::string(module_id)});
  a.push_back({"opType", std::string(op_type)});
  a.push_back({"iothub-message-schema", std::string(schema)});
  a.push_back({"operationTimestamp", format_iso8601(now_ms)});
  return m;
}

message system_events::connection_state(std::string_view device_id, std::string_view module_id, bool connected,
                                        std::int64_t now_ms) {
  auto m = base(message_source::device_connection_state_events, device_id, module_id,
                connected ? "deviceConnected" : "deviceDisconnected", "deviceConnectionStateNotification", now_ms);
  auto body = "{\"sequenceNumber\":\"" + next_sequence_number(now_ms) + "\"}";
  m.body.assign(body.begin(), body.end());
  return m;
}

message system_events::lifecycle(std::string_view device_id, std::string_view module_id, bool created,
                                 std::string body_json, std::int64_t now_ms) {
  auto m = base(message_source::device_lifecycle_events, device_id, module_id,
                created ? "createDeviceIdentity" : "deleteDeviceIdentity", "deviceLifecycleNotification", now_ms);
  m.body.assign(body_json.begin(), body_json.end());
  return m;
}

message system_events::twin_change(std::string_view device_id, std::string_view module_id, bool replaced,
                                   std::string body_json, std::int64_t now_ms) {
  auto m = base(message_source::twin_change_events, device_id, module_id, replaced ? "replaceTwin" : "updateTwin",
                "twinChangeNotification", now_ms);
  m.body.assign(body_json.begin(), body_json.end());
  return m;
}

}  // namespace fleethub::hub
