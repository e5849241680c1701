// IoT Hub MQTT property bags (wire-protocol.md §1.5): the `k1=v1&k2=v2` tail of a telemetry or C2D topic.
// Parsing is lenient (csdk sends raw values; pydev and nodedev encode `$` as %24); encoding is exact
// (system keys as `%24.mid`, values percent-encoded, empty values as `key=`). Pure functions.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "fleethub/core/message.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::proto::mqtt {

struct parsed_bag {
  property_list system_properties;  // mapped onto `sysprop` names: $.mid -> message-id, $.ct -> content-type, ...
  property_list app_properties;     // everything else (incl. iothub-creation-time-utc), decoded, in order
};

struct bag_limits {
  std::size_t max_properties = 256;
  std::size_t max_key_length = 1024;
  std::size_t max_value_length = 65536;
};

// `bag` is the text after ".../messages/events/" (may be empty). Errors: invalid_argument (empty key,
// duplicate system key) and too_large (limits).
result<parsed_bag> parse_property_bag(std::string_view bag, const bag_limits& limits = {});

// Encodes system + app properties for a device-bound topic. System keys use IoT Hub's short names
// (message-id -> %24.mid, correlation-id -> %24.cid, user-id -> %24.uid, content-type -> %24.ct,
// content-encoding -> %24.ce, absolute-expiry-time -> %24.exp, to -> %24.to); unknown system
// properties are written under their own names (iothub-connection-device-id / -module-id as %24.cdid /
// %24.cmid, which csdk recognises). Keys and values are percent-encoded (upper hex). Property values are
// never null, so an empty value is written as `key=` (never as a bare key).
std::string encode_property_bag(const property_list& system_properties, const property_list& app_properties);

// Maps a short bag key without the "$." prefix ("mid", "ct", ...) to its sysprop name, or nullopt.
std::optional<std::string_view> system_property_from_short_key(std::string_view short_key);

}  // namespace fleethub::proto::mqtt
