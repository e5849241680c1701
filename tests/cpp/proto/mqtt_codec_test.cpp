#include "fleethub/proto/mqtt/codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace fleethub::proto::mqtt {
namespace {

// Builds expected wire bytes from literal bytes and literal strings, in order.
struct piece {
  bytes b;
  piece(std::initializer_list<int> v) {  // NOLINT(implicit)
    for (int x : v) b.push_back(static_cast<std::uint8_t>(x));
  }
  piece(const char* s) : b(to_bytes(s)) {}  // NOLINT(implicit)
  piece(bytes v) : b(std::move(v)) {}        // NOLINT(implicit)
};
bytes cat(std::initializer_list<piece> ps) {
  bytes out;
  for (const auto& p : ps) out.insert(out.end(), p.b.begin(), p.b.end());
  return out;
}

struct decoded {
  std::vector<packet> packets;
  decode_status status;
};
decoded decode_all(bytes_view data, std::size_t max = 256 * 1024 + 4096) {
  decoder d(max);
  d.feed(data);
  decoded r;
  while (auto p = d.next()) r.packets.push_back(std::move(*p));
  r.status = d.status();
  return r;
}
packet decode_one(const bytes& data) {
  auto r = decode_all(data);
  EXPECT_EQ(r.status.error, decode_error::none) << r.status.detail;
  EXPECT_EQ(r.packets.size(), 1u);
  return r.packets.empty() ? packet{} : r.packets.front();
}
decode_error error_of(const bytes& data, std::size_t max = 256 * 1024 + 4096) {
  auto r = decode_all(data, max);
  return r.status.error;
}

const std::string azure_username = "hub.local/dev1/?api-version=2019-10-01&DeviceClientType=fleethub-test%2F1.0";
const std::string azure_password =
    "SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=AbCdEf%2B0123456789%3D&se=1700000000";

connect_packet azure_connect() {
  connect_packet c;
  c.clean_session = false;
  c.keep_alive = 60;
  c.client_id = "dev1";
  c.username = azure_username;
  c.password = to_bytes(azure_password);
  return c;
}

// One of each packet kind, plus variants that exercise optional fields.
std::vector<packet> sample_packets() {
  std::vector<packet> v;
  v.push_back(azure_connect());
  connect_packet minimal;
  minimal.client_id = "";
  v.push_back(minimal);
  connect_packet with_will;
  with_will.client_id = "dev2";
  with_will.keep_alive = 1740;
  with_will.will = will_message{"devices/dev2/messages/events/", to_bytes("gone"), 1, true};
  with_will.username = "u";
  v.push_back(with_will);
  v.push_back(connack_packet{true, connack_code::accepted});
  v.push_back(connack_packet{false, connack_code::not_authorized});
  v.push_back(publish_packet{"devices/dev1/messages/events/a=b", to_bytes("hello"), 0, false, false, 0});
  v.push_back(publish_packet{"devices/dev1/messages/devicebound/%24.mid=1", bytes(300, 0xAB), 1, true, true, 7});
  v.push_back(publish_packet{"$iothub/twin/PATCH/properties/reported/?$rid=1", {}, 1, false, false, 65535});
  v.push_back(puback_packet{1});
  v.push_back(pubrec_packet{2});
  v.push_back(pubrel_packet{3});
  v.push_back(pubcomp_packet{4});
  v.push_back(subscribe_packet{10, {{"devices/dev1/messages/devicebound/#", 1}, {"$iothub/methods/POST/#", 0}}});
  v.push_back(suback_packet{10, {1, 0, suback_failure, 2}});
  v.push_back(unsubscribe_packet{11, {"devices/dev1/messages/devicebound/#", "+/x"}});
  v.push_back(unsuback_packet{11});
  v.push_back(pingreq_packet{});
  v.push_back(pingresp_packet{});
  v.push_back(disconnect_packet{});
  return v;
}

bytes encode_all(const std::vector<packet>& ps) {
  bytes out;
  for (const auto& p : ps) encode(p, out);
  return out;
}

// ---------------------------------------------------------------- exact bytes

TEST(MqttCodec, AzureConnectExactBytes) {
  const bytes expected = cat({{0x10, 0xBB, 0x01},                   // CONNECT, remaining length 187
                              {0x00, 0x04}, "MQTT", {0x04},         // protocol name, level 4
                              {0xC0},                               // username + password, clean session 0
                              {0x00, 0x3C},                         // keep-alive 60
                              {0x00, 0x04}, "dev1",                 // client id
                              {0x00, 75}, azure_username.c_str(),   // username
                              {0x00, 92}, azure_password.c_str()}); // password
  EXPECT_EQ(encode(azure_connect()), expected);
  EXPECT_EQ(decode_one(expected), packet(azure_connect()));
}

TEST(MqttCodec, ConnectWithWillExactBytes) {
  connect_packet c;
  c.client_id = "c";
  c.keep_alive = 0;
  c.will = will_message{"t/w", to_bytes("bye"), 2, true};
  const bytes expected = cat({{0x10, 23, 0x00, 0x04}, "MQTT", {0x04},
                              {0x36},  // will retain 0x20 | will QoS 2 0x10 | will 0x04 | clean 0x02
                              {0x00, 0x00}, {0x00, 0x01}, "c", {0x00, 0x03}, "t/w", {0x00, 0x03}, "bye"});
  EXPECT_EQ(encode(c), expected);
  EXPECT_EQ(decode_one(expected), packet(c));
}

TEST(MqttCodec, ConnackExactBytes) {
  EXPECT_EQ(encode(connack_packet{false, connack_code::accepted}), (bytes{0x20, 0x02, 0x00, 0x00}));
  EXPECT_EQ(encode(connack_packet{true, connack_code::accepted}), (bytes{0x20, 0x02, 0x01, 0x00}));
  EXPECT_EQ(encode(connack_packet{false, connack_code::unacceptable_protocol_version}),
            (bytes{0x20, 0x02, 0x00, 0x01}));
  EXPECT_EQ(encode(connack_packet{false, connack_code::not_authorized}), (bytes{0x20, 0x02, 0x00, 0x05}));
  EXPECT_EQ(decode_one({0x20, 0x02, 0x01, 0x00}), packet(connack_packet{true, connack_code::accepted}));
}

TEST(MqttCodec, PublishQos0ExactBytes) {
  publish_packet p{"a/b", to_bytes("hi"), 0, false, false, 0};
  const bytes expected = cat({{0x30, 0x07, 0x00, 0x03}, "a/b", "hi"});
  EXPECT_EQ(encode(p), expected);
  EXPECT_EQ(decode_one(expected), packet(p));
}

TEST(MqttCodec, PublishQos0RetainExactBytes) {
  publish_packet p{"a", {}, 0, true, false, 0};
  const bytes expected = cat({{0x31, 0x03, 0x00, 0x01}, "a"});
  EXPECT_EQ(encode(p), expected);
  EXPECT_EQ(decode_one(expected), packet(p));
}

TEST(MqttCodec, PublishQos1DupExactBytes) {
  publish_packet p{"devices/d/messages/events/", to_bytes("{}"), 1, false, true, 0x1234};
  const bytes expected = cat({{0x3A, 32, 0x00, 26}, "devices/d/messages/events/", {0x12, 0x34}, "{}"});
  EXPECT_EQ(encode(p), expected);
  EXPECT_EQ(decode_one(expected), packet(p));
}

TEST(MqttCodec, AckPacketsExactBytes) {
  EXPECT_EQ(encode(puback_packet{0x0102}), (bytes{0x40, 0x02, 0x01, 0x02}));
  EXPECT_EQ(encode(pubrec_packet{5}), (bytes{0x50, 0x02, 0x00, 0x05}));
  EXPECT_EQ(encode(pubrel_packet{5}), (bytes{0x62, 0x02, 0x00, 0x05}));
  EXPECT_EQ(encode(pubcomp_packet{5}), (bytes{0x70, 0x02, 0x00, 0x05}));
  EXPECT_EQ(encode(unsuback_packet{9}), (bytes{0xB0, 0x02, 0x00, 0x09}));
  EXPECT_EQ(decode_one({0x40, 0x02, 0x01, 0x02}), packet(puback_packet{0x0102}));
  EXPECT_EQ(decode_one({0x62, 0x02, 0x00, 0x05}), packet(pubrel_packet{5}));
  EXPECT_EQ(decode_one({0xB0, 0x02, 0x00, 0x09}), packet(unsuback_packet{9}));
}

TEST(MqttCodec, SubscribeExactBytes) {
  subscribe_packet s{1, {{"a/#", 1}, {"+/b", 0}}};
  const bytes expected = cat({{0x82, 14, 0x00, 0x01}, {0x00, 0x03}, "a/#", {0x01}, {0x00, 0x03}, "+/b", {0x00}});
  EXPECT_EQ(encode(s), expected);
  EXPECT_EQ(decode_one(expected), packet(s));
}

TEST(MqttCodec, SubackExactBytes) {
  suback_packet s{1, {1, 0x80}};
  const bytes expected{0x90, 0x04, 0x00, 0x01, 0x01, 0x80};
  EXPECT_EQ(encode(s), expected);
  EXPECT_EQ(decode_one(expected), packet(s));
}

TEST(MqttCodec, UnsubscribeExactBytes) {
  unsubscribe_packet u{0x0203, {"a/#"}};
  const bytes expected = cat({{0xA2, 7, 0x02, 0x03, 0x00, 0x03}, "a/#"});
  EXPECT_EQ(encode(u), expected);
  EXPECT_EQ(decode_one(expected), packet(u));
}

TEST(MqttCodec, EmptyBodyPacketsExactBytes) {
  EXPECT_EQ(encode(pingreq_packet{}), (bytes{0xC0, 0x00}));
  EXPECT_EQ(encode(pingresp_packet{}), (bytes{0xD0, 0x00}));
  EXPECT_EQ(encode(disconnect_packet{}), (bytes{0xE0, 0x00}));
  EXPECT_EQ(decode_one({0xC0, 0x00}), packet(pingreq_packet{}));
  EXPECT_EQ(decode_one({0xD0, 0x00}), packet(pingresp_packet{}));
  EXPECT_EQ(decode_one({0xE0, 0x00}), packet(disconnect_packet{}));
}

TEST(MqttCodec, RemainingLengthVarintBoundaries) {
  // Payload sizes chosen so the remaining length (payload + 3 for a 1-char topic) hits each boundary.
  const std::pair<std::size_t, bytes> cases[] = {
      {127, {0x7F}},
      {128, {0x80, 0x01}},
      {16383, {0xFF, 0x7F}},
      {16384, {0x80, 0x80, 0x01}},
      {2097151, {0xFF, 0xFF, 0x7F}},
      {2097152, {0x80, 0x80, 0x80, 0x01}},
  };
  for (const auto& [rl, varint] : cases) {
    publish_packet p{"t", bytes(rl - 3, 0x55), 0, false, false, 0};
    const bytes wire = encode(p);
    ASSERT_EQ(wire.size(), 1 + varint.size() + rl);
    EXPECT_EQ(bytes(wire.begin() + 1, wire.begin() + 1 + static_cast<std::ptrdiff_t>(varint.size())), varint)
        << rl;
    auto r = decode_all(wire, 4 * 1024 * 1024);
    ASSERT_EQ(r.packets.size(), 1u) << rl;
    EXPECT_EQ(r.packets[0], packet(p));
  }
}

// ---------------------------------------------------------------- round trip and splitting

TEST(MqttCodec, RoundTripEveryPacketKind) {
  for (const auto& p : sample_packets()) {
    EXPECT_EQ(decode_one(encode(p)), p) << "index " << p.index();
  }
}

TEST(MqttCodec, EveryPacketSplitAtEveryOffset) {
  for (const auto& p : sample_packets()) {
    const bytes wire = encode(p);
    for (std::size_t k = 0; k <= wire.size(); ++k) {
      decoder d;
      d.feed(bytes_view(wire).first(k));
      if (k < wire.size()) {
        ASSERT_FALSE(d.next().has_value()) << "index " << p.index() << " split " << k;
        ASSERT_FALSE(d.failed()) << d.status().detail;
        EXPECT_EQ(d.buffered(), k);
      }
      d.feed(bytes_view(wire).subspan(k));
      auto got = d.next();
      ASSERT_TRUE(got.has_value()) << "index " << p.index() << " split " << k << ": " << d.status().detail;
      EXPECT_EQ(*got, p);
      EXPECT_FALSE(d.next().has_value());
      EXPECT_EQ(d.buffered(), 0u);
    }
  }
}

TEST(MqttCodec, StreamSplitAtEveryOffset) {
  // Many packets back to back, cut into two reads at every offset.
  std::vector<packet> ps;
  for (int i = 0; i < 3; ++i)
    for (auto& p : sample_packets()) ps.push_back(p);
  const bytes stream = encode_all(ps);
  for (std::size_t k = 0; k <= stream.size(); ++k) {
    decoder d;
    std::vector<packet> got;
    d.feed(bytes_view(stream).first(k));
    while (auto p = d.next()) got.push_back(std::move(*p));
    d.feed(bytes_view(stream).subspan(k));
    while (auto p = d.next()) got.push_back(std::move(*p));
    ASSERT_FALSE(d.failed()) << d.status().detail;
    ASSERT_EQ(got, ps) << "split " << k;
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(MqttCodec, StreamByteByByte) {
  const auto ps = sample_packets();
  const bytes stream = encode_all(ps);
  decoder d;
  std::vector<packet> got;
  for (std::uint8_t b : stream) {
    d.feed(bytes_view(&b, 1));
    while (auto p = d.next()) got.push_back(std::move(*p));
  }
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(got, ps);
}

TEST(MqttCodec, StreamRandomChunksWithLazyNext) {
  // Several feeds before next(): exercises the compaction path with a partially consumed buffer.
  std::vector<packet> ps;
  for (int i = 0; i < 20; ++i)
    for (auto& p : sample_packets()) ps.push_back(p);
  const bytes stream = encode_all(ps);
  std::mt19937 rng(1234);
  for (int round = 0; round < 20; ++round) {
    decoder d;
    std::vector<packet> got;
    std::size_t off = 0;
    while (off < stream.size()) {
      const std::size_t n = std::min<std::size_t>(stream.size() - off, rng() % 700);
      d.feed(bytes_view(stream).subspan(off, n));
      off += n;
      if (rng() % 3 == 0) continue;  // leave data unparsed for a while
      for (unsigned take = rng() % 4; take > 0; --take)
        if (auto p = d.next()) got.push_back(std::move(*p));
    }
    while (auto p = d.next()) got.push_back(std::move(*p));
    ASSERT_FALSE(d.failed()) << d.status().detail;
    ASSERT_EQ(got, ps);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(MqttCodec, FeedEmptySpanIsHarmless) {
  decoder d;
  d.feed({});
  EXPECT_FALSE(d.next().has_value());
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(MqttCodec, LargestIotHubMessageDecodes) {
  publish_packet p{"devices/d/messages/events/", bytes(256 * 1024, 0x42), 1, false, false, 1};
  const bytes wire = encode(p);
  decoder d;
  std::optional<packet> got;
  for (std::size_t off = 0; off < wire.size(); off += 4096) {
    d.feed(bytes_view(wire).subspan(off, std::min<std::size_t>(4096, wire.size() - off)));
    if (auto x = d.next()) got = std::move(x);
  }
  ASSERT_TRUE(got.has_value()) << d.status().detail;
  EXPECT_EQ(*got, packet(p));
}

// ---------------------------------------------------------------- limits

TEST(MqttCodec, TooLargeDetectedFromFixedHeaderAlone) {
  decoder d(100);
  d.feed(bytes{0x30, 0xE8, 0x07});  // PUBLISH claiming 1000 bytes; no body yet
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.status().error, decode_error::packet_too_large);
  EXPECT_EQ(d.buffered(), 0u);
  d.feed(bytes(1000, 0));  // further input is dropped, not buffered
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_FALSE(d.next().has_value());
}

TEST(MqttCodec, LimitAppliesToRemainingLength) {
  publish_packet p{"t", bytes(97, 1), 0, false, false, 0};  // remaining length 100
  EXPECT_EQ(error_of(encode(p), 100), decode_error::none);
  EXPECT_EQ(error_of(encode(p), 99), decode_error::packet_too_large);
}

TEST(MqttCodec, RemainingLengthOfFiveBytesIsMalformed) {
  EXPECT_EQ(error_of({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, SIZE_MAX), decode_error::malformed);
  // Detected without waiting for the fifth byte's successor.
  decoder d(SIZE_MAX);
  d.feed(bytes{0x30, 0x80, 0x80, 0x80, 0x80});
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.status().error, decode_error::malformed);
}

TEST(MqttCodec, FourByteRemainingLengthWaitsForBody) {
  decoder d(SIZE_MAX);
  d.feed(bytes{0x30, 0xFF, 0xFF, 0xFF, 0x7F});  // 268435455: legal, just incomplete
  EXPECT_FALSE(d.next().has_value());
  EXPECT_FALSE(d.failed());
}

// ---------------------------------------------------------------- malformed: fixed header

TEST(MqttCodec, ReservedPacketTypes) {
  EXPECT_EQ(error_of({0x00, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of({0xF0, 0x00}), decode_error::malformed);
}

TEST(MqttCodec, FixedHeaderFlagsPerType) {
  // Each type with its one legal flag pattern replaced by another.
  EXPECT_EQ(error_of(cat({{0x11, 0x0C, 0x00, 0x04}, "MQTT", {0x04, 0x02, 0x00, 0x00, 0x00, 0x00}})),
            decode_error::malformed);
  EXPECT_EQ(error_of({0x21, 0x02, 0x00, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of({0x42, 0x02, 0x00, 0x01}), decode_error::malformed);
  EXPECT_EQ(error_of({0x58, 0x02, 0x00, 0x01}), decode_error::malformed);
  EXPECT_EQ(error_of({0x60, 0x02, 0x00, 0x01}), decode_error::malformed);  // PUBREL needs 0b0010
  EXPECT_EQ(error_of({0x63, 0x02, 0x00, 0x01}), decode_error::malformed);
  EXPECT_EQ(error_of({0x72, 0x02, 0x00, 0x01}), decode_error::malformed);
  EXPECT_EQ(error_of(cat({{0x80, 0x06, 0x00, 0x01, 0x00, 0x01}, "a", {0x00}})), decode_error::malformed);
  EXPECT_EQ(error_of({0x92, 0x03, 0x00, 0x01, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of(cat({{0xA0, 0x05, 0x00, 0x01, 0x00, 0x01}, "a"})), decode_error::malformed);
  EXPECT_EQ(error_of({0xB1, 0x02, 0x00, 0x01}), decode_error::malformed);
  EXPECT_EQ(error_of({0xC1, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of({0xD2, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of({0xE4, 0x00}), decode_error::malformed);
}

TEST(MqttCodec, FlagErrorsDetectedBeforeBody) {
  decoder d;
  d.feed(bytes{0x36});  // PUBLISH QoS 3, nothing else yet
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.status().error, decode_error::malformed);
}

TEST(MqttCodec, PublishQos3IsMalformed) {
  EXPECT_EQ(error_of(cat({{0x36, 0x05, 0x00, 0x01}, "a", {0x00, 0x01}})), decode_error::malformed);
}

TEST(MqttCodec, PublishQos0WithDupIsMalformed) {
  EXPECT_EQ(error_of(cat({{0x38, 0x03, 0x00, 0x01}, "a"})), decode_error::malformed);
}

// ---------------------------------------------------------------- malformed: CONNECT

bytes connect_bytes(std::string_view name, std::uint8_t level, std::uint8_t flags, const bytes& payload) {
  const std::size_t rl = 2 + name.size() + 4 + payload.size();
  bytes out;
  out.reserve(2 + rl);
  for (std::size_t v : {std::size_t{0x10}, rl, std::size_t{0}, name.size()}) out.push_back(static_cast<std::uint8_t>(v));
  for (char ch : name) out.push_back(static_cast<std::uint8_t>(ch));
  for (std::uint8_t v : {level, flags, std::uint8_t{0x00}, std::uint8_t{0x3C}}) out.push_back(v);
  for (std::uint8_t v : payload) out.push_back(v);
  return out;
}
const bytes id_dev1 = cat({{0x00, 0x04}, "dev1"});

TEST(MqttCodec, ConnectMinimalIsValid) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, id_dev1)), decode_error::none);
}

TEST(MqttCodec, ConnectEmptyClientIdAllowedByCodec) {
  auto p = decode_one(connect_bytes("MQTT", 4, 0x00, {0x00, 0x00}));
  EXPECT_EQ(std::get<connect_packet>(p).client_id, "");
  EXPECT_FALSE(std::get<connect_packet>(p).clean_session);
}

TEST(MqttCodec, ConnectMqisdpIsUnsupported) {
  EXPECT_EQ(error_of(connect_bytes("MQIsdp", 3, 0x02, id_dev1)), decode_error::unsupported_protocol);
}

TEST(MqttCodec, ConnectOtherLevelsAreUnsupported) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 3, 0x02, id_dev1)), decode_error::unsupported_protocol);
  // An MQTT 5 CONNECT carries properties that 3.1.1 cannot parse; the level decides first.
  EXPECT_EQ(error_of(connect_bytes("MQTT", 5, 0x02, cat({{0x00}, id_dev1}))), decode_error::unsupported_protocol);
}

TEST(MqttCodec, ConnectUnknownProtocolNameIsMalformed) {
  EXPECT_EQ(error_of(connect_bytes("MQTX", 4, 0x02, id_dev1)), decode_error::malformed);
}

TEST(MqttCodec, ConnectReservedFlagIsMalformed) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x03, id_dev1)), decode_error::malformed);
}

TEST(MqttCodec, ConnectWillFlagsMustBeConsistent) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x0A, id_dev1)), decode_error::malformed);  // will QoS, no will
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x22, id_dev1)), decode_error::malformed);  // will retain, no will
  const bytes will = cat({id_dev1, {0x00, 0x01}, "w", {0x00, 0x00}});
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x1E, will)), decode_error::malformed);    // will QoS 3
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x0E, will)), decode_error::none);         // will QoS 1
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x06, id_dev1)), decode_error::malformed);  // will fields missing
  const bytes wild = cat({id_dev1, {0x00, 0x01}, "#", {0x00, 0x00}});
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x06, wild)), decode_error::malformed);    // wildcard will topic
}

