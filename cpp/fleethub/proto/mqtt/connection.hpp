// Server side of one MQTT 3.1.1 connection as a Sans-I/O state machine.
//
// Who calls it: net/mqtt_session (the Asio driver) feeds received bytes and `now`; the hub answers the
// events it returns (authentication, durable PUBACK, subscription grants). Outgoing bytes collect in an
// output buffer that the driver drains with take_output() after each call, so many packets go out in one
// write. Owns: the decoder, the keep-alive deadline, the inbound QoS 1 bookkeeping. Thread safety: none;
// one connection is used from one thread (its strand).
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/clock.hpp"
#include "fleethub/proto/mqtt/codec.hpp"
#include "fleethub/proto/mqtt/packet.hpp"

namespace fleethub::proto::mqtt {

struct connection_limits {
  std::size_t max_packet_size = 256 * 1024 + 4096;  // IoT Hub: 256 KB message + topic and properties
  std::chrono::seconds connect_timeout{30};         // close if no CONNECT arrives in time
  std::uint16_t max_keep_alive = 1740;              // IoT Hub's maximum; larger requests are clamped
  std::size_t max_subscriptions_per_packet = 16;
  std::size_t max_inbound_inflight = 1000;          // unacked QoS 1 publishes from the client
};

// ---- events returned to the driver ----
// A CONNECT arrived; answer with accept() or refuse().
struct connect_event { connect_packet packet; };
// A PUBLISH arrived. For QoS 1, call acknowledge(packet_id) once it is durable (PUBACK only then).
struct publish_event { publish_packet packet; };
// A SUBSCRIBE arrived; answer with grant(packet_id, return codes), one code per filter.
struct subscribe_event { subscribe_packet packet; };
// An UNSUBSCRIBE arrived; the UNSUBACK is already in the output buffer.
struct unsubscribe_event { unsubscribe_packet packet; };
// The client acknowledged an outbound QoS 1 publish.
struct puback_event { std::uint16_t packet_id; };
// The connection must close now (after flushing output). `graceful` is true for a client DISCONNECT.
struct close_event { bool graceful = false; std::string reason; };

using event = std::variant<connect_event, publish_event, subscribe_event, unsubscribe_event, puback_event, close_event>;

enum class connection_state { awaiting_connect, authenticating, connected, closed };

class connection {
 public:
  connection(const connection_limits& limits, steady_time now);

  // Feeds received bytes. Returns events in arrival order. Stops at the first close_event.
  std::vector<event> feed(bytes_view data, steady_time now);
  // The same, appending to `events` (a caller's reused vector: no allocation per read on the hot path).
  void feed(bytes_view data, steady_time now, std::vector<event>& events);

  // Answers to a connect_event. accept() writes CONNACK 0 and starts keep-alive (1.5x the client's value).
  // Bytes received after CONNECT stay unparsed until then: call feed({}, now) after accept() for their events.
  void accept(bool session_present, steady_time now);
  // Writes CONNACK with `code` and moves to closed; the driver closes after flushing.
  void refuse(connack_code code);

  // PUBACK for an inbound QoS 1 publish (call once it is durable).
  void acknowledge(std::uint16_t packet_id);
  // SUBACK for a subscribe_event.
  void grant(std::uint16_t packet_id, const std::vector<std::uint8_t>& return_codes);
  // Outbound PUBLISH to the client (QoS 0 or 1; for QoS 1 the caller owns packet id allocation and redelivery).
  void publish(std::string_view topic, bytes_view payload, std::uint8_t qos, std::uint16_t packet_id, bool dup);

  // Checks deadlines (connect timeout, keep-alive). Returns a close_event when one passed.
  std::optional<close_event> tick(steady_time now);
  // The next time tick() must be called.
  steady_time next_deadline() const;

  // Moves pending output out (empty when nothing to send).
  bytes take_output();
  bool has_output() const { return !out_.empty(); }

  connection_state state() const { return state_; }
  std::uint16_t keep_alive() const { return keep_alive_; }

 private:
  connection_limits limits_;
  decoder decoder_;
  connection_state state_ = connection_state::awaiting_connect;
  steady_time deadline_;
  std::uint16_t keep_alive_ = 0;
  std::size_t inbound_inflight_ = 0;
  bytes out_;
};

}  // namespace fleethub::proto::mqtt
