#include "fleethub/core/message.hpp"

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

property_list full_system_properties(const message& m) {
  property_list out = m.system_properties;
  out.reserve(out.size() + 5);
  if (m.auth != connection_auth::none) {
    out.push_back({std::string(sysprop::connection_device_id), m.device_id});
    if (!m.module_id.empty()) out.push_back({std::string(sysprop::connection_module_id), m.module_id});
    out.push_back({std::string(sysprop::connection_auth_method), auth_method_json(m.auth, !m.module_id.empty())});
    out.push_back({std::string(sysprop::connection_auth_generation_id), m.auth_generation_id});
  }
  if (m.enqueued_time_ms) out.push_back({std::string(sysprop::enqueued_time), format_iso8601(m.enqueued_time_ms)});
  return out;
}

}  // namespace fleethub