TEST(MqttCodec, ConnectPasswordWithoutUsernameIsMalformed) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x42, cat({id_dev1, {0x00, 0x01}, "p"}))), decode_error::malformed);
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0xC2, cat({id_dev1, {0x00, 0x01}, "u", {0x00, 0x01}, "p"}))),
            decode_error::none);
}

TEST(MqttCodec, ConnectTruncatedOrTrailingIsMalformed) {
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x82, id_dev1)), decode_error::malformed);  // username missing
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, {0x00, 0x05, 'd'})), decode_error::malformed);
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, cat({id_dev1, {0x00}}))), decode_error::malformed);
  EXPECT_EQ(error_of({0x10, 0x03, 0x00, 0x04, 'M'}), decode_error::malformed);
}

TEST(MqttCodec, Utf8MustBeWellFormedWithoutNul) {
  const std::vector<bytes> bad_ids = {
      {0x00, 0x02, 0xC0, 0x80},              // overlong NUL
      {0x00, 0x01, 0x00},                    // U+0000
      {0x00, 0x01, 0x80},                    // lone continuation byte
      {0x00, 0x03, 0xED, 0xA0, 0x80},        // surrogate U+D800
      {0x00, 0x04, 0xF4, 0x90, 0x80, 0x80},  // above U+10FFFF
      {0x00, 0x02, 0xE2, 0x82},              // truncated sequence
      {0x00, 0x01, 0xFF},                    // invalid lead byte
      {0x00, 0x03, 0xE0, 0x80, 0xAF},        // overlong 3-byte
  };
  for (const auto& id : bad_ids) EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, id)), decode_error::malformed);
  const bytes cut = {0x00, 0x09, 'd', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98};  // truncated 4-byte
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, cut)), decode_error::malformed);
  const bytes ok = {0x00, 0x0A, 'd', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80};  // d é € 😀
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x02, ok)), decode_error::none);
  // Usernames and topic names are checked as well.
  EXPECT_EQ(error_of(connect_bytes("MQTT", 4, 0x82, cat({id_dev1, {0x00, 0x01, 0x00}}))), decode_error::malformed);
  EXPECT_EQ(error_of({0x30, 0x03, 0x00, 0x01, 0xFE}), decode_error::malformed);
}

