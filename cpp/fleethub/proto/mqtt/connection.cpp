// Server-side MQTT 3.1.1 connection machine.
//
// Pipelining: bytes that arrive after CONNECT stay unparsed inside the decoder while the hub authenticates
// (state authenticating), so nothing is processed before the CONNACK. After accept() the driver calls
// feed({}, now) (an empty span is fine) to get the events of those buffered packets.
#include "fleethub/proto/mqtt/connection.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace fleethub::proto::mqtt {
namespace {

// Azure IoT Hub / §3.1.2.10: the server allows one and a half keep-alive periods between packets.
steady_time keep_alive_deadline(steady_time now, std::uint16_t keep_alive) {
  if (keep_alive == 0) return steady_time::max();
  return now + std::chrono::milliseconds(static_cast<std::int64_t>(keep_alive) * 1500);
}

const char* packet_name(const packet& p) {
  static constexpr const char* names[] = {"CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
                                          "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
                                          "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT"};
  return names[p.index()];
}

}  // namespace

connection::connection(const connection_limits& limits, steady_time now)
    : limits_(limits), decoder_(limits.max_packet_size), deadline_(now + limits.connect_timeout) {}

void connection::feed(bytes_view data, steady_time now, std::vector<event>& events) {
  if (state_ == connection_state::closed) return;
  decoder_.feed(data);

  auto close = [&](bool graceful, std::string reason) -> void {
    state_ = connection_state::closed;
    deadline_ = steady_time::max();
    decoder_ = decoder(0);  // drop buffered input; nothing more is parsed
    events.push_back(close_event{graceful, std::move(reason)});
    return;
  };
  auto decode_failure = [&]() -> void {
    const auto& st = decoder_.status();
    return close(false, (st.error == decode_error::packet_too_large ? "packet too large: " : "malformed packet: ") +
                            st.detail);
  };

  if (state_ == connection_state::awaiting_connect) {
    auto p = decoder_.next();
    if (!p) {
      if (!decoder_.failed()) return;
      if (decoder_.status().error == decode_error::unsupported_protocol) {
        encode(connack_packet{false, connack_code::unacceptable_protocol_version}, out_);
        return close(false, "unsupported protocol: " + decoder_.status().detail);
      }
      return decode_failure();
    }
    auto* c = std::get_if<connect_packet>(&*p);
    if (!c) return close(false, std::string("first packet was ") + packet_name(*p) + ", not CONNECT");
    state_ = connection_state::authenticating;
    keep_alive_ = c->keep_alive;  // the client's request until accept() clamps it
    events.push_back(connect_event{std::move(*c)});
    // Anything after CONNECT waits in the decoder until accept().
  }

  if (state_ == connection_state::authenticating) {
    // Bound what a client may pipeline before it is authenticated.
    if (decoder_.buffered() > 2 * limits_.max_packet_size)
      return close(false, "too much data sent before CONNACK");
    return;
  }

  while (auto p = decoder_.next()) {
    deadline_ = keep_alive_deadline(now, keep_alive_);
    if (auto* pub = std::get_if<publish_packet>(&*p)) {
      if (pub->qos == 2) return close(false, "QoS 2 PUBLISH is not supported");
      if (pub->qos == 1 && ++inbound_inflight_ > limits_.max_inbound_inflight)
        return close(false, "too many unacknowledged QoS 1 publishes");
      events.push_back(publish_event{std::move(*pub)});
    } else if (auto* sub = std::get_if<subscribe_packet>(&*p)) {
      if (sub->subscriptions.size() > limits_.max_subscriptions_per_packet)
        return close(false, "too many topic filters in one SUBSCRIBE");
      events.push_back(subscribe_event{std::move(*sub)});
    } else if (auto* unsub = std::get_if<unsubscribe_packet>(&*p)) {
      encode(unsuback_packet{unsub->packet_id}, out_);
      events.push_back(unsubscribe_event{std::move(*unsub)});
    } else if (std::holds_alternative<pingreq_packet>(*p)) {
      encode(pingresp_packet{}, out_);
    } else if (auto* ack = std::get_if<puback_packet>(&*p)) {
      events.push_back(puback_event{ack->packet_id});
    } else if (std::holds_alternative<disconnect_packet>(*p)) {
      return close(true, "client disconnected");
    } else if (std::holds_alternative<connect_packet>(*p)) {
      return close(false, "second CONNECT");
    } else if (std::holds_alternative<pubrec_packet>(*p) || std::holds_alternative<pubrel_packet>(*p) ||
               std::holds_alternative<pubcomp_packet>(*p)) {
      return close(false, std::string(packet_name(*p)) + ": QoS 2 is not supported");
    } else {
      return close(false, std::string("unexpected server-to-client packet ") + packet_name(*p));
    }
  }
  if (decoder_.failed()) return decode_failure();
  return;
}

