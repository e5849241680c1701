#include "fleethub/net/mqtt_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <openssl/x509.h>

#include <array>

#include "fleethub/core/encoding.hpp"

namespace fleethub::net {

namespace asio = boost::asio;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int reads_per_wakeup = 4;  // fairness: let other connections on this thread run

std::array<std::uint8_t, read_chunk>& thread_read_buffer() {
  thread_local std::array<std::uint8_t, read_chunk> buf;
  return buf;
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

template <class Stream>
constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

}  // namespace

template <class Stream>
mqtt_session<Stream>::mqtt_session(Stream stream, hub::engine& engine, const logger& log,
                                   const mqtt_session_options& opts, std::string remote)
    : stream_(std::move(stream)),
      timer_(stream_.get_executor()),
      engine_(engine),
      log_(log),
      conn_(opts.limits, std::chrono::steady_clock::now()),
      remote_(std::move(remote)) {}

template <class Stream>
mqtt_session<Stream>::~mqtt_session() = default;

template <class Stream>
tcp::socket& mqtt_session<Stream>::socket() {
  if constexpr (is_tls<Stream>) return stream_.next_layer();
  else return stream_;
}

template <class Stream>
void mqtt_session<Stream>::start() {
  boost::system::error_code ec;
  socket().set_option(tcp::no_delay(true), ec);  // we batch writes ourselves; Nagle would only add latency
  arm_timer();
  if constexpr (is_tls<Stream>) do_handshake();
  else {
    socket().non_blocking(true, ec);
    do_read();
  }
}

template <class Stream>
void mqtt_session<Stream>::do_handshake() {
  if constexpr (is_tls<Stream>) {
    stream_.async_handshake(asio::ssl::stream_base::server,
                            [self = this->shared_from_this()](const boost::system::error_code& ec) {
                              if (self->finished_) return;
                              if (ec) {
                                self->log_.log(log_level::info, "mqtt", "tls_failed", "TLS handshake failed",
                                               {{"remote", self->remote_}, {"error", ec.message()}});
                                self->close("TLS handshake failed: " + ec.message());
                                return;
                              }
                              self->do_read();
                            });
  }
}

template <class Stream>
void mqtt_session<Stream>::do_read() {
  if (closing_ || reading_) return;
  reading_ = true;
  if constexpr (is_tls<Stream>) {
    // An SSL stream must own its buffer for the whole operation: use a per-read heap buffer only while
    // a read is pending (TLS connections already carry OpenSSL's own buffers).
    auto chunk = std::make_shared<std::array<std::uint8_t, 16 * 1024>>();
    stream_.async_read_some(asio::buffer(*chunk), [self = this->shared_from_this(), chunk](
                                                      const boost::system::error_code& ec, std::size_t n) {
      self->reading_ = false;
      if (self->finished_) return;
      if (ec) {
        self->close(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ? "connection closed by client"
                                                                                      : "read error: " + ec.message());
        return;
      }
      self->on_bytes(bytes_view(chunk->data(), n));
      self->do_read();
    });
  } else {
    socket().async_wait(tcp::socket::wait_read, [self = this->shared_from_this()](const boost::system::error_code& ec) {
      self->reading_ = false;
      if (self->finished_) return;
      if (ec) {
        self->close("read error: " + ec.message());
        return;
      }
      auto& buf = thread_read_buffer();
      for (int i = 0; i < reads_per_wakeup && !self->closing_; ++i) {
        boost::system::error_code rec;
        auto n = self->socket().read_some(asio::buffer(buf), rec);
        if (rec == asio::error::would_block || rec == asio::error::try_again) break;
        if (rec) {
          self->close(rec == asio::error::eof ? "connection closed by client" : "read error: " + rec.message());
          return;
        }
        self->on_bytes(bytes_view(buf.data(), n));
        if (n < buf.size()) break;
      }
      self->do_read();
    });
  }
}

template <class Stream>
void mqtt_session<Stream>::on_bytes(bytes_view data) {
  auto events = conn_.feed(data, std::chrono::steady_clock::now());
  for (auto& ev : events) handle(ev);
  flush_telemetry();
  flush();
  arm_timer();
}

template <class Stream>
void mqtt_session<Stream>::handle(proto::mqtt::event& ev) {
  if (closing_) return;
  std::visit(
      [&](auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, proto::mqtt::connect_event>) {
          handle_connect(e);
        } else if constexpr (std::is_same_v<T, proto::mqtt::publish_event>) {
          auto outcome = engine_.on_publish(*identity_, e.packet, std::chrono::system_clock::now());
          if (auto* t = std::get_if<hub::publish_telemetry>(&outcome)) {
            pending_telemetry_.push_back(std::move(*t));
            if (e.packet.qos == 1) pending_acks_.push_back(e.packet.packet_id);
          } else if (auto* c = std::get_if<hub::publish_close>(&outcome)) {
            log_.log(log_level::warning, "mqtt", "publish_refused", c->reason,
                     {{"client_id", identity_->client_id}, {"remote", remote_}});
            close(c->reason);
          } else {
            // Acknowledged through the same ordered path, so PUBACKs keep the PUBLISH order (MQTT 4.6).
            if (e.packet.qos == 1) pending_acks_.push_back(e.packet.packet_id);
            log_.log(log_level::debug, "mqtt", "publish_ignored", std::get<hub::publish_ignore>(outcome).reason,
                     {{"client_id", identity_->client_id}, {"topic", e.packet.topic}});
          }
        } else if constexpr (std::is_same_v<T, proto::mqtt::subscribe_event>) {
          auto pid = e.packet.packet_id;
          auto ex = stream_.get_executor();
          engine_.subscribe(*identity_, e.packet.subscriptions,
                            [self = this->shared_from_this(), pid, ex](std::vector<std::uint8_t> codes) {
                              asio::post(ex, [self, pid, codes = std::move(codes)] {
                                if (self->finished_ || self->closing_) return;
                                self->conn_.grant(pid, codes);
                                self->flush();
                              });
                            });
        } else if constexpr (std::is_same_v<T, proto::mqtt::unsubscribe_event>) {
          engine_.unsubscribe(*identity_, e.packet.filters);
        } else if constexpr (std::is_same_v<T, proto::mqtt::puback_event>) {
          engine_.on_puback(*identity_, e.packet_id);
        } else if constexpr (std::is_same_v<T, proto::mqtt::close_event>) {
          close(e.reason, e.graceful);
        }
      },
      ev);
}