// ---------------------------------------------------------------- malformed: other packets

TEST(MqttCodec, PublishRules) {
  EXPECT_EQ(error_of(cat({{0x32, 0x05, 0x00, 0x01}, "a", {0x00, 0x00}})), decode_error::malformed);  // id 0
  EXPECT_EQ(error_of(cat({{0x32, 0x04, 0x00, 0x01}, "a", {0x00}})), decode_error::malformed);        // id cut
  EXPECT_EQ(error_of(cat({{0x30, 0x05, 0x00, 0x03}, "a/+"})), decode_error::malformed);
  EXPECT_EQ(error_of(cat({{0x30, 0x05, 0x00, 0x03}, "a/#"})), decode_error::malformed);
  EXPECT_EQ(error_of({0x30, 0x02, 0x00, 0x00}), decode_error::malformed);  // empty topic name
  EXPECT_EQ(error_of({0x30, 0x02, 0x00, 0x05}), decode_error::malformed);  // topic longer than packet
  EXPECT_EQ(error_of(cat({{0x30, 0x03, 0x00, 0x01}, "a"})), decode_error::none);  // empty payload is fine
}

TEST(MqttCodec, SubscribeRules) {
  EXPECT_EQ(error_of({0x82, 0x02, 0x00, 0x01}), decode_error::malformed);                           // no filters
  EXPECT_EQ(error_of(cat({{0x82, 0x06, 0x00, 0x01, 0x00, 0x01}, "a", {0x03}})), decode_error::malformed);  // QoS 3
  EXPECT_EQ(error_of(cat({{0x82, 0x06, 0x00, 0x01, 0x00, 0x01}, "a", {0x41}})), decode_error::malformed);  // reserved
  EXPECT_EQ(error_of(cat({{0x82, 0x06, 0x00, 0x00, 0x00, 0x01}, "a", {0x01}})), decode_error::malformed);  // id 0
  EXPECT_EQ(error_of(cat({{0x82, 0x05, 0x00, 0x01, 0x00, 0x01}, "a"})), decode_error::malformed);  // QoS missing
  EXPECT_EQ(error_of(cat({{0x82, 0x0A, 0x00, 0x01, 0x00, 0x05}, "a/#/b", {0x01}})), decode_error::malformed);
  EXPECT_EQ(error_of({0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00}), decode_error::malformed);  // empty filter
  EXPECT_EQ(error_of(cat({{0x82, 0x06, 0x00, 0x01, 0x00, 0x01}, "#", {0x02}})), decode_error::none);
}

