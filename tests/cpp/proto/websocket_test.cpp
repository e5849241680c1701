// WebSocket server side: accept key, handshake checks, client-frame decoding (split at every point,
// fragmentation, control frames, every protocol error) and server-frame encoding.
#include "fleethub/proto/http/websocket.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fleethub/proto/http/request_parser.hpp"

namespace fleethub::proto::http {
namespace {

using kind = ws_decoder::event::kind;

constexpr std::array<std::uint8_t, 4> test_mask{0x37, 0xfa, 0x21, 0x3d};

// A client frame: `b0` is the first byte as sent (FIN, RSV, opcode); the length uses the minimal form
// unless `len_form` forces 126 or 127.
bytes client_frame(std::uint8_t b0, bytes_view payload, bool masked = true, int len_form = 0,
                   std::array<std::uint8_t, 4> mask = test_mask) {
  bytes out{b0};
  const std::uint8_t m = masked ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  const int form = len_form != 0 ? len_form : n < 126 ? 0 : n <= 0xffff ? 126 : 127;
  if (form == 0) {
    out.push_back(static_cast<std::uint8_t>(m | n));
  } else if (form == 126) {
    out.push_back(m | 126);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(m | 127);
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(n >> s));
  }
  if (masked) out.insert(out.end(), mask.begin(), mask.end());
  for (std::size_t i = 0; i < payload.size(); ++i) out.push_back(masked ? payload[i] ^ mask[i % 4] : payload[i]);
  return out;
}
bytes client_frame(std::uint8_t b0, std::string_view payload) { return client_frame(b0, as_bytes(payload)); }

// Turns a server frame (unmasked) into the same frame masked, as a client would send it: lets the
// decoder check the encoder.
bytes mask_server_frame(const bytes& f) {
  EXPECT_GE(f.size(), 2u);
  const std::uint8_t len7 = f[1] & 0x7f;
  const std::size_t hdr = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  bytes out(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(hdr));
  out[1] |= 0x80;
  out.insert(out.end(), test_mask.begin(), test_mask.end());
  for (std::size_t i = hdr; i < f.size(); ++i) out.push_back(f[i] ^ test_mask[(i - hdr) % 4]);
  return out;
}

bytes cat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

struct collected {
  bytes data;
  std::vector<ws_decoder::event> events;  // everything but data and need_more
  std::size_t data_events = 0;
  bool stopped = false;                   // error seen
};

// Feeds like the driver: call again with the rest until need_more; stop at an error.
void drive(ws_decoder& d, bytes_view in, collected& c) {
  for (;;) {
    const auto ev = d.feed(in);
    EXPECT_LE(ev.consumed, in.size());
    if (ev.what == kind::need_more) {
      EXPECT_EQ(ev.consumed, in.size());
      return;
    }
    in = in.subspan(ev.consumed);
    if (ev.what == kind::data) {
      EXPECT_FALSE(ev.payload.empty());
      c.data.insert(c.data.end(), ev.payload.begin(), ev.payload.end());
      ++c.data_events;
      continue;
    }
    c.events.push_back(ev);
    if (ev.what == kind::error) {
      c.stopped = true;
      return;
    }
  }
}

collected decode_split(const bytes& wire, const std::vector<std::size_t>& cuts, std::size_t max = 1024 * 1024) {
  ws_decoder d(max);
  collected c;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    drive(d, bytes_view(wire).subspan(from, cut - from), c);
    if (c.stopped) return c;
    from = cut;
  }
  drive(d, bytes_view(wire).subspan(from), c);
  return c;
}
collected decode_whole(const bytes& wire, std::size_t max = 1024 * 1024) { return decode_split(wire, {}, max); }

void expect_same_events(const collected& a, const collected& b) {
  EXPECT_EQ(a.data, b.data);
  ASSERT_EQ(a.events.size(), b.events.size());
  for (std::size_t i = 0; i < a.events.size(); ++i) {
    EXPECT_EQ(a.events[i].what, b.events[i].what);
    EXPECT_EQ(a.events[i].payload, b.events[i].payload);
    EXPECT_EQ(a.events[i].close_code, b.events[i].close_code);
    EXPECT_EQ(a.events[i].message, b.events[i].message);
  }
}