std::vector<event> connection::feed(bytes_view data, steady_time now) {
  std::vector<event> events;
  feed(data, now, events);
  return events;
}

void connection::accept(bool session_present, steady_time now) {
  if (state_ != connection_state::authenticating) return;
  encode(connack_packet{session_present, connack_code::accepted}, out_);
  keep_alive_ = std::min(keep_alive_, limits_.max_keep_alive);
  deadline_ = keep_alive_deadline(now, keep_alive_);
  state_ = connection_state::connected;
}

void connection::refuse(connack_code code) {
  if (state_ == connection_state::closed || state_ == connection_state::connected) return;
  encode(connack_packet{false, code}, out_);
  state_ = connection_state::closed;
  deadline_ = steady_time::max();
  decoder_ = decoder(0);
}

// Answers are dropped unless connected: after a close they would never be flushed anyway.
void connection::acknowledge(std::uint16_t packet_id) {
  if (state_ != connection_state::connected) return;
  if (inbound_inflight_ > 0) --inbound_inflight_;
  encode(puback_packet{packet_id}, out_);
}

void connection::grant(std::uint16_t packet_id, const std::vector<std::uint8_t>& return_codes) {
  if (state_ != connection_state::connected) return;
  encode(suback_packet{packet_id, return_codes}, out_);
}

void connection::publish(std::string_view topic, bytes_view payload, std::uint8_t qos, std::uint16_t packet_id,
                         bool dup) {
  if (state_ != connection_state::connected) return;
  // Written here rather than via publish_packet so the payload is copied once, straight into the output.
  if (topic.size() > 0xFFFF) throw std::length_error("mqtt: topic longer than 65535 bytes");
  std::size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload.size();
  if (remaining > 268'435'455) throw std::length_error("mqtt: packet larger than 256 MB");
  if (out_.empty()) out_.reserve(5 + remaining);  // later appends keep geometric growth
  out_.push_back(static_cast<std::uint8_t>(0x30 | (dup ? 0x08 : 0) | ((qos & 0x03) << 1)));
  do {
    auto b = static_cast<std::uint8_t>(remaining % 128);
    remaining /= 128;
    if (remaining > 0) b |= 0x80;
    out_.push_back(b);
  } while (remaining > 0);
  out_.push_back(static_cast<std::uint8_t>(topic.size() >> 8));
  out_.push_back(static_cast<std::uint8_t>(topic.size() & 0xFF));
  out_.insert(out_.end(), topic.begin(), topic.end());
  if (qos > 0) {
    out_.push_back(static_cast<std::uint8_t>(packet_id >> 8));
    out_.push_back(static_cast<std::uint8_t>(packet_id & 0xFF));
  }
  out_.insert(out_.end(), payload.begin(), payload.end());
}

std::optional<close_event> connection::tick(steady_time now) {
  if (state_ == connection_state::closed || now < deadline_) return std::nullopt;
  const bool connected = state_ == connection_state::connected;
  state_ = connection_state::closed;
  deadline_ = steady_time::max();
  decoder_ = decoder(0);
  return close_event{false, connected ? "keep-alive timeout" : "connect timeout"};
}

steady_time connection::next_deadline() const {
  return state_ == connection_state::closed ? steady_time::max() : deadline_;
}

bytes connection::take_output() { return std::exchange(out_, bytes{}); }

}  // namespace fleethub::proto::mqtt