TEST(MqttCodec, UnsubscribeRules) {
  EXPECT_EQ(error_of({0xA2, 0x02, 0x00, 0x01}), decode_error::malformed);                           // no filters
  EXPECT_EQ(error_of(cat({{0xA2, 0x05, 0x00, 0x00, 0x00, 0x01}, "a"})), decode_error::malformed);  // id 0
  EXPECT_EQ(error_of(cat({{0xA2, 0x05, 0x00, 0x01, 0x00, 0x03}, "a"})), decode_error::malformed);  // truncated
}

TEST(MqttCodec, AckRules) {
  EXPECT_EQ(error_of({0x40, 0x02, 0x00, 0x00}), decode_error::malformed);        // id 0
  EXPECT_EQ(error_of({0x40, 0x03, 0x00, 0x01, 0x00}), decode_error::malformed);  // too long
  EXPECT_EQ(error_of({0x40, 0x01, 0x01}), decode_error::malformed);              // too short
  EXPECT_EQ(error_of({0xC0, 0x01, 0x00}), decode_error::malformed);              // PINGREQ with body
  EXPECT_EQ(error_of({0xE0, 0x01, 0x00}), decode_error::malformed);              // DISCONNECT with body
}

TEST(MqttCodec, ServerPacketRules) {
  EXPECT_EQ(error_of({0x20, 0x02, 0x02, 0x00}), decode_error::malformed);  // CONNACK reserved ack flags
  EXPECT_EQ(error_of({0x20, 0x02, 0x00, 0x06}), decode_error::malformed);  // return code 6
  EXPECT_EQ(error_of({0x20, 0x03, 0x00, 0x00, 0x00}), decode_error::malformed);
  EXPECT_EQ(error_of({0x90, 0x03, 0x00, 0x01, 0x03}), decode_error::malformed);  // SUBACK code 3
  EXPECT_EQ(error_of({0x90, 0x02, 0x00, 0x01}), decode_error::malformed);        // no codes
}

