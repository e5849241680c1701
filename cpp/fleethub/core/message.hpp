// Message: one device-to-cloud (or cloud-to-device) message with IoT Hub's properties.
// Who uses it: proto parsers fill it, hub stamps it, store persists it (message_codec), bindings expose it.
// Thread safety: plain value.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fleethub/core/bytes.hpp"

namespace fleethub {

// System property names, exactly as IoT Hub exposes them on the built-in endpoint and in routing.
namespace sysprop {
inline constexpr std::string_view message_id = "message-id";
inline constexpr std::string_view correlation_id = "correlation-id";
inline constexpr std::string_view user_id = "user-id";
inline constexpr std::string_view content_type = "content-type";
inline constexpr std::string_view content_encoding = "content-encoding";
inline constexpr std::string_view absolute_expiry_time = "absolute-expiry-time";
inline constexpr std::string_view to = "to";
inline constexpr std::string_view output_name = "iothub-outputname";
inline constexpr std::string_view interface_id = "iothub-interface-id";
inline constexpr std::string_view component_name = "dt-subject";
inline constexpr std::string_view creation_time_utc = "iothub-creation-time-utc";
inline constexpr std::string_view diag_id = "iothub-diag-id";
inline constexpr std::string_view diag_context = "diag-correlation-context";
inline constexpr std::string_view connection_device_id = "iothub-connection-device-id";
inline constexpr std::string_view connection_module_id = "iothub-connection-module-id";
inline constexpr std::string_view connection_auth_method = "iothub-connection-auth-method";
inline constexpr std::string_view connection_auth_generation_id = "iothub-connection-auth-generation-id";
inline constexpr std::string_view enqueued_time = "iothub-enqueuedtime";
inline constexpr std::string_view message_source = "iothub-message-source";
}  // namespace sysprop

struct property {
  std::string key;
  std::string value;
  bool operator==(const property&) const = default;
};

using property_list = std::vector<property>;

// Finds a property by exact key; nullptr when absent.
const std::string* find_property(const property_list& props, std::string_view key);
void set_property(property_list& props, std::string_view key, std::string value);

struct message {
  std::string device_id;
  std::string module_id;            // empty for a device-level message
  bytes body;
  property_list system_properties;  // keys from `sysprop`
  property_list app_properties;     // user properties, in the order received
  std::int64_t enqueued_time_ms = 0;  // unix ms, stamped by the hub
  bool operator==(const message&) const = default;
};

}  // namespace fleethub
