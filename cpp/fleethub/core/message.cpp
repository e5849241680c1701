#include "fleethub/core/message.hpp"

#include <cctype>

#include "fleethub/core/encoding.hpp"

namespace fleethub {

const std::string* find_property(const property_list& props, std::string_view key) {
  for (const auto& p : props) {
    if (p.key == key) return &p.value;
  }
  return nullptr;
}

void set_property(property_list& props, std::string_view key, std::string value) {
  for (auto& p : props) {
    if (p.key == key) {
      p.value = std::move(value);
      return;
    }
  }
  props.push_back(property{std::string(key), std::move(value)});
}

std::string auth_method_json(connection_auth a, bool module) {
  const char* type = a == connection_auth::x509 ? "x509Certificate" : a == connection_auth::sas_token ? "sasToken" : "sas";
  return std::string("{\"scope\":\"") + (module ? "module" : "device") + "\",\"type\":\"" + type +
         "\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}";
}

std::string_view message_source_name(message_source s) {
  switch (s) {
    case message_source::telemetry: return "Telemetry";
    case message_source::twin_change_events: return "twinChangeEvents";
    case message_source::device_lifecycle_events: return "deviceLifecycleEvents";
    case message_source::device_connection_state_events: return "deviceConnectionStateEvents";
  }
  return "Telemetry";
}

std::optional<message_source> message_source_from_string(std::string_view s) {
  auto eq = [&](std::string_view b) {
    if (s.size() != b.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
  };
  if (eq("Telemetry") || eq("DeviceMessages")) return message_source::telemetry;
  if (eq("twinChangeEvents")) return message_source::twin_change_events;
  if (eq("deviceLifecycleEvents")) return message_source::device_lifecycle_events;
  if (eq("deviceConnectionStateEvents")) return message_source::device_connection_state_events;
  return std::nullopt;
}

property_list full_system_properties(const message& m) {
  property_list out = m.system_properties;
  out.reserve(out.size() + 6);
  if (m.auth != connection_auth::none) {
    out.push_back({std::string(sysprop::connection_device_id), m.device_id});
    if (!m.module_id.empty()) out.push_back({std::string(sysprop::connection_module_id), m.module_id});
    out.push_back({std::string(sysprop::connection_auth_method), auth_method_json(m.auth, !m.module_id.empty())});
    out.push_back({std::string(sysprop::connection_auth_generation_id), m.auth_generation_id});
  }
  if (m.enqueued_time_ms) out.push_back({std::string(sysprop::enqueued_time), format_iso8601(m.enqueued_time_ms)});
  if (!find_property(out, sysprop::message_source))
    out.push_back({std::string(sysprop::message_source), std::string(message_source_name(m.source))});
  return out;
}

}  // namespace fleethub