void expect_every_split(const bytes& wire) {
  const auto whole = decode_whole(wire);
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) expect_same_events(decode_split(wire, {cut}), whole);
  std::vector<std::size_t> all;
  for (std::size_t i = 1; i < wire.size(); ++i) all.push_back(i);
  expect_same_events(decode_split(wire, all), whole);
}

// Expects a protocol error with `code`; also when the bytes come one at a time.
void expect_error(const bytes& wire, std::uint16_t code, std::size_t max = 1024 * 1024) {
  for (const auto& c : {decode_whole(wire, max), decode_split(wire, [&] {
                          std::vector<std::size_t> v;
                          for (std::size_t i = 1; i < wire.size(); ++i) v.push_back(i);
                          return v;
                        }(), max)}) {
    ASSERT_FALSE(c.events.empty());
    EXPECT_EQ(c.events.back().what, kind::error);
    EXPECT_EQ(c.events.back().close_code, code) << c.events.back().message;
    EXPECT_FALSE(c.events.back().message.empty());
  }
}

bytes code_bytes(std::uint16_t code) {
  return {static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)};
}

bytes pattern(std::size_t n) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
  return b;
}

request upgrade_request() {
  request r;
  r.method = "GET";
  r.target = "/$iothub/websocket";
  r.version = 11;
  r.headers = {{"Host", "hub.local:443"},
               {"Upgrade", "websocket"},
               {"Connection", "Upgrade"},
               {"Origin", "https://hub.local:443"},
               {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
               {"Sec-Websocket-Version", "13"},
               {"Sec-Websocket-Protocol", "mqtt"}};
  return r;
}

void set_header(request& r, std::string_view name, std::string value) {
  for (auto& h : r.headers)
    if (iequals(h.name, name)) h.value = std::move(value);
}
void drop_header(request& r, std::string_view name) {
  std::erase_if(r.headers, [&](const header& h) { return iequals(h.name, name); });
}

// ---- handshake ----

TEST(WebSocket, AcceptKeyKnownAnswer) {
  EXPECT_EQ(websocket_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");  // RFC 6455 §1.3
  EXPECT_EQ(websocket_accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");  // §4.2.2
}

TEST(WebSocket, HandshakePaho) {
  auto r = websocket_handshake(upgrade_request(), "mqtt");
  ASSERT_TRUE(r.ok()) << r.err().message;
  EXPECT_EQ(r->status, 101);
  EXPECT_EQ(*r->find("Upgrade"), "websocket");
  EXPECT_EQ(*r->find("Connection"), "Upgrade");
  EXPECT_EQ(*r->find("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(*r->find("Sec-WebSocket-Protocol"), "mqtt");
  EXPECT_EQ(serialize(*r, true),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n"
            "\r\n");
}

TEST(WebSocket, HandshakeFromParsedRequest) {
  const std::string wire =
      "GET /$iothub/websocket HTTP/1.1\r\nHost: hub.local:443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-Websocket-Version: 13\r\n"
      "Sec-Websocket-Protocol: mqtt\r\n\r\n";
  request_parser p;
  ASSERT_EQ(p.feed(as_bytes(wire)).what, request_parser::outcome::kind::complete);
  const request req = p.take();
  ASSERT_TRUE(req.is_websocket_upgrade());
  EXPECT_TRUE(websocket_handshake(req, "mqtt").ok());
}

TEST(WebSocket, HandshakeSubprotocolMatching) {
  request req = upgrade_request();
  set_header(req, "Sec-WebSocket-Protocol", "MQTT");  // the C SDK
  auto r = websocket_handshake(req, "mqtt");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->find("Sec-WebSocket-Protocol"), "MQTT") << "echo the client's spelling";
  set_header(req, "Sec-WebSocket-Protocol", "chat,  superchat ,\tmqtt ");
  r = websocket_handshake(req, "mqtt");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->find("Sec-WebSocket-Protocol"), "mqtt");
  set_header(req, "Sec-WebSocket-Protocol", "chat");
  req.headers.push_back({"sec-websocket-protocol", "AMQPWSB10, mqtt"});  // the list may span headers
  EXPECT_TRUE(websocket_handshake(req, "mqtt").ok());
  EXPECT_EQ(*websocket_handshake(req, "amqpwsb10")->find("Sec-WebSocket-Protocol"), "AMQPWSB10");
  // Connection may list other tokens; the key may have surrounding spaces.
  req = upgrade_request();
  set_header(req, "Connection", "keep-alive, Upgrade");
  set_header(req, "Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== ");
  r = websocket_handshake(req, "mqtt");
  ASSERT_TRUE(r.ok()) << r.err().message;
  EXPECT_EQ(*r->find("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocket, HandshakeFailures) {
  auto expect_fail = [](const request& req, std::string_view needle) {
    auto r = websocket_handshake(req, "mqtt");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.err().code, errc::invalid_argument);
    EXPECT_NE(r.err().message.find(needle), std::string::npos) << r.err().message;
  };
  request req = upgrade_request();
  req.method = "POST";
  expect_fail(req, "GET");
  req = upgrade_request();
  req.version = 10;
  expect_fail(req, "HTTP/1.1");
  req = upgrade_request();
  drop_header(req, "Upgrade");
  expect_fail(req, "Upgrade: websocket");
  req = upgrade_request();
  set_header(req, "Upgrade", "h2c");
  expect_fail(req, "Upgrade: websocket");
  req = upgrade_request();
  set_header(req, "Connection", "keep-alive");
  expect_fail(req, "Connection: Upgrade");
  req = upgrade_request();
  drop_header(req, "Sec-WebSocket-Version");
  expect_fail(req, "Sec-WebSocket-Version");
  req = upgrade_request();
  set_header(req, "Sec-WebSocket-Version", "8");
  expect_fail(req, "426");
  req = upgrade_request();
  drop_header(req, "Sec-WebSocket-Key");
  expect_fail(req, "missing Sec-WebSocket-Key");
  req = upgrade_request();
  set_header(req, "Sec-WebSocket-Key", "not base64!");
  expect_fail(req, "16-byte");
  req = upgrade_request();
  set_header(req, "Sec-WebSocket-Key", "c2hvcnQ=");  // "short"
  expect_fail(req, "16-byte");
  req = upgrade_request();
  drop_header(req, "Sec-WebSocket-Protocol");
  expect_fail(req, "subprotocol");
  req = upgrade_request();
  set_header(req, "Sec-WebSocket-Protocol", "mqttv3.1, mqtt5");
  expect_fail(req, "subprotocol");
}

// ---- decoding ----

TEST(WebSocket, SmallBinaryEverySplit) {
  const bytes wire = client_frame(0x82, "hello");
  const auto c = decode_whole(wire);
  EXPECT_EQ(c.data, to_bytes("hello"));
  EXPECT_TRUE(c.events.empty());
  expect_every_split(wire);
}

TEST(WebSocket, OneEventPerFrame) {
  const bytes wire = cat({client_frame(0x82, "ab"), client_frame(0x82, "cd")});
  ws_decoder d;
  auto ev = d.feed(wire);
  ASSERT_EQ(ev.what, kind::data);
  EXPECT_EQ(ev.payload, to_bytes("ab"));
  EXPECT_EQ(ev.consumed, 8u);
  ev = d.feed(bytes_view(wire).subspan(8));
  ASSERT_EQ(ev.what, kind::data);
  EXPECT_EQ(ev.payload, to_bytes("cd"));
  EXPECT_EQ(ev.consumed, 8u);
  EXPECT_EQ(d.feed({}).what, kind::need_more);
}

TEST(WebSocket, TextFrameIsBytes) {
  EXPECT_EQ(decode_whole(client_frame(0x81, "caf\xc3\xa9")).data, to_bytes("caf\xc3\xa9"));
}

TEST(WebSocket, Length16EverySplit) {
  const bytes payload = pattern(300);
  const bytes wire = client_frame(0x82, payload);
  ASSERT_EQ(wire[1] & 0x7f, 126);
  EXPECT_EQ(decode_whole(wire).data, payload);
  expect_every_split(wire);
  const bytes edge = pattern(126);
  EXPECT_EQ(decode_whole(client_frame(0x82, edge)).data, edge);
  const bytes top = pattern(65535);
  EXPECT_EQ(decode_whole(client_frame(0x82, top)).data, top);
}

TEST(WebSocket, Length64) {
  const bytes payload = pattern(65536);
  const bytes wire = client_frame(0x82, payload);
  ASSERT_EQ(wire[1] & 0x7f, 127);
  const auto whole = decode_whole(wire);
  EXPECT_EQ(whole.data, payload);
  EXPECT_EQ(whole.data_events, 1u);
  // In uneven pieces: payload arrives in several data events (no reassembly), same bytes.
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < wire.size(); i += 999) cuts.push_back(i);
  for (std::size_t i : {2u, 3u, 9u, 10u, 13u, 14u, 15u}) cuts.push_back(i);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  const auto split = decode_split(wire, cuts);
  EXPECT_EQ(split.data, payload);
  EXPECT_GT(split.data_events, 60u);
}

TEST(WebSocket, Fragmentation) {
  const bytes wire = cat({client_frame(0x02, "abc"),          // binary, not final
                          client_frame(0x89, "p1"),           // ping in the middle
                          client_frame(0x00, "def"),          // continuation
                          client_frame(0x00, ""),             // empty continuation
                          client_frame(0x80, "gh"),           // final continuation
                          client_frame(0x81, "next")});       // a new message
  const auto c = decode_whole(wire);
  EXPECT_EQ(c.data, to_bytes("abcdefghnext"));
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].what, kind::ping);
  EXPECT_EQ(c.events[0].payload, to_bytes("p1"));
  expect_every_split(wire);
}

TEST(WebSocket, EmptyDataFrameProducesNoEvent) {
  ws_decoder d;
  const bytes wire = cat({client_frame(0x82, ""), client_frame(0x82, "x")});
  const auto ev = d.feed(wire);
  ASSERT_EQ(ev.what, kind::data);
  EXPECT_EQ(ev.payload, to_bytes("x"));
  EXPECT_EQ(ev.consumed, wire.size());
  EXPECT_EQ(decode_whole(client_frame(0x82, "")).data_events, 0u);
}

TEST(WebSocket, PingPong) {
  const auto c = decode_whole(
      cat({client_frame(0x89, "are you there"), client_frame(0x8a, "pong!"), client_frame(0x89, "")}));
  ASSERT_EQ(c.events.size(), 3u);
  EXPECT_EQ(c.events[0].what, kind::ping);
  EXPECT_EQ(c.events[0].payload, to_bytes("are you there"));
  EXPECT_EQ(c.events[1].what, kind::pong);
  EXPECT_EQ(c.events[2].what, kind::ping);
  EXPECT_TRUE(c.events[2].payload.empty());
  const bytes max_ping = pattern(125);
  EXPECT_EQ(decode_whole(client_frame(0x89, max_ping)).events.at(0).payload, max_ping);
  expect_every_split(client_frame(0x89, max_ping));
}

TEST(WebSocket, Close) {
  const bytes with_code = client_frame(0x88, bytes{0x03, 0xe8, 'b', 'y', 'e'});
  auto c = decode_whole(with_code);
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].what, kind::close);
  EXPECT_EQ(c.events[0].close_code, 1000);
  EXPECT_EQ(c.events[0].message, "bye");
  expect_every_split(with_code);

  c = decode_whole(client_frame(0x88, ""));
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].what, kind::close);
  EXPECT_EQ(c.events[0].close_code, 1005);

  for (std::uint16_t code : {1001, 1011, 3000, 4999}) {
    c = decode_whole(client_frame(0x88, code_bytes(code)));
    EXPECT_EQ(c.events.at(0).close_code, code);
  }

  // Nothing after a close is interpreted.
  ws_decoder d;
  const bytes after = cat({client_frame(0x88, ""), bytes{0xff, 0xff, 0xff}});
  const auto ev = d.feed(after);
  EXPECT_EQ(ev.what, kind::close);
  const auto rest = d.feed(bytes_view(after).subspan(ev.consumed));
  EXPECT_EQ(rest.what, kind::need_more);
  EXPECT_EQ(rest.consumed, 3u);
}