TEST(MqttCodec, DecoderStaysFailed) {
  decoder d;
  d.feed(bytes{0x40, 0x02, 0x00, 0x00, 0xC0, 0x00});
  EXPECT_FALSE(d.next().has_value());
  EXPECT_TRUE(d.failed());
  EXPECT_FALSE(d.status().detail.empty());
  d.feed(bytes{0xC0, 0x00});
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.status().error, decode_error::malformed);
}

TEST(MqttCodec, GoodPacketsBeforeAnErrorAreDelivered) {
  auto r = decode_all(bytes{0xC0, 0x00, 0xE0, 0x00, 0x40, 0x02, 0x00, 0x00});
  ASSERT_EQ(r.packets.size(), 2u);
  EXPECT_EQ(r.status.error, decode_error::malformed);
}

// ---------------------------------------------------------------- topics

TEST(MqttTopics, ValidTopicName) {
  EXPECT_TRUE(valid_topic_name("a"));
  EXPECT_TRUE(valid_topic_name("/"));
  EXPECT_TRUE(valid_topic_name("devices/d/messages/events/$.ct=application%2Fjson"));
  EXPECT_TRUE(valid_topic_name("$iothub/twin/GET/?$rid=1"));
  EXPECT_FALSE(valid_topic_name(""));
  EXPECT_FALSE(valid_topic_name("a/+"));
  EXPECT_FALSE(valid_topic_name("a/#"));
  EXPECT_FALSE(valid_topic_name("a+b"));
  EXPECT_FALSE(valid_topic_name(std::string_view("a\0b", 3)));
  EXPECT_FALSE(valid_topic_name(std::string(65536, 'a')));
  EXPECT_TRUE(valid_topic_name(std::string(65535, 'a')));
}

