// Fuzzes the WebSocket frame decoder with client bytes. Checks, besides memory safety:
//  - consumed <= size always, and need_more consumed everything;
//  - feeding the input whole, byte by byte or in data-chosen pieces yields the same data bytes and the same
//    control events (data may come in more, smaller events when split, never different bytes);
//  - the message-size limit holds, control payloads are at most 125 bytes, errors carry 1002 or 1009;
//  - what the decoder accepted, re-encoded by ws_encode and masked as a client would, decodes to the same.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fleethub/proto/http/websocket.hpp"

using namespace fleethub;
using namespace fleethub::proto::http;

namespace {

constexpr std::size_t max_message = 4096;

void check(bool ok) {
  if (!ok) std::abort();
}

struct run_result {
  bytes data;
  std::vector<ws_decoder::event> controls;  // ping, pong, close, error
};

run_result decode_in_chunks(bytes_view in, std::size_t chunk) {
  ws_decoder d(max_message);
  run_result r;
  bool stop = false;
  for (std::size_t off = 0; off < in.size() && !stop; off += chunk) {
    bytes_view piece = in.subspan(off, std::min(chunk, in.size() - off));
    for (;;) {
      auto ev = d.feed(piece);
      check(ev.consumed <= piece.size());
      if (ev.what == ws_decoder::event::kind::need_more) {
        check(ev.consumed == piece.size());
        break;
      }
      piece = piece.subspan(ev.consumed);
      if (ev.what == ws_decoder::event::kind::data) {
        check(!ev.payload.empty());
        r.data.insert(r.data.end(), ev.payload.begin(), ev.payload.end());
        continue;
      }
      check(ev.payload.size() <= 125);
      if (ev.what == ws_decoder::event::kind::error) {
        check(ev.close_code == 1002 || ev.close_code == 1009);
        check(!ev.message.empty());
        check(d.feed(piece).what == ws_decoder::event::kind::error);  // sticky
        stop = true;
      }
      r.controls.push_back(std::move(ev));
      if (stop) break;
    }
  }
  return r;
}

bool same(const run_result& a, const run_result& b) {
  if (a.data != b.data || a.controls.size() != b.controls.size()) return false;
  for (std::size_t i = 0; i < a.controls.size(); ++i) {
    const auto &x = a.controls[i], &y = b.controls[i];
    if (x.what != y.what || x.payload != y.payload || x.close_code != y.close_code || x.message != y.message)
      return false;
  }
  return true;
}

bytes mask_frame(const bytes& f, std::array<std::uint8_t, 4> mask) {
  const std::uint8_t len7 = f[1] & 0x7f;
  const std::size_t hdr = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  bytes out(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(hdr));
  out[1] |= 0x80;
  out.insert(out.end(), mask.begin(), mask.end());
  for (std::size_t i = hdr; i < f.size(); ++i) out.push_back(f[i] ^ mask[(i - hdr) % 4]);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bytes_view in(data, size);
  const auto whole = decode_in_chunks(in, size == 0 ? 1 : size);
  check(same(whole, decode_in_chunks(in, 1)));
  check(same(whole, decode_in_chunks(in, 1 + (size > 0 ? data[size / 2] % 29 : 0))));

  // Everything delivered fits the limit per message, so re-sending it in limit-sized frames must pass.
  const std::array<std::uint8_t, 4> mask{size > 0 ? data[0] : std::uint8_t{1}, 0x5a, 0xa5, 0x3c};
  bytes wire;
  for (std::size_t off = 0; off < whole.data.size(); off += max_message) {
    const std::size_t n = std::min(max_message, whole.data.size() - off);
    const bytes f = mask_frame(ws_encode(ws_opcode::binary, bytes_view(whole.data).subspan(off, n)), mask);
    wire.insert(wire.end(), f.begin(), f.end());
  }
  for (const auto& ev : whole.controls) {
    if (ev.what == ws_decoder::event::kind::ping || ev.what == ws_decoder::event::kind::pong) {
      const auto op = ev.what == ws_decoder::event::kind::ping ? ws_opcode::ping : ws_opcode::pong;
      const bytes f = mask_frame(ws_encode(op, ev.payload), mask);
      wire.insert(wire.end(), f.begin(), f.end());
    }
  }
  const auto again = decode_in_chunks(wire, wire.empty() ? 1 : wire.size());
  check(again.data == whole.data);
  for (const auto& ev : again.controls) check(ev.what != ws_decoder::event::kind::error);

  if (whole.controls.empty() || whole.controls.back().what != ws_decoder::event::kind::close) return 0;
  const auto& close = whole.controls.back();
  const auto echoed = decode_in_chunks(mask_frame(ws_close_frame(close.close_code, close.message), mask), 200);
  check(echoed.controls.size() == 1 && echoed.controls[0].close_code == close.close_code);
  return 0;
}
