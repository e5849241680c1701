// Fuzzes the MQTT decoder and the server connection machine. Checks, besides memory safety:
//  - decode(encode(p)) == p for every packet the decoder accepts;
//  - feeding the input whole or in pieces yields the same packets and the same final status;
//  - the connection machine never emits events after a close_event.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <variant>
#include <vector>

#include "fleethub/proto/mqtt/codec.hpp"
#include "fleethub/proto/mqtt/connection.hpp"

using namespace fleethub;
using namespace fleethub::proto::mqtt;

namespace {

constexpr std::size_t max_size = 64 * 1024;

struct run_result {
  std::vector<packet> packets;
  decode_error error;
};

run_result decode_in_chunks(bytes_view data, std::size_t chunk) {
  decoder d(max_size);
  run_result r;
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    d.feed(data.subspan(off, std::min(chunk, data.size() - off)));
    while (auto p = d.next()) r.packets.push_back(std::move(*p));
  }
  d.feed({});
  while (auto p = d.next()) r.packets.push_back(std::move(*p));
  r.error = d.status().error;
  return r;
}

void check(bool ok) {
  if (!ok) std::abort();
}

void drive_connection(bytes_view data) {
  connection_limits limits;
  limits.max_packet_size = max_size;
  limits.max_inbound_inflight = 4;
  limits.max_subscriptions_per_packet = 4;
  const auto t0 = steady_time(std::chrono::hours(1));
  connection c(limits, t0);
  bool closed = false;
  auto now = t0;
  const std::size_t chunk = data.empty() ? 1 : 1 + data[0] % 17;
  for (std::size_t off = 0; off <= data.size(); off += chunk) {
    auto piece = data.subspan(std::min(off, data.size()), std::min(chunk, data.size() - std::min(off, data.size())));
    now += std::chrono::seconds(1);
    for (int round = 0; round < 2; ++round) {  // second round drains bytes buffered while authenticating
      auto evs = c.feed(round == 0 ? piece : bytes_view{}, now);
      check(!closed || evs.empty());
      for (std::size_t i = 0; i < evs.size(); ++i) {
        const auto& e = evs[i];
        if (std::holds_alternative<close_event>(e)) {
          check(i + 1 == evs.size());
          closed = true;
        } else if (std::holds_alternative<connect_event>(e)) {
          c.accept(data.size() % 2 == 0, now);
        } else if (auto* p = std::get_if<publish_event>(&e)) {
          if (p->packet.qos == 1) c.acknowledge(p->packet.packet_id);
          c.publish(p->packet.topic, p->packet.payload, p->packet.qos, p->packet.packet_id, p->packet.dup);
        } else if (auto* s = std::get_if<subscribe_event>(&e)) {
          c.grant(s->packet.packet_id, std::vector<std::uint8_t>(s->packet.subscriptions.size(), 1));
        }
      }
    }
    (void)c.take_output();
  }
  if (auto e = c.tick(now + std::chrono::hours(1))) check(!closed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bytes_view in(data, size);
  const auto whole = decode_in_chunks(in, size == 0 ? 1 : size);
  const auto split = decode_in_chunks(in, 1 + (size > 0 ? data[size / 2] % 13 : 0));
  check(whole.packets == split.packets && whole.error == split.error);

  for (const auto& p : whole.packets) {
    const bytes wire = encode(p);
    decoder d(max_size);
    d.feed(wire);
    auto again = d.next();
    check(again.has_value() && *again == p && !d.next().has_value() && d.buffered() == 0);
  }

  drive_connection(in);
  return 0;
}
