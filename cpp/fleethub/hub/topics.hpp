// IoT Hub's MQTT topic space (wire-protocol.md §1.4): which topic a device may publish to or subscribe to,
// and what it means. Pure functions.
#pragma once
#include <cstdint>
#include <string>
#include <optional>
#include <string_view>

namespace fleethub::hub {

enum class topic_kind {
  telemetry,        // devices/{d}[/modules/{m}]/messages/events/{bag}
  twin_get,         // $iothub/twin/GET/?$rid=
  twin_patch_reported,
  method_response,  // $iothub/methods/res/{status}/?$rid=
  forbidden,        // another device's topic or outside the IoT Hub topic space
};

struct classified_topic {
  topic_kind kind = topic_kind::forbidden;
  std::string_view property_bag;  // telemetry: text after ".../messages/events/"
  std::string_view rid;           // twin and method topics: the $rid query value (empty when absent)
  std::string_view status;        // method_response: the {status} level
};

// The value of `key` in a topic's "?k=v&k=v" query (nullopt when absent).
std::optional<std::string_view> topic_query_value(std::string_view topic, std::string_view key);

// Classifies a PUBLISH topic from the identity (device_id, module_id). Never allocates.
classified_topic classify_publish(std::string_view topic, std::string_view device_id, std::string_view module_id);

// True when the identity may subscribe to `filter`; IoT Hub's device-side filters only.
bool subscription_allowed(std::string_view filter, std::string_view device_id, std::string_view module_id);

// Stable partition for a device id: FNV-1a 32 modulo `partitions` (IoT Hub partitions by device id).
std::uint32_t partition_for(std::string_view device_id, std::uint32_t partitions);

}  // namespace fleethub::hub
