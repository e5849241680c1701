// MQTT 3.1.1 packets as plain values. The codec (codec.hpp) turns bytes into these and back.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fleethub/core/bytes.hpp"

namespace fleethub::proto::mqtt {

enum class connack_code : std::uint8_t {
  accepted = 0,
  unacceptable_protocol_version = 1,
  identifier_rejected = 2,
  server_unavailable = 3,
  bad_username_or_password = 4,
  not_authorized = 5,
};

struct will_message {
  std::string topic;
  bytes payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool operator==(const will_message&) const = default;
};

struct connect_packet {
  std::uint8_t protocol_level = 4;
  bool clean_session = true;
  std::uint16_t keep_alive = 0;  // seconds
  std::string client_id;
  std::optional<std::string> username;
  std::optional<bytes> password;
  std::optional<will_message> will;
  bool operator==(const connect_packet&) const = default;
};
struct connack_packet {
  bool session_present = false;
  connack_code code = connack_code::accepted;
  bool operator==(const connack_packet&) const = default;
};
struct publish_packet {
  std::string topic;
  bytes payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // 0 for QoS 0
  bool operator==(const publish_packet&) const = default;
};
struct puback_packet { std::uint16_t packet_id = 0; bool operator==(const puback_packet&) const = default; };
struct pubrec_packet { std::uint16_t packet_id = 0; bool operator==(const pubrec_packet&) const = default; };
struct pubrel_packet { std::uint16_t packet_id = 0; bool operator==(const pubrel_packet&) const = default; };
struct pubcomp_packet { std::uint16_t packet_id = 0; bool operator==(const pubcomp_packet&) const = default; };
struct subscription {
  std::string filter;
  std::uint8_t qos = 0;
  bool operator==(const subscription&) const = default;
};
struct subscribe_packet {
  std::uint16_t packet_id = 0;
  std::vector<subscription> subscriptions;
  bool operator==(const subscribe_packet&) const = default;
};
inline constexpr std::uint8_t suback_failure = 0x80;
struct suback_packet {
  std::uint16_t packet_id = 0;
  std::vector<std::uint8_t> return_codes;  // 0, 1, 2 or 0x80
  bool operator==(const suback_packet&) const = default;
};
struct unsubscribe_packet {
  std::uint16_t packet_id = 0;
  std::vector<std::string> filters;
  bool operator==(const unsubscribe_packet&) const = default;
};
struct unsuback_packet { std::uint16_t packet_id = 0; bool operator==(const unsuback_packet&) const = default; };
struct pingreq_packet { bool operator==(const pingreq_packet&) const = default; };
struct pingresp_packet { bool operator==(const pingresp_packet&) const = default; };
struct disconnect_packet { bool operator==(const disconnect_packet&) const = default; };

using packet = std::variant<connect_packet, connack_packet, publish_packet, puback_packet, pubrec_packet,
                            pubrel_packet, pubcomp_packet, subscribe_packet, suback_packet, unsubscribe_packet,
                            unsuback_packet, pingreq_packet, pingresp_packet, disconnect_packet>;

}  // namespace fleethub::proto::mqtt
