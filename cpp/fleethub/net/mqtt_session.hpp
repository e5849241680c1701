// The Asio driver for one MQTT connection: reads bytes, feeds the Sans-I/O proto::mqtt::connection, applies
// its events through the hub engine, and writes what the machine produced (one write per batch of packets).
// Who creates it: mqtt_listener, one per accepted socket. Lives on one io_context thread for its whole life;
// the engine reaches it through connection_link, whose methods post to that thread.
// Memory: idle plain-TCP connections hold no read buffer (readiness wait, then a read into a per-thread buffer).
#pragma once
#include <utility>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "fleethub/core/log.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/proto/mqtt/connection.hpp"

namespace fleethub::net {

using tcp = boost::asio::ip::tcp;
using tls_stream = boost::asio::ssl::stream<tcp::socket>;

struct mqtt_session_options {
  proto::mqtt::connection_limits limits;
  std::chrono::seconds handshake_timeout{30};
};

template <class Stream>
class mqtt_session final : public hub::connection_link, public std::enable_shared_from_this<mqtt_session<Stream>> {
 public:
  mqtt_session(Stream stream, hub::engine& engine, const logger& log, const mqtt_session_options& opts,
               std::string remote);
  ~mqtt_session() override;
  void start();

  // connection_link
  void kick(std::string reason) override;
  void deliver(hub::outbound_message m) override;

 private:
  void do_handshake();
  void do_read();
  void on_bytes(bytes_view data);
  void handle(proto::mqtt::event& ev);
  void handle_connect(proto::mqtt::connect_event& ev);
  void flush_telemetry();
  void flush();
  void on_written(const boost::system::error_code& ec);
  void close(std::string reason, bool graceful = false);
  void finish();
  void arm_timer();
  void on_timer();
  tcp::socket& socket();

  Stream stream_;
  boost::asio::steady_timer timer_;
  hub::engine& engine_;
  logger log_;
  proto::mqtt::connection conn_;
  std::string remote_;
  std::unique_ptr<hub::client_identity> identity_;  // set once authenticated
  std::vector<hub::publish_telemetry> pending_telemetry_;
  std::vector<std::uint16_t> pending_acks_;
  bytes writing_;
  std::string close_reason_;
  steady_time armed_for_{};
  std::int64_t token_expiry_s_ = 0;
  bool writing_active_ = false;
  bool closing_ = false;
  bool finished_ = false;
  bool attached_ = false;
  bool graceful_ = false;
  bool reading_ = false;
  int inflight_batches_ = 0;  // telemetry batches submitted and not yet committed
};

extern template class mqtt_session<tcp::socket>;
extern template class mqtt_session<tls_stream>;

}  // namespace fleethub::net
