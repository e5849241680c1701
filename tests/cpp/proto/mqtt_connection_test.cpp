#include "fleethub/proto/mqtt/connection.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace fleethub::proto::mqtt {
namespace {

using namespace std::chrono_literals;

const steady_time t0 = steady_time(std::chrono::hours(1000));

connect_packet make_connect(std::uint16_t keep_alive = 60) {
  connect_packet c;
  c.clean_session = false;
  c.keep_alive = keep_alive;
  c.client_id = "dev1";
  c.username = "hub.local/dev1/?api-version=2019-10-01";
  c.password = to_bytes("SharedAccessSignature sr=x&sig=y&se=1");
  return c;
}

bytes wire(std::initializer_list<packet> ps) {
  bytes out;
  for (const auto& p : ps) encode(p, out);
  return out;
}

template <class E>
const E& as(const event& e) {
  EXPECT_TRUE(std::holds_alternative<E>(e)) << "event index " << e.index();
  return std::get<E>(e);
}

close_event single_close(const std::vector<event>& evs) {
  EXPECT_EQ(evs.size(), 1u);
  if (evs.empty() || !std::holds_alternative<close_event>(evs.back())) {
    ADD_FAILURE() << "expected a close_event";
    return {};
  }
  return std::get<close_event>(evs.back());
}

// A connection that has received CONNECT and been accepted; output drained.
connection connected(connection_limits limits = {}, std::uint16_t keep_alive = 60) {
  connection c(limits, t0);
  auto evs = c.feed(wire({make_connect(keep_alive)}), t0);
  EXPECT_EQ(evs.size(), 1u);
  c.accept(false, t0);
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x00}));
  return c;
}

TEST(MqttConnection, ConnectAcceptWritesConnack) {
  connection c({}, t0);
  EXPECT_EQ(c.state(), connection_state::awaiting_connect);
  auto evs = c.feed(wire({make_connect()}), t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(as<connect_event>(evs[0]).packet, make_connect());
  EXPECT_EQ(c.state(), connection_state::authenticating);
  EXPECT_FALSE(c.has_output());
  c.accept(true, t0 + 1s);
  EXPECT_EQ(c.state(), connection_state::connected);
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x01, 0x00}));
  EXPECT_FALSE(c.has_output());
  EXPECT_EQ(c.take_output(), bytes{});
  EXPECT_EQ(c.keep_alive(), 60);
}

TEST(MqttConnection, ConnectSplitAcrossReads) {
  connection c({}, t0);
  const bytes w = wire({make_connect()});
  for (std::size_t i = 0; i + 1 < w.size(); ++i) EXPECT_TRUE(c.feed(bytes_view(&w[i], 1), t0).empty());
  auto evs = c.feed(bytes_view(&w.back(), 1), t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<connect_event>(evs[0]));
}

TEST(MqttConnection, PublishQos1ThenAcknowledgeWritesPuback) {
  auto c = connected();
  publish_packet p{"devices/dev1/messages/events/a=1", to_bytes("{\"t\":21}"), 1, false, false, 0x0A0B};
  auto evs = c.feed(wire({p}), t0 + 1s);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(as<publish_event>(evs[0]).packet, p);
  EXPECT_FALSE(c.has_output());  // no PUBACK until the hub says it is durable
  c.acknowledge(0x0A0B);
  EXPECT_EQ(c.take_output(), (bytes{0x40, 0x02, 0x0A, 0x0B}));
}

TEST(MqttConnection, PublishQos0HasNoAck) {
  auto c = connected();
  auto evs = c.feed(wire({publish_packet{"devices/dev1/messages/events/", {}, 0, false, false, 0}}), t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<publish_event>(evs[0]));
  EXPECT_FALSE(c.has_output());
}

TEST(MqttConnection, PingreqWritesPingresp) {
  auto c = connected();
  auto evs = c.feed(bytes{0xC0, 0x00}, t0 + 10s);
  EXPECT_TRUE(evs.empty());
  EXPECT_EQ(c.take_output(), (bytes{0xD0, 0x00}));
}

TEST(MqttConnection, SeveralAnswersGoOutInOneBuffer) {
  auto c = connected();
  auto evs = c.feed(bytes{0xC0, 0x00, 0xC0, 0x00}, t0);
  EXPECT_TRUE(evs.empty());
  c.publish("a/b", to_bytes("x"), 0, 0, false);
  EXPECT_EQ(c.take_output(), (bytes{0xD0, 0x00, 0xD0, 0x00, 0x30, 0x06, 0x00, 0x03, 'a', '/', 'b', 'x'}));
}

