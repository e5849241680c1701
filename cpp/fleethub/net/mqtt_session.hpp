// The Asio driver for one MQTT connection: waits for readiness, moves bytes through the transport (plain or
// TLS), feeds the Sans-I/O proto::mqtt::connection, applies its events through the hub engine, and writes
// what the machine produced (one write per batch of packets).
// Who creates it: mqtt_listener, one per accepted socket. Lives on one io_context thread for its whole life;
// the engine reaches it through connection_link, whose methods post to that thread. Deadlines (connect
// timeout, keep-alive, SAS expiry) are checked by the thread's tick_list, not a timer per connection.
// Memory: an idle connection holds no read or write buffer (reads go into a per-thread buffer).
#pragma once
#include <utility>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "fleethub/core/log.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/net/commit_queue.hpp"
#include "fleethub/net/stream_pump.hpp"
#include "fleethub/net/tick_list.hpp"
#include "fleethub/net/transport.hpp"
#include "fleethub/proto/http/websocket.hpp"
#include "fleethub/proto/mqtt/connection.hpp"

namespace fleethub::net {

struct mqtt_session_options {
  proto::mqtt::connection_limits limits;
};

class mqtt_session final : public hub::connection_link,
                           public stream_pump<mqtt_session>,
                           public ticking,
                           public commit_listener,
                           public std::enable_shared_from_this<mqtt_session> {
 public:
  // `ssl_ctx` null: plain TCP.
  mqtt_session(tcp::socket socket, SSL_CTX* ssl_ctx, tick_list& ticks, commit_queue& commits, hub::engine& engine,
               const logger& log,
               const mqtt_session_options& opts, std::string remote);
  // An HTTPS connection that completed a WebSocket upgrade (/$iothub/websocket, subprotocol mqtt): the MQTT
  // byte stream then travels in WebSocket frames over the same transport.
  mqtt_session(transport t, tick_list& ticks, commit_queue& commits, hub::engine& engine, const logger& log,
               const mqtt_session_options& opts, std::string remote, bool websocket);
  ~mqtt_session() override;
  void start();
  // Starts a session whose transport is already connected (and its TLS handshake done): `pending` holds
  // bytes read past the HTTP upgrade request.
  void start_upgraded(bytes pending);

  // connection_link (any thread)
  void kick(std::string reason) override;
  void deliver(hub::outbound_message m) override;
  // ticking (own thread)
  void on_tick(steady_time now) override;
  // commit_listener (own thread): a telemetry batch is durable (PUBACK it) or failed (close, no PUBACK).
  void on_committed(std::vector<std::uint16_t>& acks, bool ok, const std::string& error) override;

 private:
  friend class stream_pump<mqtt_session>;
  static const char* component() { return "mqtt"; }
  bool can_read() const { return !closing_; }
  void on_data(bytes_view data) { on_bytes(data); }
  bool buffers_idle() const { return write_off_ == writing_.size(); }
  static const char* peer_closed_reason() { return "connection closed by client"; }
  void pump_write();
  void on_bytes(bytes_view data);
  void on_mqtt_bytes(bytes_view data);
  void handle(proto::mqtt::event& ev);
  void handle_connect(proto::mqtt::connect_event& ev);
  void flush_telemetry();
  void flush_pubacks();
  void close(std::string reason, bool graceful = false);
  void publish_will();
  void finish();

  tick_list& ticks_;
  commit_queue& commits_;
  hub::engine& engine_;
  logger log_;
  proto::mqtt::connection conn_;
  std::string remote_;
  std::unique_ptr<hub::client_identity> identity_;  // set once authenticated
  std::unique_ptr<proto::mqtt::will_message> will_;  // published as telemetry if the connection drops
  std::unique_ptr<proto::http::ws_decoder> ws_;  // MQTT over WebSockets: unwraps the client's frames
  bytes ws_control_;  // WebSocket control frames (pong, close) waiting to be written
  bool ws_close_sent_ = false;
  int inflight_batches_ = 0;  // telemetry batches submitted and not yet committed
  bool attached_ = false;
  bool graceful_ = false;
};

}  // namespace fleethub::net