template <class Stream>
void mqtt_session<Stream>::handle_connect(proto::mqtt::connect_event& ev) {
  hub::connect_request req;
  req.client_id = ev.packet.client_id;
  req.username = ev.packet.username;
  if (ev.packet.password) req.password = std::string(as_string_view(*ev.packet.password));
  req.clean_session = ev.packet.clean_session;
  req.remote_address = remote_;
  req.transport = is_tls<Stream> ? "mqtts" : "mqtt";
  if constexpr (is_tls<Stream>) {
    if (X509* cert = SSL_get1_peer_certificate(stream_.native_handle())) {
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
  token_expiry_s_ = identity_->token_expiry_s;
  auto attached = engine_.attach(*identity_, ev.packet.clean_session, this->shared_from_this());
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

template <class Stream>
void mqtt_session<Stream>::flush_telemetry() {
  if (pending_telemetry_.empty() && pending_acks_.empty()) return;
  if (pending_telemetry_.empty() && inflight_batches_ == 0) {
    for (auto pid : pending_acks_) conn_.acknowledge(pid);
    pending_acks_.clear();
    return;
  }
  ++inflight_batches_;
  auto ex = stream_.get_executor();
  engine_.ingest(std::move(pending_telemetry_),
                 [self = this->shared_from_this(), ex, acks = std::move(pending_acks_)](const store::commit_result& r) {
                   // Runs on the store's writer thread: hop back to the connection's thread.
                   asio::post(ex, [self, acks, ok = r.ok(), msg = r.err.message] {
                     --self->inflight_batches_;
                     if (self->finished_) return;
                     if (!ok) {
                       self->log_.log(log_level::error, "store", "append_failed", msg,
                                      {{"client_id", self->identity_ ? self->identity_->client_id : ""}});
                       // No PUBACK: the client keeps the messages and resends them after reconnecting.
                       self->close("storage failure: " + msg);
                       return;
                     }
                     if (self->closing_) return;
                     for (auto pid : acks) self->conn_.acknowledge(pid);
                     self->flush();
                   });
                 });
  pending_telemetry_.clear();
  pending_acks_.clear();
}

template <class Stream>
void mqtt_session<Stream>::flush() {
  if (writing_active_ || finished_) return;
  if (!conn_.has_output()) {
    if (closing_) finish();
    return;
  }
  writing_ = conn_.take_output();
  writing_active_ = true;
  asio::async_write(stream_, asio::buffer(writing_),
                    [self = this->shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->on_written(ec);
                    });
}

template <class Stream>
void mqtt_session<Stream>::on_written(const boost::system::error_code& ec) {
  writing_active_ = false;
  bytes().swap(writing_);  // idle connections keep no write buffer
  if (ec) {
    closing_ = true;
    if (close_reason_.empty()) close_reason_ = "write error: " + ec.message();
    finish();
    return;
  }
  flush();
}

template <class Stream>
void mqtt_session<Stream>::close(std::string reason, bool graceful) {
  if (closing_) return;
  closing_ = true;
  graceful_ = graceful;
  close_reason_ = std::move(reason);
  flush();
}

template <class Stream>
void mqtt_session<Stream>::finish() {
  if (finished_) return;
  finished_ = true;
  boost::system::error_code ec;
  timer_.cancel();
  socket().shutdown(tcp::socket::shutdown_both, ec);
  socket().close(ec);
  if (attached_) {
    engine_.detach(*identity_, this, close_reason_);
    log_.log(log_level::info, "mqtt", "disconnected", close_reason_,
             {{"client_id", identity_->client_id}, {"remote", remote_}, {"graceful", graceful_ ? "1" : "0"}});
  }
}

template <class Stream>
void mqtt_session<Stream>::kick(std::string reason) {
  asio::post(stream_.get_executor(), [self = this->shared_from_this(), reason = std::move(reason)]() mutable {
    if (self->finished_) return;
    self->close(std::move(reason));
  });
}

template <class Stream>
void mqtt_session<Stream>::deliver(hub::outbound_message m) {
  asio::post(stream_.get_executor(), [self = this->shared_from_this(), m = std::move(m)] {
    if (self->closing_ || self->finished_) return;
    self->conn_.publish(m.topic, m.payload, m.qos, m.packet_id, m.dup);
    self->flush();
  });
}

template <class Stream>
void mqtt_session<Stream>::arm_timer() {
  if (finished_) return;
  auto deadline = conn_.next_deadline();
  if (token_expiry_s_ > 0) {
    auto left = std::chrono::seconds(token_expiry_s_) -
                std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    deadline = std::min(deadline, std::chrono::steady_clock::now() + std::max(left, std::chrono::seconds(0)));
  }
  if (deadline == steady_time::max()) return;
  // Re-arm only when the deadline moves earlier; a later deadline is picked up when the timer fires.
  if (armed_for_ != steady_time{} && armed_for_ <= deadline) return;
  armed_for_ = deadline;
  timer_.expires_at(deadline);
  timer_.async_wait([self = this->shared_from_this()](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    self->on_timer();
  });
}

template <class Stream>
void mqtt_session<Stream>::on_timer() {
  armed_for_ = {};
  if (finished_) return;
  if (token_expiry_s_ > 0 && std::chrono::system_clock::now() >= std::chrono::system_clock::time_point(
                                                                     std::chrono::seconds(token_expiry_s_))) {
    log_.log(log_level::info, "mqtt", "token_expired", "SAS token expired; closing the connection",
             {{"client_id", identity_->client_id}});
    close("SAS token expired");
    return;
  }
  if (auto c = conn_.tick(std::chrono::steady_clock::now())) {
    if (!identity_)
      log_.log(log_level::info, "mqtt", "connect_timeout", c->reason, {{"remote", remote_}});
    close(c->reason);
    return;
  }
  arm_timer();
}

template class mqtt_session<tcp::socket>;
template class mqtt_session<tls_stream>;

}  // namespace fleethub::net