TEST(MqttConnection, KeepAliveExpiresAtOneAndAHalfTimes) {
  auto c = connected({}, 60);
  EXPECT_EQ(c.next_deadline(), t0 + 90s);
  EXPECT_FALSE(c.tick(t0 + 90s - 1ms).has_value());
  auto e = c.tick(t0 + 90s);
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->graceful);
  EXPECT_EQ(e->reason, "keep-alive timeout");
  EXPECT_EQ(c.state(), connection_state::closed);
  EXPECT_EQ(c.next_deadline(), steady_time::max());
  EXPECT_FALSE(c.tick(t0 + 200s).has_value());
}

TEST(MqttConnection, EveryPacketResetsKeepAlive) {
  auto c = connected({}, 10);
  EXPECT_EQ(c.next_deadline(), t0 + 15s);
  c.feed(bytes{0xC0, 0x00}, t0 + 14s);
  EXPECT_EQ(c.next_deadline(), t0 + 29s);
  EXPECT_FALSE(c.tick(t0 + 20s).has_value());
  c.feed(wire({publish_packet{"t", {}, 0, false, false, 0}}), t0 + 28s);
  EXPECT_EQ(c.next_deadline(), t0 + 43s);
  // A partial packet is not a packet.
  c.feed(bytes{0xC0}, t0 + 40s);
  EXPECT_EQ(c.next_deadline(), t0 + 43s);
  EXPECT_TRUE(c.tick(t0 + 43s).has_value());
}

TEST(MqttConnection, KeepAliveClampedToLimit) {
  connection_limits limits;
  limits.max_keep_alive = 100;
  auto c = connected(limits, 3600);
  EXPECT_EQ(c.keep_alive(), 100);
  EXPECT_EQ(c.next_deadline(), t0 + 150s);
}

TEST(MqttConnection, KeepAliveZeroMeansNoDeadline) {
  auto c = connected({}, 0);
  EXPECT_EQ(c.keep_alive(), 0);
  EXPECT_EQ(c.next_deadline(), steady_time::max());
  EXPECT_FALSE(c.tick(t0 + 1000h).has_value());
  c.feed(bytes{0xC0, 0x00}, t0 + 1s);
  EXPECT_EQ(c.next_deadline(), steady_time::max());
}

TEST(MqttConnection, ConnectTimeout) {
  connection_limits limits;
  limits.connect_timeout = 5s;
  connection c(limits, t0);
  EXPECT_EQ(c.next_deadline(), t0 + 5s);
  EXPECT_FALSE(c.tick(t0 + 4s).has_value());
  auto e = c.tick(t0 + 5s);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->reason, "connect timeout");
  EXPECT_EQ(c.state(), connection_state::closed);
  EXPECT_TRUE(c.feed(wire({make_connect()}), t0 + 6s).empty());
}

TEST(MqttConnection, ConnectTimeoutCoversAuthentication) {
  connection_limits limits;
  limits.connect_timeout = 5s;
  connection c(limits, t0);
  c.feed(wire({make_connect()}), t0 + 1s);
  EXPECT_EQ(c.next_deadline(), t0 + 5s);
  EXPECT_TRUE(c.tick(t0 + 5s).has_value());
  c.accept(false, t0 + 6s);  // too late: ignored
  EXPECT_FALSE(c.has_output());
}

TEST(MqttConnection, RefuseWritesConnackCode) {
  connection c({}, t0);
  c.feed(wire({make_connect()}), t0);
  c.refuse(connack_code::not_authorized);
  EXPECT_EQ(c.state(), connection_state::closed);
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x05}));
  EXPECT_EQ(c.next_deadline(), steady_time::max());
  EXPECT_TRUE(c.feed(bytes{0xC0, 0x00}, t0).empty());
  EXPECT_FALSE(c.has_output());
}

TEST(MqttConnection, RefuseIdentifierRejected) {
  connection c({}, t0);
  c.feed(wire({make_connect()}), t0);
  c.refuse(connack_code::identifier_rejected);
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x02}));
}

TEST(MqttConnection, FirstPacketNotConnectCloses) {
  connection c({}, t0);
  auto evs = c.feed(bytes{0xC0, 0x00}, t0);
  const auto e = single_close(evs);
  EXPECT_FALSE(e.graceful);
  EXPECT_NE(e.reason.find("CONNECT"), std::string::npos);
  EXPECT_FALSE(c.has_output());
  EXPECT_EQ(c.state(), connection_state::closed);
}

TEST(MqttConnection, UnsupportedProtocolGetsConnack1) {
  connection c({}, t0);
  connect_packet old = make_connect();
  old.protocol_level = 3;
  auto evs = c.feed(wire({old}), t0);
  single_close(evs);
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x01}));
  EXPECT_EQ(c.state(), connection_state::closed);
}

