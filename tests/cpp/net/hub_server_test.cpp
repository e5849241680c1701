// The whole C++ stack over real loopback sockets (plain and TLS): hub_server + net + hub + store + proto.
// Byte-level client: packets come from the proto codec, so this checks wiring, not the codec.
#include "fleethub/app/hub_server.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <thread>

#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/sas.hpp"
#include "fleethub/proto/mqtt/codec.hpp"

namespace fleethub {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace proto::mqtt;

class HubServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fleethub-server-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    app::hub_config c;
    c.data_dir = dir_.string();
    c.mqtt_tls_port = 0;
    c.mqtt_plain_port = 0;
    c.https_port = 0;  // tests run in parallel: never the fixed 443
    c.bind_address = "127.0.0.1";
    c.sink = [](log_record&&) {};
    auto s = app::hub_server::open(c);
    ASSERT_TRUE(s) << s.err().message;
    server_ = std::move(*s);
    auto d = server_->registry().create({.device_id = "dev1"});
    ASSERT_TRUE(d);
    key_ = d->primary_key;
    ASSERT_TRUE(server_->start());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  bytes connect_bytes(const std::string& key) {
    connect_packet c;
    c.client_id = "dev1";
    c.clean_session = false;
    c.keep_alive = 60;
    c.username = "localhost/dev1/?api-version=2021-04-12";
    c.password = to_bytes(hub::make_sas_token("localhost/devices/dev1", key, 4102444800));
    return encode(c);
  }

  template <class Stream>
  packet read_packet(Stream& s) {
    decoder d;
    std::uint8_t b;
    for (;;) {
      asio::read(s, asio::buffer(&b, 1));
      d.feed(bytes_view(&b, 1));
      if (auto p = d.next()) return *p;
      if (d.failed()) throw std::runtime_error("bad packet from server");
    }
  }

  template <class Stream>
  void exchange(Stream& s) {
    asio::write(s, asio::buffer(connect_bytes(key_)));
    auto ack = std::get<connack_packet>(read_packet(s));
    EXPECT_EQ(ack.code, connack_code::accepted);
    publish_packet p;
    p.topic = "devices/dev1/messages/events/%24.mid=m1&k=v";
    p.payload = to_bytes("{\"t\":1}");
    p.qos = 1;
    p.packet_id = 7;
    asio::write(s, asio::buffer(encode(p)));
    EXPECT_EQ(std::get<puback_packet>(read_packet(s)).packet_id, 7);
    // The PUBACK came after the commit: the message is readable now.
    EXPECT_TRUE(log_has_message("m1"));
  }

  // Whether the event log holds a message with this message id.
  bool log_has_message(std::string_view message_id) {
    for (std::uint32_t part = 0; part < server_->store().partition_count(); ++part) {
      auto rows = server_->store().read_events(part, 0, 100);
      if (!rows) return false;
      for (auto& e : *rows) {
        auto m = decode_message(e.record);
        if (!m) continue;
        auto* id = find_property(m->system_properties, sysprop::message_id);
        if (id && *id == message_id) return true;
      }
    }
    return false;
  }

  std::filesystem::path dir_;
  std::unique_ptr<app::hub_server> server_;
  std::string key_;
};

TEST_F(HubServerTest, PlainConnectPublishPuback) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server_->ports().mqtt_plain));
  exchange(s);
}

TEST_F(HubServerTest, TlsWithTheHubsOwnCa) {
  asio::io_context io;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(server_->ca_cert_path());
  ctx.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<tcp::socket> s(io, ctx);
  SSL_set_tlsext_host_name(s.native_handle(), "localhost");
  SSL_set1_host(s.native_handle(), "localhost");
  s.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server_->ports().mqtt_tls));
  s.handshake(asio::ssl::stream_base::client);
  exchange(s);
}

TEST_F(HubServerTest, BadKeyGetsConnack5AndTheServerKeepsServing) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server_->ports().mqtt_plain));
  asio::write(s, asio::buffer(connect_bytes("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")));
  EXPECT_EQ(std::get<connack_packet>(read_packet(s)).code, connack_code::not_authorized);
  tcp::socket s2(io);
  s2.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server_->ports().mqtt_plain));
  exchange(s2);
}

TEST_F(HubServerTest, StopAndStartAgain) {
  server_->stop();
  ASSERT_TRUE(server_->start());
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server_->ports().mqtt_plain));
  exchange(s);
}

}  // namespace
}  // namespace fleethub

