#include "fleethub/net/mqtt_session.hpp"

#include "fleethub/net/telemetry_stage.hpp"

#include <boost/asio/post.hpp>
#include <openssl/x509.h>

#include <array>

namespace fleethub::net {

namespace asio = boost::asio;

namespace {

// Telemetry and acknowledgements collected while one read is processed; flushed before on_bytes returns, so
// per-thread scratch is enough and idle connections carry no vectors.
struct read_scratch {
  std::vector<hub::publish_telemetry> telemetry;
  std::vector<std::uint16_t> acks;
  std::vector<std::uint16_t> pubacks;  // the client's PUBACKs of this read, handed to the engine at once
  std::vector<proto::mqtt::event> events;
};
read_scratch& scratch() {
  thread_local read_scratch s;
  return s;
}

std::string hex_upper(const unsigned char* d, unsigned n) {
  static const char* digits = "0123456789ABCDEF";
  std::string s;
  for (unsigned i = 0; i < n; ++i) {
    s.push_back(digits[d[i] >> 4]);
    s.push_back(digits[d[i] & 15]);
  }
  return s;
}

}  // namespace

mqtt_session::mqtt_session(tcp::socket socket, SSL_CTX* ssl_ctx, tick_list& ticks, commit_queue& commits,
                           hub::engine& engine, const logger& log, const mqtt_session_options& opts,
                           std::string remote)
    : stream_pump(ssl_ctx ? transport(std::move(socket), ssl_ctx) : transport(std::move(socket))),
      ticks_(ticks),
      commits_(commits),
      engine_(engine),
      log_(log),
      conn_(opts.limits, std::chrono::steady_clock::now()),
      remote_(std::move(remote)) {}

mqtt_session::mqtt_session(transport t, tick_list& ticks, commit_queue& commits, hub::engine& engine,
                           const logger& log, const mqtt_session_options& opts, std::string remote, bool websocket)
    : stream_pump(std::move(t)),
      ticks_(ticks),
      commits_(commits),
      engine_(engine),
      log_(log),
      conn_(opts.limits, std::chrono::steady_clock::now()),
      remote_(std::move(remote)) {
  // A WebSocket message may carry a whole MQTT packet: allow the packet limit plus framing slack.
  if (websocket) ws_ = std::make_unique<proto::http::ws_decoder>(opts.limits.max_packet_size + 1024);
}

mqtt_session::~mqtt_session() { ticks_.remove(this); }

void mqtt_session::start_upgraded(bytes pending) {
  ticks_.add(this);
  if (!pending.empty()) on_bytes(pending);
  if (!closing_) wait_readable();
}

void mqtt_session::start() {
  ticks_.add(this);
  start_io();
}

void mqtt_session::pump_write() {
  if (finished_ || write_waiting_ || write_wants_read_) return;
  for (;;) {
    if (write_off_ == writing_.size()) {
      if (!conn_.has_output() && ws_control_.empty()) {
        bytes().swap(writing_);  // idle connections keep no write buffer
        write_off_ = 0;
        if (!handshaking_) t_.release_buffers();
        if (closing_) finish();
        return;
      }
      if (ws_) {
        // MQTT bytes go out as one binary frame per batch; control frames (pong, close) go first.
        writing_.clear();
        writing_.swap(ws_control_);
        if (conn_.has_output()) {
          auto out = conn_.take_output();
          // Nothing may follow a close frame (close() moved what was queued before it ahead of it).
          if (!ws_close_sent_) proto::http::ws_encode_to(writing_, proto::http::ws_opcode::binary, out);
        }
      } else {
        writing_ = conn_.take_output();
      }
      write_off_ = 0;
      if (writing_.empty()) continue;
    }
    if (!write_out()) return;
  }
}

void mqtt_session::on_bytes(bytes_view data) {
  if (!ws_) return on_mqtt_bytes(data);
  using kind = proto::http::ws_decoder::event::kind;
  while (!data.empty() && !closing_) {
    auto ev = ws_->feed(data);
    data = data.subspan(ev.consumed);
    switch (ev.what) {
      case kind::need_more: return;
      case kind::data: on_mqtt_bytes(ev.payload); break;
      case kind::ping:
        proto::http::ws_encode_to(ws_control_, proto::http::ws_opcode::pong, ev.payload);
        pump_write();
        break;
      case kind::pong: break;
      case kind::close:
        // Without an MQTT DISCONNECT first this is an abrupt end for MQTT (the Will is published).
        ws_close_sent_ = true;
        {
          auto f = proto::http::ws_close_frame(ev.close_code == 1005 ? 1000 : ev.close_code);
          ws_control_.insert(ws_control_.end(), f.begin(), f.end());
        }
        close("websocket closed by client");
        return;
      case kind::error:
        log_.log(log_level::warning, "mqtt", "websocket_error", ev.message, {{"remote", remote_}});
        ws_close_sent_ = true;
        {
          auto f = proto::http::ws_close_frame(ev.close_code, ev.message.substr(0, 100));
          ws_control_.insert(ws_control_.end(), f.begin(), f.end());
        }
        close("websocket protocol error: " + ev.message);
        return;
    }
  }
}

void mqtt_session::on_mqtt_bytes(bytes_view data) {
  auto& events = scratch().events;
  events.clear();
  conn_.feed(data, std::chrono::steady_clock::now(), events);
  // handle() may feed again (packets pipelined behind CONNECT): it uses its own vector, not this one.
  for (auto& ev : events) handle(ev);
  events.clear();
  flush_pubacks();
  flush_telemetry();
  pump_write();
}

void mqtt_session::handle(proto::mqtt::event& ev) {
  if (closing_) return;
  std::visit(
      [&](auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, proto::mqtt::connect_event>) {
          handle_connect(e);
        } else if constexpr (std::is_same_v<T, proto::mqtt::publish_event>) {
          const auto qos = e.packet.qos;
          const auto pid = e.packet.packet_id;
          auto outcome = engine_.on_publish(*identity_, std::move(e.packet), std::chrono::system_clock::now());
          auto& sc = scratch();
          if (auto* t = std::get_if<hub::publish_telemetry>(&outcome)) {
            sc.telemetry.push_back(std::move(*t));
            if (qos == 1) sc.acks.push_back(pid);
          } else if (auto* c = std::get_if<hub::publish_close>(&outcome)) {
            log_.log(log_level::warning, "mqtt", "publish_refused", c->reason,
                     {{"client_id", identity_->client_id}, {"remote", remote_}});
            close(c->reason);
          } else {
            // Acknowledged through the same ordered path, so PUBACKs keep the PUBLISH order (MQTT 4.6).
            if (qos == 1) sc.acks.push_back(pid);
            if (auto* ig = std::get_if<hub::publish_ignore>(&outcome))
              log_.log(log_level::debug, "mqtt", "publish_ignored", ig->reason, {{"client_id", identity_->client_id}});
          }
        } else if constexpr (std::is_same_v<T, proto::mqtt::subscribe_event>) {
          auto pid = e.packet.packet_id;
          auto ex = t_.socket().get_executor();
          engine_.subscribe(*identity_, e.packet.subscriptions,
                            [self = shared_from_this(), pid, ex](std::vector<std::uint8_t> codes) {
                              asio::post(ex, [self, pid, codes = std::move(codes)] {
                                if (self->finished_ || self->closing_) return;
                                self->conn_.grant(pid, codes);
                                self->pump_write();
                              });
                            });
        } else if constexpr (std::is_same_v<T, proto::mqtt::unsubscribe_event>) {
          engine_.unsubscribe(*identity_, e.packet.filters);
        } else if constexpr (std::is_same_v<T, proto::mqtt::puback_event>) {
          scratch().pubacks.push_back(e.packet_id);
        } else if constexpr (std::is_same_v<T, proto::mqtt::close_event>) {
          close(e.reason, e.graceful);
        }
      },
      ev);
}