TEST(WebSocket, ProtocolErrors) {
  expect_error(client_frame(0x82, as_bytes("x"), /*masked=*/false), 1002);       // unmasked client frame
  expect_error(client_frame(0xc2, "x"), 1002);                                   // RSV1
  expect_error(client_frame(0xa2, "x"), 1002);                                   // RSV2
  expect_error(client_frame(0x92, "x"), 1002);                                   // RSV3
  for (std::uint8_t op : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15})
    expect_error(client_frame(static_cast<std::uint8_t>(0x80 | op), "x"), 1002);  // unknown opcode
  expect_error(client_frame(0x09, "x"), 1002);                                   // fragmented ping
  expect_error(client_frame(0x08, ""), 1002);                                    // fragmented close
  expect_error(client_frame(0x89, pattern(126)), 1002);                          // control frame > 125
  expect_error(client_frame(0x80, "x"), 1002);                                   // continuation, no message
  expect_error(client_frame(0x00, "x"), 1002);
  expect_error(cat({client_frame(0x02, "a"), client_frame(0x82, "b")}), 1002);   // new message mid-fragments
  expect_error(cat({client_frame(0x01, "a"), client_frame(0x01, "b")}), 1002);
  expect_error(client_frame(0x88, bytes{0x03}), 1002);                           // 1-byte close payload
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 2999, 5000})        // codes that may not be sent
    expect_error(client_frame(0x88, code_bytes(code)), 1002);
  expect_error(client_frame(0x82, as_bytes("x"), true, 126), 1002);             // non-minimal 16-bit length
  expect_error(client_frame(0x82, pattern(200), true, 127), 1002);              // non-minimal 64-bit length
  bytes huge{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};                 // 64-bit length with MSB set
  expect_error(huge, 1002);
}

