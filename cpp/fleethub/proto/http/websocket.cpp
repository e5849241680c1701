// RFC 6455 server side: the opening-handshake answer and an incremental frame codec. The decoder keeps only
// a frame header (14 bytes) and a control payload (125 bytes); data payload is unmasked straight from the
// caller's buffer and handed on as it arrives, so memory does not grow with the message size.
#include "fleethub/proto/http/websocket.hpp"

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"

namespace fleethub::proto::http {
namespace {

constexpr std::string_view ws_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 §1.3

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each comma-separated token of every header `name`; stops when f returns true.
template <class F>
bool any_token(const request& req, std::string_view name, F&& f) {
  for (const auto& h : req.headers) {
    if (!iequals(h.name, name)) continue;
    std::string_view v = h.value;
    for (;;) {
      const std::size_t comma = v.find(',');
      const std::string_view item = trim(v.substr(0, comma));
      if (!item.empty() && f(item)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool is_control(ws_opcode op) { return static_cast<std::uint8_t>(op) >= 8; }

// Close codes a peer may send (RFC 6455 §7.4, IANA registry): 1004-1006 and 1015 are reserved or local.
bool valid_close_code(std::uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

}  // namespace

std::string websocket_accept_key(std::string_view client_key) {
  std::string s(client_key);
  s += ws_guid;
  const auto digest = sha1(as_bytes(s));
  return base64_encode(bytes_view(digest.data(), digest.size()));
}

result<response> websocket_handshake(const request& req, std::string_view subprotocol) {
  auto bad = [](std::string m) {
    return make_error(errc::invalid_argument, "WebSocket handshake: " + std::move(m));
  };
  if (req.method != "GET") return bad("the upgrade request must be a GET, not " + req.method.substr(0, 16));
  if (req.version < 11) return bad("the upgrade request must be HTTP/1.1");
  if (!any_token(req, "Upgrade", [](std::string_view t) { return iequals(t, "websocket"); }))
    return bad("missing \"Upgrade: websocket\"");
  if (!any_token(req, "Connection", [](std::string_view t) { return iequals(t, "upgrade"); }))
    return bad("missing \"Connection: Upgrade\"");

  const std::string* version = req.find("Sec-WebSocket-Version");
  if (version == nullptr) return bad("missing Sec-WebSocket-Version (this server speaks 13)");
  if (trim(*version) != "13")
    return bad("unsupported Sec-WebSocket-Version \"" + version->substr(0, 16) +
               "\" (only 13): answer 426 with \"Sec-WebSocket-Version: 13\"");

  const std::string* key = req.find("Sec-WebSocket-Key");
  if (key == nullptr) return bad("missing Sec-WebSocket-Key");
  const std::string_view k = trim(*key);
  const auto nonce = base64_decode(k);
  if (!nonce || nonce->size() != 16) return bad("Sec-WebSocket-Key is not a base64-encoded 16-byte nonce");

  // Echo the client's own spelling: the C SDK offers "MQTT", paho "mqtt", and a client may compare exactly.
  std::string chosen;
  any_token(req, "Sec-WebSocket-Protocol", [&](std::string_view t) {
    if (!iequals(t, subprotocol)) return false;
    chosen.assign(t);
    return true;
  });
  if (chosen.empty())
    return bad("the client does not offer subprotocol \"" + std::string(subprotocol) +
               "\" in Sec-WebSocket-Protocol");

  response r;
  r.status = 101;
  r.headers.push_back({"Upgrade", "websocket"});
  r.headers.push_back({"Connection", "Upgrade"});  // paho rejects any Connection line without "upgrade"
  r.headers.push_back({"Sec-WebSocket-Accept", websocket_accept_key(k)});
  r.headers.push_back({"Sec-WebSocket-Protocol", std::move(chosen)});
  return r;
}

ws_decoder::event ws_decoder::fail(std::uint16_t code, std::string message, std::size_t consumed) {
  failed_ = true;
  fail_code_ = code;
  fail_message_ = std::move(message);
  event ev;
  ev.what = event::kind::error;
  ev.consumed = consumed;
  ev.close_code = code;
  ev.message = fail_message_;
  return ev;
}

ws_decoder::event ws_decoder::finish_control(std::size_t consumed) {
  event ev;
  ev.consumed = consumed;
  switch (op_) {
    case ws_opcode::ping:
      ev.what = event::kind::ping;
      ev.payload = std::move(control_);
      break;
    case ws_opcode::pong:
      ev.what = event::kind::pong;
      ev.payload = std::move(control_);
      break;
    default: {  // close
      if (control_.size() == 1) return fail(1002, "close frame with a 1-byte payload", consumed);
      ev.what = event::kind::close;
      ev.close_code = 1005;  // "no status received"
      if (control_.size() >= 2) {
        ev.close_code = static_cast<std::uint16_t>(control_[0] << 8 | control_[1]);
        if (!valid_close_code(ev.close_code))
          return fail(1002, "close code " + std::to_string(ev.close_code) + " may not be sent", consumed);
        ev.message.assign(control_.begin() + 2, control_.end());
      }
      ev.payload = std::move(control_);
      closed_ = true;
      break;
    }
  }
  control_.clear();
  return ev;
}

ws_decoder::event ws_decoder::feed(bytes_view data) {
  if (failed_) {
    event ev;
    ev.what = event::kind::error;
    ev.close_code = fail_code_;
    ev.message = fail_message_;
    return ev;
  }
  event ev;
  if (closed_) {  // RFC 6455 §5.5.1: nothing follows a close; ignore it
    ev.consumed = data.size();
    return ev;
  }
  std::size_t i = 0;
  for (;;) {
    if (!in_frame_) {
      // Frame header: 2 bytes, then 0/2/8 length bytes, then the 4-byte mask (mandatory from clients).
      while (head_len_ < 2 && i < data.size()) head_[head_len_++] = data[i++];
      if (head_len_ < 2) break;
      const std::uint8_t b0 = head_[0], b1 = head_[1];
      const bool fin = (b0 & 0x80) != 0;
      const auto op = static_cast<ws_opcode>(b0 & 0x0f);
      if ((b0 & 0x70) != 0) return fail(1002, "RSV bits set without a negotiated extension", i);
      switch (op) {
        case ws_opcode::continuation:
        case ws_opcode::text:
        case ws_opcode::binary:
        case ws_opcode::close:
        case ws_opcode::ping:
        case ws_opcode::pong:
          break;
        default:
          return fail(1002, "unknown opcode " + std::to_string(b0 & 0x0f), i);
      }
      if ((b1 & 0x80) == 0) return fail(1002, "client frame is not masked", i);
      const std::uint8_t len7 = b1 & 0x7f;
      if (is_control(op)) {
        if (!fin) return fail(1002, "fragmented control frame", i);
        if (len7 > 125) return fail(1002, "control frame payload longer than 125 bytes", i);
      } else if (op == ws_opcode::continuation && !fragmented_) {
        return fail(1002, "continuation frame without a message to continue", i);
      } else if (op != ws_opcode::continuation && fragmented_) {
        return fail(1002, "new data message before the fragmented one finished", i);
      }
      const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
      const std::size_t need = 2 + ext + 4;
      while (head_len_ < need && i < data.size()) head_[head_len_++] = data[i++];
      if (head_len_ < need) break;

      std::uint64_t len = len7;
      if (ext != 0) {
        len = 0;
        for (std::size_t k = 0; k < ext; ++k) len = len << 8 | head_[2 + k];
        // RFC 6455 §5.2: the minimal encoding must be used, and the 64-bit form has its top bit clear.
        if ((ext == 2 && len < 126) || (ext == 8 && len <= 0xffff))
          return fail(1002, "non-minimal payload length", i);
        if (len >> 63) return fail(1002, "payload length has the most significant bit set", i);
      }
      if (!is_control(op)) {
        const std::uint64_t before = op == ws_opcode::continuation ? message_bytes_ : 0;
        if (len > max_ - before)  // before <= max_ always holds
          return fail(1009, "message larger than " + std::to_string(max_) + " bytes", i);
        message_bytes_ = before + len;
        fragmented_ = !fin;
      } else {
        control_.clear();  // control frames may come between the fragments of a data message
      }
      op_ = op;
      for (std::size_t k = 0; k < 4; ++k) mask_[k] = head_[2 + ext + k];
      mask_off_ = 0;
      remaining_ = len;
      head_len_ = 0;
      in_frame_ = true;
    }

    // Payload.
    const std::size_t avail = data.size() - i;
    const std::size_t take = remaining_ < avail ? static_cast<std::size_t>(remaining_) : avail;
    if (is_control(op_)) {
      for (std::size_t k = 0; k < take; ++k) control_.push_back(data[i + k] ^ mask_[(mask_off_ + k) & 3]);
      mask_off_ = (mask_off_ + take) & 3;
      i += take;
      remaining_ -= take;
      if (remaining_ != 0) break;
      in_frame_ = false;
      return finish_control(i);
    }
    if (take > 0) {
      ev.payload.resize(take);
      for (std::size_t k = 0; k < take; ++k) ev.payload[k] = data[i + k] ^ mask_[(mask_off_ + k) & 3];
      mask_off_ = (mask_off_ + take) & 3;
      i += take;
      remaining_ -= take;
      if (remaining_ == 0) in_frame_ = false;
      ev.what = event::kind::data;
      ev.consumed = i;
      return ev;
    }
    if (remaining_ != 0) break;  // no input left
    in_frame_ = false;           // an empty data frame: nothing to report, go on with the next frame
  }
  ev.what = event::kind::need_more;
  ev.consumed = data.size();
  return ev;
}

void ws_encode_to(bytes& out, ws_opcode op, bytes_view payload) {
  if (is_control(op) && payload.size() > 125)
    throw std::invalid_argument("ws_encode: a control frame carries at most 125 bytes");
  const std::size_t n = payload.size();  // no exact reserve here: callers append many frames to one buffer
  out.push_back(static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op)));
  if (n < 126) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else if (n <= 0xffff) {
    out.push_back(126);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(n) >> shift));
  }
  out.insert(out.end(), payload.begin(), payload.end());
}

bytes ws_encode(ws_opcode op, bytes_view payload) {
  bytes out;
  ws_encode_to(out, op, payload);
  return out;
}

bytes ws_close_frame(std::uint16_t code, std::string_view reason) {
  // 1005 ("no status") may not be sent: answer a code-less close with a code-less close.
  if (code == 1005) return ws_encode(ws_opcode::close, {});
  // 125 bytes of payload at most, 2 of them the code; cut the reason on a UTF-8 character boundary.
  if (reason.size() > 123) {
    std::size_t cut = 123;
    while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) --cut;
    reason = reason.substr(0, cut);
  }
  bytes payload;
  payload.reserve(2 + reason.size());
  payload.push_back(static_cast<std::uint8_t>(code >> 8));
  payload.push_back(static_cast<std::uint8_t>(code));
  payload.insert(payload.end(), reason.begin(), reason.end());
  return ws_encode(ws_opcode::close, payload);
}

}  // namespace fleethub::proto::http
