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

// How the sending connection authenticated; IoT Hub reports it as iothub-connection-auth-method JSON.
enum class connection_auth : std::uint8_t {
  none = 0,        // not from a device connection (or a record written before this was kept)
  sas = 1,         // the identity's own SAS key
  sas_token = 2,   // a shared access policy token acting for the identity
  x509 = 3,        // an X.509 client certificate
};
// {"scope":"device"|"module","type":"sas"|"sasToken"|"x509Certificate","issuer":"iothub","acceptingIpFilterRule":null}
std::string auth_method_json(connection_auth a, bool module);

// Where a message came from: IoT Hub's routing sources. Device telemetry and the hub's own system events
// share the event log (per-device order across sources); consumers filter on this.
enum class message_source : std::uint8_t {
  telemetry = 0,                 // DeviceMessages; iothub-message-source "Telemetry"
  twin_change_events = 1,        // "twinChangeEvents"
  device_lifecycle_events = 2,   // "deviceLifecycleEvents"
  device_connection_state_events = 3,  // "deviceConnectionStateEvents"
};
inline constexpr std::uint8_t message_source_count = 4;
// The iothub-message-source value ("Telemetry", "twinChangeEvents", ...).
std::string_view message_source_name(message_source s);
// Accepts the message-source values and the routing source names (DeviceMessages, TwinChangeEvents,
// DeviceLifecycleEvents, DeviceConnectionStateEvents), case-insensitively.
std::optional<message_source> message_source_from_string(std::string_view s);

struct message {
  message_source source = message_source::telemetry;
  std::string device_id;
  std::string module_id;            // empty for a device-level message
  bytes body;
  property_list system_properties;  // keys from `sysprop`, as set by the sender (message-id, content-type, ...)
  property_list app_properties;     // user properties, in the order received
  std::int64_t enqueued_time_ms = 0;  // unix ms, stamped by the hub
  // The connection's identity facts, kept as fields rather than strings on every message: the
  // iothub-connection-* and iothub-enqueuedtime system properties are derived from them when read.
  connection_auth auth = connection_auth::none;
  std::string auth_generation_id;
  bool operator==(const message&) const = default;
};

// The system properties as a consumer sees them: the sender's plus the hub's (iothub-connection-device-id,
// -module-id, -auth-method, -auth-generation-id, iothub-enqueuedtime, iothub-message-source).
property_list full_system_properties(const message& m);

}  // namespace fleethub