TEST(WebSocket, MessageTooBig) {
  expect_error(client_frame(0x82, pattern(101)), 1009, 100);
  EXPECT_EQ(decode_whole(client_frame(0x82, pattern(100)), 100).data.size(), 100u);
  // Fragments add up.
  expect_error(cat({client_frame(0x02, pattern(60)), client_frame(0x80, pattern(41))}), 1009, 100);
  EXPECT_EQ(decode_whole(cat({client_frame(0x02, pattern(60)), client_frame(0x80, pattern(40)),
                              client_frame(0x82, pattern(100))}), 100).data.size(), 200u)
      << "the limit is per message";
  // Refused from the header alone, before any payload.
  ws_decoder d(1000);
  const bytes header{0x82, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  const auto ev = d.feed(header);
  EXPECT_EQ(ev.what, kind::error);
  EXPECT_EQ(ev.close_code, 1009);
}

TEST(WebSocket, ErrorIsSticky) {
  ws_decoder d;
  const auto ev = d.feed(client_frame(0x82, as_bytes("x"), false));
  ASSERT_EQ(ev.what, kind::error);
  const auto again = d.feed(client_frame(0x82, "fine"));
  EXPECT_EQ(again.what, kind::error);
  EXPECT_EQ(again.close_code, 1002);
  EXPECT_EQ(again.consumed, 0u);
}

TEST(WebSocket, UnmaskingUsesEveryMaskByte) {
  const bytes payload = pattern(37);
  const bytes wire = client_frame(0x82, payload, true, 0, {0xff, 0x00, 0xa5, 0x5a});
  EXPECT_EQ(decode_whole(wire).data, payload);
  expect_every_split(wire);
}

// ---- encoding ----

TEST(WebSocket, EncodeLengthForms) {
  struct expected {
    std::size_t n;
    std::size_t header;
    std::uint8_t len7;
  };
  for (const auto& e : {expected{0, 2, 0}, expected{125, 2, 125}, expected{126, 4, 126}, expected{65535, 4, 126},
                        expected{65536, 10, 127}, expected{70000, 10, 127}}) {
    const bytes payload = pattern(e.n);
    const bytes f = ws_encode(ws_opcode::binary, payload);
    ASSERT_EQ(f.size(), e.header + e.n) << e.n;
    EXPECT_EQ(f[0], 0x82) << "FIN + binary";
    EXPECT_EQ(f[1], e.len7) << "server frames are not masked";
    if (e.len7 == 126) {
      EXPECT_EQ((std::size_t{f[2]} << 8) | f[3], e.n);
    }
    if (e.len7 == 127) {
      std::uint64_t n = 0;
      for (int i = 2; i < 10; ++i) n = n << 8 | f[i];
      EXPECT_EQ(n, e.n);
    }
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), f.begin() + static_cast<std::ptrdiff_t>(e.header)));
  }
  bytes out{0xaa};
  ws_encode_to(out, ws_opcode::pong, as_bytes("p"));
  EXPECT_EQ(out, (bytes{0xaa, 0x8a, 0x01, 'p'}));
  EXPECT_THROW(ws_encode(ws_opcode::ping, pattern(126)), std::invalid_argument);
}