void mqtt_session::handle_connect(proto::mqtt::connect_event& ev) {
  hub::connect_request req;
  req.client_id = ev.packet.client_id;
  req.username = ev.packet.username;
  if (ev.packet.password) req.password = std::string(as_string_view(*ev.packet.password));
  req.clean_session = ev.packet.clean_session;
  req.remote_address = remote_;
  req.transport = ws_ ? "mqtt-ws" : t_.tls() ? "mqtts" : "mqtt";
  if (t_.tls()) {
    if (X509* cert = SSL_get1_peer_certificate(t_.ssl())) {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned n = 0;
      if (X509_digest(cert, EVP_sha1(), md, &n)) req.client_cert_sha1 = hex_upper(md, n);
      if (X509_digest(cert, EVP_sha256(), md, &n)) req.client_cert_sha256 = hex_upper(md, n);
      X509_free(cert);
    }
  }
  auto decision = engine_.authenticate(req, std::chrono::system_clock::now());
  if (decision.code != proto::mqtt::connack_code::accepted) {
    log_.log(log_level::warning, "mqtt", "auth_refused", decision.reason,
             {{"client_id", req.client_id},
              {"remote", remote_},
              {"connack", std::to_string(static_cast<int>(decision.code))}});
    conn_.refuse(decision.code);
    close("authentication refused: " + decision.reason);
    return;
  }
  identity_ = std::make_unique<hub::client_identity>(std::move(decision.identity));
  if (ev.packet.will) will_ = std::make_unique<proto::mqtt::will_message>(std::move(*ev.packet.will));
  auto attached = engine_.attach(*identity_, ev.packet.clean_session, shared_from_this());
  attached_ = true;
  auto now = std::chrono::steady_clock::now();
  conn_.accept(attached.session_present, now);
  for (auto& m : attached.resend) conn_.publish(m.topic, m.payload, m.qos, m.packet_id, true);
  log_.log(log_level::info, "mqtt", "connected", "device connected",
           {{"client_id", identity_->client_id},
            {"remote", remote_},
            {"transport", req.transport},
            {"clean_session", ev.packet.clean_session ? "1" : "0"},
            {"session_present", attached.session_present ? "1" : "0"},
            {"keep_alive", std::to_string(conn_.keep_alive())}});
  // Packets pipelined behind CONNECT waited in the machine until now.
  auto more = conn_.feed({}, now);
  for (auto& e : more) handle(e);
}

