// WebSocket (RFC 6455) server side, Sans-I/O: the handshake answer and the frame codec. MQTT over
// WebSockets (/$iothub/websocket, subprotocol "mqtt") carries the MQTT byte stream in binary frames; the
// decoder unmasks client frames, reassembles fragments, and reports control frames so the driver can
// answer pings and closes.
// Thread safety: none; one decoder per connection.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/proto/http/message.hpp"

namespace fleethub::proto::http {

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) (the RFC 6455 §1.3 GUID).
std::string websocket_accept_key(std::string_view client_key);

// Checks an upgrade request (GET, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version: 13, a
// 16-byte base64 Sec-WebSocket-Key) and that `subprotocol` is among Sec-WebSocket-Protocol's values.
// Returns the 101 Switching Protocols response to send (with Sec-WebSocket-Accept and the subprotocol).
// Errors: invalid_argument naming what is missing (answer 400), or for a missing subprotocol (answer 400).
result<response> websocket_handshake(const request& req, std::string_view subprotocol);

enum class ws_opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

class ws_decoder {
 public:
  explicit ws_decoder(std::size_t max_message_bytes = 1024 * 1024) : max_(max_message_bytes) {}

  struct event {
    enum class kind {
      need_more,  // all input consumed
      data,       // `payload` holds application bytes (binary or text message content, unmasked). MQTT is
                  // a byte stream, so payload is passed on as it arrives: one event per frame per feed, a
                  // large frame split over feeds comes as several events, nothing is reassembled
                  // (empty data frames produce no event)
      ping,       // answer with a pong carrying `payload`
      pong,       // ignore
      close,      // peer closes: answer with a close frame and shut down; `close_code` (1005 when absent)
      error,      // protocol violation (unmasked client frame, bad opcode, oversized, bad control frame):
                  // send close with `close_code` (1002 or 1009) and shut down
    } what = kind::need_more;
    std::size_t consumed = 0;
    bytes payload;
    std::uint16_t close_code = 0;
    std::string message;
  };

  // Consumes bytes from `data` up to the end of one frame and reports it. Call again with the rest.
  event feed(bytes_view data);

 private:
  event fail(std::uint16_t code, std::string message, std::size_t consumed);
  event finish_control(std::size_t consumed);

  std::size_t max_;
  std::array<std::uint8_t, 14> head_{};  // partial frame header (2 + 8 length + 4 mask bytes at most)
  std::size_t head_len_ = 0;
  std::uint64_t remaining_ = 0;  // payload bytes of the current frame still to come
  std::array<std::uint8_t, 4> mask_{};
  std::size_t mask_off_ = 0;
  ws_opcode op_ = ws_opcode::continuation;
  bool in_frame_ = false;
  bool fragmented_ = false;          // inside a fragmented data message
  std::uint64_t message_bytes_ = 0;  // data bytes of the current message so far (for the size limit)
  bytes control_;                    // payload of a control frame being read (125 bytes at most)
  bool closed_ = false;              // a close frame was reported: later bytes are ignored
  bool failed_ = false;              // an error was reported: every later feed repeats it
  std::uint16_t fail_code_ = 0;
  std::string fail_message_;
};

// One unmasked (server) frame with FIN set.
bytes ws_encode(ws_opcode op, bytes_view payload);
void ws_encode_to(bytes& out, ws_opcode op, bytes_view payload);
// A close frame with a status code and optional reason.
bytes ws_close_frame(std::uint16_t code, std::string_view reason = {});

}  // namespace fleethub::proto::http