TEST(MqttTopics, ValidTopicFilter) {
  for (const char* f : {"#", "+", "a/#", "a/+/b", "+/+", "/+", "+/", "a//b", "$iothub/methods/POST/#", "/#"})
    EXPECT_TRUE(valid_topic_filter(f)) << f;
  for (const char* f : {"", "a#", "a/#/b", "#/", "a+", "+a", "a/b+/c", "##", "a/++"})
    EXPECT_FALSE(valid_topic_filter(f)) << f;
  EXPECT_FALSE(valid_topic_filter(std::string_view("a\0", 2)));
}

TEST(MqttTopics, Matches) {
  struct row {
    const char* filter;
    const char* topic;
    bool match;
  };
  const row rows[] = {
      {"sport/tennis/player1/#", "sport/tennis/player1", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
      {"sport/#", "sport", true},
      {"#", "sport", true},
      {"#", "/", true},
      {"sport/tennis/+", "sport/tennis/player1", true},
      {"sport/tennis/+", "sport/tennis/player1/ranking", false},
      {"sport/+", "sport", false},
      {"sport/+", "sport/", true},
      {"+/+", "/finance", true},
      {"/+", "/finance", true},
      {"+", "/finance", false},
      {"+", "a", true},
      {"a/b", "a/b", true},
      {"a/b", "a/b/c", false},
      {"a/b/c", "a/b", false},
      {"a/b", "a/c", false},
      {"a/+/c", "a//c", true},
      {"#", "$SYS/x", false},
      {"+/monitor/Clients", "$SYS/monitor/Clients", false},
      {"$SYS/#", "$SYS/monitor/Clients", true},
      {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
      {"devices/dev1/messages/devicebound/#", "devices/dev1/messages/devicebound/%24.mid=1&a=b", true},
      {"devices/dev1/messages/devicebound/#", "devices/dev2/messages/devicebound/", false},
      {"$iothub/methods/POST/#", "$iothub/methods/POST/reboot/?$rid=1", true},
  };
  for (const auto& r : rows) EXPECT_EQ(topic_matches(r.filter, r.topic), r.match) << r.filter << " vs " << r.topic;
}

}  // namespace
}  // namespace fleethub::proto::mqtt
