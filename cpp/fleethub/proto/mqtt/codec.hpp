// MQTT 3.1.1 codec: an incremental decoder (bytes in any split -> packets) and an encoder.
// Sans-I/O: no sockets, clocks or logging. Thread safety: one decoder per connection.
#pragma once
#include <cstddef>
#include <optional>
#include <string>

#include "fleethub/core/bytes.hpp"
#include "fleethub/proto/mqtt/packet.hpp"

namespace fleethub::proto::mqtt {

enum class decode_error {
  none = 0,
  malformed,                  // violates MQTT 3.1.1 (bad flags, lengths, UTF-8, reserved bits, ...)
  packet_too_large,           // remaining length above the configured limit
  unsupported_protocol,       // CONNECT with a protocol name/level other than MQTT/4 (answer CONNACK 1)
};

struct decode_status {
  decode_error error = decode_error::none;
  std::string detail;  // human-readable reason for logs
};

class decoder {
 public:
  explicit decoder(std::size_t max_packet_size = 256 * 1024 + 4096);

  // Buffers `data`. Call next() until it returns nullopt.
  void feed(bytes_view data);
  // The next complete packet, or nullopt when more bytes are needed or an error occurred (see status()).
  // Once an error is reported the decoder stays failed.
  std::optional<packet> next();
  const decode_status& status() const { return status_; }
  bool failed() const { return status_.error != decode_error::none; }
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::size_t max_packet_size_;
  bytes buf_;
  std::size_t pos_ = 0;
  decode_status status_;
};

// Appends the wire encoding of `p` to `out`.
void encode(const packet& p, bytes& out);
bytes encode(const packet& p);

// Topic helpers (MQTT 3.1.1 §4.7).
bool valid_topic_name(std::string_view topic);    // no wildcards, non-empty, no NUL
bool valid_topic_filter(std::string_view filter); // '#' last and alone in its level, '+' alone in its level
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace fleethub::proto::mqtt
