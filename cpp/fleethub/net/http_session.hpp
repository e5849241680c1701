// The Asio driver for one HTTPS connection on the 443 listener: TLS, then the Sans-I/O request parser, one
// request at a time handed to the REST API (hub::http_api), responses written in request order (pipelined
// requests wait in the input buffer). A GET on /$iothub/websocket with a WebSocket upgrade for subprotocol
// "mqtt" answers 101 and hands the transport to an mqtt_session that speaks MQTT inside WebSocket frames.
// Who creates it: the HTTPS listener, one per accepted socket. Lives on one io_context thread; responses
// computed on other threads (store commits, method answers) are posted back to it. Deadlines (idle
// keep-alive, slow requests) are checked by the thread's tick_list.
#pragma once
#include <utility>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "fleethub/core/log.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/hub/http_api.hpp"
#include "fleethub/net/commit_queue.hpp"
#include "fleethub/net/mqtt_session.hpp"
#include "fleethub/net/stream_pump.hpp"
#include "fleethub/net/tick_list.hpp"
#include "fleethub/net/transport.hpp"
#include "fleethub/proto/http/request_parser.hpp"

namespace fleethub::net {

struct http_session_options {
  proto::http::parser_limits limits;
  std::chrono::seconds idle_timeout{120};    // a keep-alive connection with no request in progress
  std::chrono::seconds request_timeout{30};  // from a request's first byte to its last (slow senders)
  std::string websocket_path = "/$iothub/websocket";
  mqtt_session_options mqtt;                 // for connections upgraded to MQTT over WebSockets
  // Requests that wait on their thread (hub::http_api::may_block: registry writes, queries, ...) run here,
  // so an io thread never stalls its other connections on a commit or a scan. Null: run them inline.
  boost::asio::thread_pool* workers = nullptr;
};

class http_session final : public stream_pump<http_session>,
                           public ticking,
                           public std::enable_shared_from_this<http_session> {
 public:
  http_session(tcp::socket socket, SSL_CTX* ssl_ctx, tick_list& ticks, commit_queue& commits, hub::engine& engine,
               hub::http_api& api, const logger& log, std::shared_ptr<const http_session_options> opts,
               std::string remote);
  ~http_session() override;
  void start();
  void on_tick(steady_time now) override;

 private:
  friend class stream_pump<http_session>;
  static const char* component() { return "https"; }
  bool can_read() const;
  void on_data(bytes_view data);
  bool buffers_idle() const { return write_off_ == writing_.size() && in_off_ == in_.size(); }
  std::string peer_closed_reason() const;
  void pump_write();
  void process_input();
  void dispatch(proto::http::request req);
  void upgrade(const proto::http::request& req);
  void respond(proto::http::response r);
  // An answer computed on another thread (a worker, a commit, a method answer) goes back to the session's
  // io thread through its commit queue; the queued closure keeps the session alive until it runs there.
  static void answer_later(const std::shared_ptr<http_session>& self, proto::http::response r);
  void refuse(int status, const std::string& message, std::vector<proto::http::header> extra = {});  // answer, close
  void hand_over();
  void close(std::string reason);
  void finish();
  std::size_t buffered() const { return in_.size() - in_off_; }

  tick_list& ticks_;
  commit_queue& commits_;
  hub::engine& engine_;
  hub::http_api& api_;
  logger log_;
  std::shared_ptr<const http_session_options> opts_;
  std::string remote_;
  proto::http::request_parser parser_;
  bytes in_;                 // read and not yet parsed (pipelined requests wait here while one is answered)
  std::size_t in_off_ = 0;
  steady_time last_activity_;
  std::uint64_t requests_ = 0;
  bool busy_ = false;        // a request is being answered
  bool keep_alive_ = true;   // of the request being answered
  bool head_ = false;
  bool http10_ = false;
  bool continued_ = false;   // "100 Continue" sent for the request being read      // an HTTP/1.0 client keeps the connection only when told "keep-alive"
  bool upgrading_ = false;   // 101 queued: hand the transport over once it is written
};

}  // namespace fleethub::net
