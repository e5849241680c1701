// Persistent MQTT session state (CleanSession=0): subscriptions and unacknowledged outbound QoS 1 messages,
// and the link to the live connection when there is one. The engine owns these; records here are the
// store encoding. Thread safety: guarded by the engine's mutex.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/proto/mqtt/packet.hpp"

namespace fleethub::hub {

// A message on its way to a client.
struct outbound_message {
  std::string topic;
  bytes payload;
  std::uint8_t qos = 0;
  std::uint16_t packet_id = 0;  // QoS 1 only
  bool dup = false;
};

// Implemented by net/ for each live connection, so the hub can reach it from any thread.
class connection_link {
 public:
  virtual ~connection_link() = default;
  // Closes the connection (takeover, identity disabled or deleted, token expiry). Thread-safe.
  virtual void kick(std::string reason) = 0;
  // Sends a PUBLISH to the client. Thread-safe (posts to the connection's own thread).
  virtual void deliver(outbound_message m) = 0;
};

struct session_state {
  std::string client_id;
  std::string device_id;
  std::string module_id;
  bool persistent = false;
  std::vector<proto::mqtt::subscription> subscriptions;
  // QoS 1 messages sent (or to send) and not yet acknowledged, by store sequence.
  std::map<std::uint64_t, outbound_message> inflight;
  std::uint16_t next_packet_id = 1;
  std::uint64_t next_seq = 0;
  // Flow control: seqs below delivered_end were handed to a connection at least once; seqs below durable_end
  // are stored (persistent sessions deliver nothing before it is durable). Not persisted.
  std::uint64_t delivered_end = 0;
  std::uint64_t durable_end = 0;
  std::shared_ptr<connection_link> link;  // null while the client is offline
  // Cloud-to-device messages handed to the live connection and not yet acknowledged: packet id -> (queue
  // sequence, lock token). Not persisted: the C2D queue is the durable copy, and a closed connection's
  // locks are released so the messages are delivered again on the next connection.
  std::map<std::uint16_t, std::pair<std::uint64_t, std::string>> c2d_inflight;
};

bytes encode_session(const session_state& s);
result<session_state> decode_session(bytes_view b);
bytes encode_outbound(const outbound_message& m);
result<outbound_message> decode_outbound(bytes_view b);
// Key of one queued outbound message: client id, NUL, 8-byte big-endian sequence (ordered per client).
std::string outbound_key(std::string_view client_id, std::uint64_t seq);
std::string outbound_prefix(std::string_view client_id);

}  // namespace fleethub::hub