TEST(MqttConnection, MalformedConnectClosesWithoutConnack) {
  connection c({}, t0);
  // Reserved connect flag set.
  auto evs = c.feed(bytes{0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3C, 0x00, 0x00}, t0);
  const auto e = single_close(evs);
  EXPECT_FALSE(e.reason.empty());
  EXPECT_FALSE(c.has_output());
}

TEST(MqttConnection, TooLargeClosesWithDetail) {
  connection_limits limits;
  limits.max_packet_size = 128;  // the test CONNECT is 95 bytes
  auto c = connected(limits);
  auto evs = c.feed(bytes{0x30, 0xC8, 0x01}, t0);  // 200-byte PUBLISH announced
  EXPECT_FALSE(single_close(evs).reason.empty());
}

TEST(MqttConnection, Qos2PublishCloses) {
  auto c = connected();
  auto evs = c.feed(wire({publish_packet{"t", {}, 2, false, false, 1}}), t0);
  EXPECT_NE(single_close(evs).reason.find("QoS 2"), std::string::npos);
  EXPECT_EQ(c.state(), connection_state::closed);
}

TEST(MqttConnection, Qos2FlowPacketsClose) {
  for (const packet& p : {packet(pubrec_packet{1}), packet(pubrel_packet{1}), packet(pubcomp_packet{1})}) {
    auto c = connected();
    single_close(c.feed(wire({p}), t0));
  }
}

TEST(MqttConnection, ServerPacketsFromClientClose) {
  for (const packet& p : {packet(connack_packet{}), packet(suback_packet{1, {0}}), packet(unsuback_packet{1}),
                          packet(pingresp_packet{})}) {
    auto c = connected();
    single_close(c.feed(wire({p}), t0));
  }
}

TEST(MqttConnection, DisconnectIsGraceful) {
  auto c = connected();
  auto evs = c.feed(bytes{0xE0, 0x00, 0xC0, 0x00}, t0);  // nothing after DISCONNECT is processed
  EXPECT_TRUE(single_close(evs).graceful);
  EXPECT_FALSE(c.has_output());
  EXPECT_EQ(c.state(), connection_state::closed);
  EXPECT_TRUE(c.feed(bytes{0xC0, 0x00}, t0).empty());
}

TEST(MqttConnection, SecondConnectCloses) {
  auto c = connected();
  EXPECT_FALSE(single_close(c.feed(wire({make_connect()}), t0)).graceful);
}

TEST(MqttConnection, MalformedPacketClosesWithDetail) {
  auto c = connected();
  auto evs = c.feed(bytes{0x40, 0x02, 0x00, 0x00}, t0);  // PUBACK with id 0
  EXPECT_NE(single_close(evs).reason.find("packet id 0"), std::string::npos);
}

TEST(MqttConnection, EventsBeforeCloseAreKept) {
  auto c = connected();
  auto evs = c.feed(wire({publish_packet{"t", {}, 0, false, false, 0}, disconnect_packet{}}), t0);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<publish_event>(evs[0]));
  EXPECT_TRUE(as<close_event>(evs[1]).graceful);
}

TEST(MqttConnection, PipelinedPacketsAfterConnectAreProcessedAfterAccept) {
  connection c({}, t0);
  publish_packet p{"devices/dev1/messages/events/", to_bytes("early"), 1, false, false, 5};
  subscribe_packet s{6, {{"devices/dev1/messages/devicebound/#", 1}}};
  auto evs = c.feed(wire({make_connect(), s, p, pingreq_packet{}}), t0);
  ASSERT_EQ(evs.size(), 1u);  // only the CONNECT until authentication finishes
  EXPECT_TRUE(std::holds_alternative<connect_event>(evs[0]));
  EXPECT_TRUE(c.feed({}, t0).empty());  // still authenticating: nothing parsed
  EXPECT_FALSE(c.has_output());
  c.accept(false, t0 + 1s);
  evs = c.feed({}, t0 + 1s);  // drain what arrived during authentication
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(as<subscribe_event>(evs[0]).packet, s);
  EXPECT_EQ(as<publish_event>(evs[1]).packet, p);
  // CONNACK first, then the PINGRESP.
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x00, 0xD0, 0x00}));
}

TEST(MqttConnection, PipelinedDataArrivingDuringAuthenticationIsKept) {
  connection c({}, t0);
  c.feed(wire({make_connect()}), t0);
  EXPECT_TRUE(c.feed(bytes{0xC0, 0x00}, t0).empty());
  c.accept(false, t0);
  EXPECT_TRUE(c.feed({}, t0).empty());
  EXPECT_EQ(c.take_output(), (bytes{0x20, 0x02, 0x00, 0x00, 0xD0, 0x00}));
}