void mqtt_session::flush_telemetry() {
  auto& sc = scratch();
  if (sc.telemetry.empty() && sc.acks.empty()) return;
  if (sc.telemetry.empty() && inflight_batches_ == 0) {
    for (auto pid : sc.acks) conn_.acknowledge(pid);
    sc.acks.clear();
    return;
  }
  store::commit_callback done;
  if (!sc.acks.empty()) {
    ++inflight_batches_;
    // Runs on the store's writer thread: hand back to this connection's thread, batched per thread.
    done = [self = shared_from_this(), acks = std::move(sc.acks)](const store::commit_result& r) mutable {
      self->commits_.push(self, std::move(acks), r.ok(), r.ok() ? std::string() : r.err.message);
    };
    sc.acks.clear();
  }
  telemetry_stage::here().add(engine_, t_.socket().get_executor(), sc.telemetry, std::move(done));
  sc.telemetry.clear();
}

void mqtt_session::on_committed(std::vector<std::uint16_t>& acks, bool ok, const std::string& error) {
  --inflight_batches_;
  if (finished_) return;
  if (!ok) {
    log_.log(log_level::error, "store", "append_failed", error,
             {{"client_id", identity_ ? identity_->client_id : ""}});
    // No PUBACK: the client keeps the messages and resends them after reconnecting.
    close("storage failure: " + error);
    return;
  }
  if (closing_) return;
  for (auto pid : acks) conn_.acknowledge(pid);
  pump_write();
}

