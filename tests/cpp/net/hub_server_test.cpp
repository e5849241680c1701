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
    bool found = false;
    for (std::uint32_t part = 0; part < server_->store().partition_count(); ++part) {
      auto rows = server_->store().read_events(part, 0, 10);
      ASSERT_TRUE(rows);
      for (auto& e : *rows) {
        auto m = decode_message(e.record);
        ASSERT_TRUE(m);
        found |= *find_property(m->system_properties, sysprop::message_id) == "m1";
      }
    }
    EXPECT_TRUE(found);
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