TEST(MqttConnection, FloodBeforeConnackCloses) {
  connection_limits limits;
  limits.max_packet_size = 100;
  connection c(limits, t0);
  c.feed(wire({make_connect()}), t0);
  auto evs = c.feed(bytes(201, 0xC0), t0);
  single_close(evs);
  EXPECT_EQ(c.state(), connection_state::closed);
}

TEST(MqttConnection, SubscribeThenGrantWritesSuback) {
  auto c = connected();
  subscribe_packet s{7, {{"devices/dev1/messages/devicebound/#", 1}, {"$iothub/methods/POST/#", 0}}};
  auto evs = c.feed(wire({s}), t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(as<subscribe_event>(evs[0]).packet, s);
  EXPECT_FALSE(c.has_output());
  c.grant(7, {1, 0});
  EXPECT_EQ(c.take_output(), (bytes{0x90, 0x04, 0x00, 0x07, 0x01, 0x00}));
}

TEST(MqttConnection, TooManyFiltersInOneSubscribeCloses) {
  connection_limits limits;
  limits.max_subscriptions_per_packet = 2;
  auto c = connected(limits);
  EXPECT_EQ(c.feed(wire({subscribe_packet{1, {{"a", 0}, {"b", 0}}}}), t0).size(), 1u);
  single_close(c.feed(wire({subscribe_packet{2, {{"a", 0}, {"b", 0}, {"c", 0}}}}), t0));
}

TEST(MqttConnection, UnsubscribeWritesUnsubackImmediately) {
  auto c = connected();
  unsubscribe_packet u{0x0102, {"devices/dev1/messages/devicebound/#"}};
  auto evs = c.feed(wire({u}), t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(as<unsubscribe_event>(evs[0]).packet, u);
  EXPECT_EQ(c.take_output(), (bytes{0xB0, 0x02, 0x01, 0x02}));
}

TEST(MqttConnection, PubackFromClientIsAnEvent) {
  auto c = connected();
  auto evs = c.feed(bytes{0x40, 0x02, 0x00, 0x2A}, t0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(as<puback_event>(evs[0]).packet_id, 0x2A);
}

TEST(MqttConnection, OutboundPublishEncoding) {
  auto c = connected();
  c.publish("devices/dev1/messages/devicebound/", to_bytes("hi"), 1, 0x0304, true);
  const std::string topic = "devices/dev1/messages/devicebound/";
  bytes expected{0x3A, static_cast<std::uint8_t>(2 + topic.size() + 2 + 2), 0x00,
                 static_cast<std::uint8_t>(topic.size())};
  expected.insert(expected.end(), topic.begin(), topic.end());
  expected.insert(expected.end(), {0x03, 0x04, 'h', 'i'});
  const bytes out = c.take_output();
  EXPECT_EQ(out, expected);
  EXPECT_EQ(out, encode(publish_packet{topic, to_bytes("hi"), 1, false, true, 0x0304}));
}

TEST(MqttConnection, OutboundLargePublishMatchesEncoder) {
  auto c = connected();
  const bytes payload(200000, 0x5A);
  c.publish("t", payload, 0, 0, false);
  c.publish("u", payload, 1, 9, false);
  bytes expected = encode(publish_packet{"t", payload, 0, false, false, 0});
  encode(publish_packet{"u", payload, 1, false, false, 9}, expected);
  EXPECT_EQ(c.take_output(), expected);
}

TEST(MqttConnection, InboundInflightLimit) {
  connection_limits limits;
  limits.max_inbound_inflight = 2;
  auto c = connected(limits);
  auto pub = [](std::uint16_t id) { return wire({publish_packet{"t", {}, 1, false, false, id}}); };
  EXPECT_EQ(c.feed(pub(1), t0).size(), 1u);
  EXPECT_EQ(c.feed(pub(2), t0).size(), 1u);
  c.acknowledge(1);
  EXPECT_EQ(c.feed(pub(3), t0).size(), 1u);
  // QoS 0 does not count.
  EXPECT_EQ(c.feed(wire({publish_packet{"t", {}, 0, false, false, 0}}), t0).size(), 1u);
  auto evs = c.feed(pub(4), t0);
  EXPECT_NE(single_close(evs).reason.find("unacknowledged"), std::string::npos);
}

TEST(MqttConnection, NothingIsWrittenBeforeAccept) {
  connection c({}, t0);
  c.feed(wire({make_connect()}), t0);
  c.publish("t", {}, 0, 0, false);
  c.acknowledge(1);
  c.grant(1, {0});
  EXPECT_FALSE(c.has_output());
}

TEST(MqttConnection, FeedEmptyBeforeAnything) {
  connection c({}, t0);
  EXPECT_TRUE(c.feed({}, t0).empty());
  EXPECT_EQ(c.state(), connection_state::awaiting_connect);
}

}  // namespace
}  // namespace fleethub::proto::mqtt