TEST(WebSocket, EncodeRoundTrip) {
  for (std::size_t n : {0u, 1u, 125u, 126u, 1000u, 65535u, 65536u, 100000u}) {
    const bytes payload = pattern(n);
    const auto c = decode_whole(mask_server_frame(ws_encode(ws_opcode::binary, payload)));
    EXPECT_EQ(c.data, payload) << n;
    EXPECT_TRUE(c.events.empty());
  }
  const auto ping = decode_whole(mask_server_frame(ws_encode(ws_opcode::ping, as_bytes("hi"))));
  ASSERT_EQ(ping.events.size(), 1u);
  EXPECT_EQ(ping.events[0].what, kind::ping);
  EXPECT_EQ(ping.events[0].payload, to_bytes("hi"));
}

TEST(WebSocket, CloseFrame) {
  EXPECT_EQ(ws_close_frame(1000), (bytes{0x88, 0x02, 0x03, 0xe8}));
  EXPECT_EQ(ws_close_frame(1002, "bad"), (bytes{0x88, 0x05, 0x03, 0xea, 'b', 'a', 'd'}));
  EXPECT_EQ(ws_close_frame(1005), (bytes{0x88, 0x00})) << "1005 is never sent: an empty close";
  const auto c = decode_whole(mask_server_frame(ws_close_frame(1009, "too big")));
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].close_code, 1009);
  EXPECT_EQ(c.events[0].message, "too big");
  // A long reason is cut to fit 125 bytes, on a UTF-8 character boundary.
  std::string reason;
  for (int i = 0; i < 100; ++i) reason += "\xc3\xa9";  // 200 bytes
  const bytes f = ws_close_frame(1000, reason);
  EXPECT_LE(f[1], 125);
  EXPECT_EQ(f.size(), 2u + f[1]);
  EXPECT_EQ((f[1] - 2) % 2, 0) << "no half character";
  const bytes ascii = ws_close_frame(1000, std::string(300, 'a'));
  EXPECT_EQ(ascii[1], 125);
}

}  // namespace
}  // namespace fleethub::proto::http