namespace fleethub {
namespace {

// A TLS client stream to the hub's HTTPS port.
struct https_client {
  asio::io_context io;
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  std::unique_ptr<asio::ssl::stream<tcp::socket>> s;
  https_client(app::hub_server& server) {
    ctx.load_verify_file(server.ca_cert_path());
    ctx.set_verify_mode(asio::ssl::verify_peer);
    s = std::make_unique<asio::ssl::stream<tcp::socket>>(io, ctx);
    SSL_set_tlsext_host_name(s->native_handle(), "localhost");
    SSL_set1_host(s->native_handle(), "localhost");
    s->next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), *server.ports().https));
    s->handshake(asio::ssl::stream_base::client);
  }
  void send(std::string_view text) { asio::write(*s, asio::buffer(text.data(), text.size())); }
  // Reads until `responses` HTTP responses (by their Content-Length) are complete.
  std::string read_responses(int responses) {
    std::string data;
    auto complete = [&] {
      std::size_t pos = 0;
      for (int i = 0; i < responses; ++i) {
        auto end = data.find("\r\n\r\n", pos);
        if (end == std::string::npos) return false;
        std::size_t len = 0;
        auto cl = data.find("Content-Length: ", pos);
        if (cl != std::string::npos && cl < end) len = std::stoul(data.substr(cl + 16));
        pos = end + 4 + len;
        if (pos > data.size()) return false;
      }
      return true;
    };
    char buf[4096];
    while (!complete()) {
      auto n = s->read_some(asio::buffer(buf));
      data.append(buf, n);
    }
    return data;
  }
  // MQTT over WebSockets: one masked binary frame per call.
  void ws_send(const bytes& payload) {
    bytes f{0x82};
    if (payload.size() < 126) {
      f.push_back(static_cast<std::uint8_t>(0x80 | payload.size()));
    } else {
      f.push_back(0x80 | 126);
      f.push_back(static_cast<std::uint8_t>(payload.size() >> 8));
      f.push_back(static_cast<std::uint8_t>(payload.size()));
    }
    const std::uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
    f.insert(f.end(), mask, mask + 4);
    for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(payload[i] ^ mask[i % 4]);
    asio::write(*s, asio::buffer(f));
  }
  // The next MQTT packet from the server's (unmasked) binary frames.
  packet ws_read_packet() {
    for (;;) {
      if (auto p = dec.next()) return *p;
      std::uint8_t h[2];
      asio::read(*s, asio::buffer(h, 2));
      EXPECT_EQ(h[0], 0x82);  // FIN + binary
      EXPECT_EQ(h[1] & 0x80, 0);  // server frames are not masked
      std::size_t len = h[1] & 0x7f;
      if (len == 126) {
        std::uint8_t e[2];
        asio::read(*s, asio::buffer(e, 2));
        len = (std::size_t(e[0]) << 8) | e[1];
      }
      bytes payload(len);
      asio::read(*s, asio::buffer(payload));
      dec.feed(payload);
    }
  }
  decoder dec;
};

TEST_F(HubServerTest, HttpsPipelinedRequestsAndDeviceTelemetry) {
  https_client c(*server_);
  auto owner = server_->registry().get_policy("iothubowner");
  ASSERT_TRUE(owner);
  auto token = hub::make_sas_token("localhost", owner->primary_key, 4102444800, "iothubowner");
  auto dev_token = hub::make_sas_token("localhost/devices/dev1", key_, 4102444800);
  // Four requests in one write: a registry read, a query (run on a REST worker), a miss, and durable
  // telemetry; answered in order.
  const std::string query = R"({"query":"SELECT deviceId FROM devices"})";
  c.send("GET /devices/dev1?api-version=2021-04-12 HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + token +
         "\r\n\r\nPOST /devices/query HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + token +
         "\r\nContent-Length: " + std::to_string(query.size()) + "\r\n\r\n" + query +
         "GET /devices/nope HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + token +
         "\r\n\r\nPOST /devices/dev1/messages/events?api-version=2020-03-13 HTTP/1.1\r\nHost: localhost\r\n"
         "Authorization: " + dev_token + "\r\niothub-messageid: via-https\r\nContent-Length: 5\r\n\r\nhello");
  auto data = c.read_responses(4);
  auto first = data.find("HTTP/1.1 200"), second = data.find("HTTP/1.1 404"), third = data.find("HTTP/1.1 204");
  auto rows = data.find(R"([{"deviceId":"dev1"}])");
  ASSERT_NE(rows, std::string::npos) << data;
  EXPECT_LT(first, rows);
  EXPECT_LT(rows, second);
  ASSERT_NE(first, std::string::npos) << data;
  ASSERT_NE(second, std::string::npos) << data;
  ASSERT_NE(third, std::string::npos) << data;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);
  EXPECT_NE(data.find("\"deviceId\":\"dev1\""), std::string::npos);
  // 204 came after the commit: the message is in the log.
  EXPECT_TRUE(log_has_message("via-https"));
}

TEST_F(HubServerTest, MqttOverWebSocketsConnectPublishPuback) {
  https_client c(*server_);
  c.send("GET /$iothub/websocket HTTP/1.1\r\nHost: localhost:443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
  std::string head;
  char ch;
  while (head.find("\r\n\r\n") == std::string::npos) {
    asio::read(*c.s, asio::buffer(&ch, 1));
    head.push_back(ch);
  }
  ASSERT_EQ(head.rfind("HTTP/1.1 101", 0), 0u) << head;
  EXPECT_NE(head.find("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos);
  c.ws_send(connect_bytes(key_));
  EXPECT_EQ(std::get<connack_packet>(c.ws_read_packet()).code, connack_code::accepted);
  publish_packet p;
  p.topic = "devices/dev1/messages/events/";
  p.payload = to_bytes("over ws");
  p.qos = 1;
  p.packet_id = 9;
  auto wire = encode(p);
  // Split one packet over two frames: WebSocket frames carry a byte stream, not packets.
  c.ws_send(bytes(wire.begin(), wire.begin() + 3));
  c.ws_send(bytes(wire.begin() + 3, wire.end()));
  EXPECT_EQ(std::get<puback_packet>(c.ws_read_packet()).packet_id, 9);
  EXPECT_TRUE(server_->engine().connection_state("dev1").connected);
}

}  // namespace
}  // namespace fleethub