void mqtt_session::flush_pubacks() {
  auto& acks = scratch().pubacks;
  if (acks.empty()) return;
  if (identity_) engine_.on_pubacks(*identity_, acks);
  acks.clear();
}

void mqtt_session::close(std::string reason, bool graceful) {
  if (closing_) return;
  flush_pubacks();  // PUBACKs read before the close still complete their messages (before detach releases)
  closing_ = true;
  graceful_ = graceful;
  close_reason_ = std::move(reason);
  close_by_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  if (ws_ && !ws_close_sent_) {
    // The MQTT output still queued (a CONNACK refusal, say) goes first, then the WebSocket close.
    if (conn_.has_output()) proto::http::ws_encode_to(ws_control_, proto::http::ws_opcode::binary, conn_.take_output());
    ws_close_sent_ = true;
    auto f = proto::http::ws_close_frame(1000);
    ws_control_.insert(ws_control_.end(), f.begin(), f.end());
  }
  pump_write();  // flush what is queued (a CONNACK refusal, say), then finish
}

void mqtt_session::finish() {
  if (finished_) return;
  closing_ = true;
  finished_ = true;
  ticks_.remove(this);
  t_.shutdown();
  if (attached_) {
    if (!graceful_) publish_will();
    engine_.detach(*identity_, this, close_reason_);
    log_.log(log_level::info, "mqtt", "disconnected", close_reason_,
             {{"client_id", identity_->client_id}, {"remote", remote_}, {"graceful", graceful_ ? "1" : "0"}});
  }
}

// IoT Hub turns a Will on the device's events topic into telemetry marked iothub-MessageType=Will when the
// connection ends without DISCONNECT; a Will anywhere else is dropped (wire-protocol.md §1.3).
void mqtt_session::publish_will() {
  if (!will_) return;
  proto::mqtt::publish_packet p;
  p.topic = std::move(will_->topic);
  p.payload = std::move(will_->payload);
  will_.reset();
  auto outcome = engine_.on_publish(*identity_, std::move(p), std::chrono::system_clock::now());
  auto* t = std::get_if<hub::publish_telemetry>(&outcome);
  if (!t) {
    log_.log(log_level::info, "mqtt", "will_dropped", "Will is not on the device's events topic",
             {{"client_id", identity_->client_id}});
    return;
  }
  t->msg.app_properties.push_back({"iothub-MessageType", "Will"});
  std::vector<hub::publish_telemetry> one;
  one.push_back(std::move(*t));
  engine_.ingest(std::move(one), {});
}

void mqtt_session::kick(std::string reason) {
  asio::post(t_.socket().get_executor(), [self = shared_from_this(), reason = std::move(reason)]() mutable {
    if (self->finished_) return;
    self->close(std::move(reason));
  });
}

void mqtt_session::deliver(hub::outbound_message m) {
  asio::post(t_.socket().get_executor(), [self = shared_from_this(), m = std::move(m)] {
    if (self->closing_ || self->finished_) return;
    self->conn_.publish(m.topic, m.payload, m.qos, m.packet_id, m.dup);
    self->pump_write();
  });
}

void mqtt_session::on_tick(steady_time now) {
  if (closing_tick(now)) return;
  if (identity_ && identity_->token_expiry_s > 0 &&
      std::chrono::system_clock::now() >= wall_time(std::chrono::seconds(identity_->token_expiry_s))) {
    log_.log(log_level::info, "mqtt", "token_expired", "SAS token expired; closing the connection",
             {{"client_id", identity_->client_id}});
    close("SAS token expired");
    return;
  }
  if (auto c = conn_.tick(now)) {
    if (!identity_) log_.log(log_level::info, "mqtt", "connect_timeout", c->reason, {{"remote", remote_}});
    close(c->reason);
  }
}

}  // namespace fleethub::net
