#include "fleethub/net/http_session.hpp"

#include <boost/asio/post.hpp>

#include <array>
#include <mutex>

#include "fleethub/core/json.hpp"
#include "fleethub/proto/http/websocket.hpp"

namespace fleethub::net {

namespace asio = boost::asio;

namespace {

// IoT Hub's error envelope for refusals the parser makes before a request reaches the API.
proto::http::response error_response(int status, const std::string& message) {
  const char* name = status == 413 ? "MessageTooLarge" : status == 408 ? "RequestTimeout" : "ArgumentInvalid";
  int code = status == 413 ? 413001 : status == 400 ? 400004 : status * 1000;
  json::object o;
  o.set("errorCode", json::value(code));
  o.set("message", json::value(message));
  o.set("info", json::value(json::object{}));
  proto::http::response r;
  r.status = status;
  r.set("Content-Type", "application/json; charset=utf-8");
  r.set("iothub-errorcode", name);
  r.body = json::serialize(json::value(std::move(o)));
  return r;
}

std::string_view path_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

}  // namespace

http_session::http_session(tcp::socket socket, SSL_CTX* ssl_ctx, tick_list& ticks, commit_queue& commits,
                           hub::engine& engine, hub::http_api& api, const logger& log,
                           std::shared_ptr<const http_session_options> opts, std::string remote)
    : stream_pump(ssl_ctx ? transport(std::move(socket), ssl_ctx) : transport(std::move(socket))),
      ticks_(ticks),
      commits_(commits),
      engine_(engine),
      api_(api),
      log_(log),
      opts_(std::move(opts)),
      remote_(std::move(remote)),
      parser_(opts_->limits),
      last_activity_(std::chrono::steady_clock::now()) {}

http_session::~http_session() { ticks_.remove(this); }

void http_session::start() {
  ticks_.add(this);
  start_io();
}

bool http_session::can_read() const {
  // Backpressure: while a request is answered, read ahead at most one more maximal request.
  return !closing_ && !upgrading_ &&
         !(busy_ && buffered() > opts_->limits.max_body_bytes + opts_->limits.max_header_bytes);
}

void http_session::on_data(bytes_view data) {
  last_activity_ = std::chrono::steady_clock::now();
  if (in_off_ == in_.size()) {
    in_.clear();
    in_off_ = 0;
  }
  in_.insert(in_.end(), data.begin(), data.end());
  process_input();
}

std::string http_session::peer_closed_reason() const {
  return parser_.in_progress() ? "connection closed in the middle of a request" : "connection closed by client";
}

void http_session::process_input() {
  using kind = proto::http::request_parser::outcome::kind;
  while (!busy_ && !closing_ && !finished_ && buffered() > 0) {
    auto out = parser_.feed(bytes_view(in_.data() + in_off_, buffered()));
    in_off_ += out.consumed;
    if (out.what == kind::need_more) {
      if (!continued_ && parser_.expects_continue()) {
        continued_ = true;
        static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
        writing_.insert(writing_.end(), cont.begin(), cont.end());
        pump_write();
      }
      break;
    }
    if (out.what == kind::error) {
      log_.log(log_level::info, "https", "bad_request", out.message,
               {{"remote", remote_}, {"status", std::to_string(out.status)}});
      refuse(out.status, out.message);
      return;
    }
    dispatch(parser_.take());
  }
  if (in_off_ == in_.size()) {
    in_.clear();
    in_off_ = 0;
  }
}

void http_session::dispatch(proto::http::request req) {
  ++requests_;
  continued_ = false;
  busy_ = true;
  keep_alive_ = req.keep_alive;
  head_ = req.method == "HEAD";
  http10_ = req.version == 10;
  if (proto::http::iequals(path_of(req.target), opts_->websocket_path) ||
      proto::http::iequals(path_of(req.target), opts_->websocket_path + "/"))
    return upgrade(req);
  if (opts_->workers && hub::http_api::may_block(req)) {
    // The answer comes back through the commit queue like any off-thread answer. The closures keep the
    // session alive, and the last of them runs on this io thread, so the session is never destroyed on a
    // worker.
    asio::post(*opts_->workers, [self = shared_from_this(), req = std::move(req)]() mutable {
      self->api_.handle(req, self->remote_, [self](proto::http::response r) { answer_later(self, std::move(r)); });
    });
    return;
  }
  // The API may answer inside handle() (most routes) or later from another thread (commits, method
  // answers). A synchronous answer is applied after handle() returns, so respond() never re-enters.
  struct slot {
    std::mutex mu;
    bool in_call = true;
    std::optional<proto::http::response> early;
  };
  auto st = std::make_shared<slot>();
  api_.handle(req, remote_, [st, self = shared_from_this()](proto::http::response r) {
    {
      std::lock_guard lk(st->mu);
      if (st->in_call) {
        st->early = std::move(r);
        return;
      }
    }
    answer_later(self, std::move(r));
  });
  std::optional<proto::http::response> early;
  {
    std::lock_guard lk(st->mu);
    st->in_call = false;
    early = std::move(st->early);
  }
  if (early) respond(std::move(*early));
}

void http_session::answer_later(const std::shared_ptr<http_session>& self, proto::http::response r) {
  // Answers of one group commit (or one batch of method answers) cost the io thread one wake-up.
  self->commits_.push_task([self, r = std::make_shared<proto::http::response>(std::move(r))]() mutable {
    self->respond(std::move(*r));
  });
}

void http_session::upgrade(const proto::http::request& req) {
  if (!req.is_websocket_upgrade())
    return refuse(400, "MQTT over WebSockets: " + opts_->websocket_path + " needs a WebSocket upgrade request");
  auto hs = proto::http::websocket_handshake(req, "mqtt");
  if (!hs) {
    // RFC 6455 §4.4: an unsupported version is answered 426 with the version the server speaks.
    const std::string* v = req.find("Sec-WebSocket-Version");
    if (v && *v != "13") return refuse(426, hs.err().message, {{"Sec-WebSocket-Version", "13"}});
    return refuse(400, hs.err().message);
  }
  upgrading_ = true;
  auto wire = proto::http::serialize(*hs, true);
  writing_.insert(writing_.end(), wire.begin(), wire.end());
  pump_write();  // hand_over() runs once the 101 is written
}

void http_session::respond(proto::http::response r) {
  if (finished_ || closing_) return;
  busy_ = false;
  last_activity_ = std::chrono::steady_clock::now();
  bool keep = keep_alive_;
  if (keep && http10_) r.set("Connection", "keep-alive");
  auto wire = proto::http::serialize(r, keep, head_);
  writing_.insert(writing_.end(), wire.begin(), wire.end());
  if (!keep) {
    close("Connection: close");
    return;
  }
  pump_write();
  process_input();
  if (!busy_) pump_read();  // reading may have paused for backpressure
}

void http_session::refuse(int status, const std::string& message, std::vector<proto::http::header> extra) {
  busy_ = false;
  auto r = error_response(status, message);
  for (auto& h : extra) r.set(std::move(h.name), std::move(h.value));
  auto wire = proto::http::serialize(r, false);
  writing_.insert(writing_.end(), wire.begin(), wire.end());
  close("refused with " + std::to_string(status) + ": " + message);
}

void http_session::pump_write() {
  if (finished_ || write_waiting_ || write_wants_read_) return;
  if (!write_out()) return;
  bytes().swap(writing_);
  write_off_ = 0;
  if (upgrading_) return hand_over();
  if (closing_) finish();
}

void http_session::hand_over() {
  // The transport (socket and TLS session) moves to an MQTT session on this same thread; this object
  // only unregisters. Bytes the client sent after the upgrade request are MQTT-over-WebSocket already.
  finished_ = true;
  ticks_.remove(this);
  bytes rest(in_.begin() + static_cast<std::ptrdiff_t>(in_off_), in_.end());
  in_.clear();
  in_off_ = 0;
  auto ms = std::make_shared<mqtt_session>(std::move(t_), ticks_, commits_, engine_, log_, opts_->mqtt, remote_, true);
  log_.log(log_level::debug, "https", "websocket_upgrade", "MQTT over WebSockets", {{"remote", remote_}});
  ms->start_upgraded(std::move(rest));
}

void http_session::close(std::string reason) {
  if (closing_) return;
  closing_ = true;
  close_reason_ = std::move(reason);
  close_by_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  pump_write();
}

void http_session::finish() {
  if (finished_) return;
  closing_ = true;
  finished_ = true;
  ticks_.remove(this);
  t_.shutdown();
  log_.log(log_level::debug, "https", "closed", close_reason_,
           {{"remote", remote_}, {"requests", std::to_string(requests_)}});
}

void http_session::on_tick(steady_time now) {
  if (closing_tick(now)) return;
  if (busy_ || upgrading_ || handshaking_) {
    // A TLS handshake that never completes is bounded like a slow request.
    if (handshaking_ && now - last_activity_ > opts_->request_timeout) {
      close_reason_ = "TLS handshake timed out";
      finish();
    }
    return;
  }
  if (parser_.in_progress() || buffered() > 0) {
    if (now - last_activity_ > opts_->request_timeout) refuse(408, "the request was not completed in time");
    return;
  }
  if (now - last_activity_ > opts_->idle_timeout) close("idle keep-alive connection");
}

}  // namespace fleethub::net
