// Readiness plumbing shared by the connection drivers (mqtt_session, http_session): waiting for the socket
// to become readable or writable, routing those wake-ups through a TLS handshake first, and the TLS
// cross-wants (SSL_read that needs the socket writable, SSL_write that needs it readable).
// CRTP: `Derived` provides pump_write(), close(reason), finish(), and the read hooks can_read() (false while
// closing or applying backpressure), on_data(bytes) (what was read), buffers_idle() (nothing half-written or
// half-parsed: OpenSSL may drop its buffers) and peer_closed_reason(); it derives from
// std::enable_shared_from_this<Derived> (a pending wait keeps the connection alive).
// Thread safety: none; everything runs on the connection's io_context thread.
#pragma once
#include <utility>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/clock.hpp"
#include "fleethub/core/log.hpp"
#include "fleethub/net/transport.hpp"

namespace fleethub::net {

template <class Derived>
class stream_pump {
 protected:
  explicit stream_pump(transport t) : t_(std::move(t)) {}

  Derived& self() { return static_cast<Derived&>(*this); }

  // Reads what the socket has (a few reads per wake-up, for fairness to the thread's other connections)
  // into a per-thread buffer, so an idle connection holds no read buffer.
  void pump_read() {
    static constexpr int reads_per_wakeup = 4;
    thread_local std::array<std::uint8_t, 64 * 1024> buf;
    for (int i = 0; i < reads_per_wakeup; ++i) {
      if (finished_ || !self().can_read()) return;
      auto r = t_.read(buf.data(), buf.size());
      if (r.n) {
        self().on_data(bytes_view(buf.data(), r.n));
        // A short plain read drained the socket: skip the recv that would only say EAGAIN (edge-triggered
        // epoll reports data that arrives later). TLS may hold whole records inside OpenSSL, so it reads on.
        if (!t_.tls() && r.n < buf.size() && self().can_read()) {
          wait_readable();
          return;
        }
        continue;
      }
      switch (r.w) {
        case transport::want::read:
          if (self().buffers_idle()) t_.release_buffers();
          wait_readable();
          return;
        case transport::want::write:
          read_wants_write_ = true;
          wait_writable();
          return;
        case transport::want::closed: self().close(self().peer_closed_reason()); return;
        default: self().close("read error: " + r.error); return;
      }
    }
    // Still more to read: yield to the thread's other connections, then continue.
    boost::asio::post(t_.socket().get_executor(), [p = self().shared_from_this()] { p->pump_read(); });
  }

  void wait_readable() {
    if (read_waiting_ || finished_) return;
    read_waiting_ = true;
    t_.socket().async_wait(tcp::socket::wait_read, [p = self().shared_from_this()](const boost::system::error_code& ec) {
      auto& s = static_cast<stream_pump&>(*p);
      s.read_waiting_ = false;
      if (s.finished_) return;
      if (ec) return p->close("read error: " + ec.message());
      s.on_readable();
    });
  }

  void wait_writable() {
    if (write_waiting_ || finished_) return;
    write_waiting_ = true;
    t_.socket().async_wait(tcp::socket::wait_write, [p = self().shared_from_this()](const boost::system::error_code& ec) {
      auto& s = static_cast<stream_pump&>(*p);
      s.write_waiting_ = false;
      if (s.finished_) return;
      if (ec) {
        // The peer is gone: nothing queued can be delivered, so there is no point in a graceful close.
        if (s.close_reason_.empty()) s.close_reason_ = "write error: " + ec.message();
        return p->finish();
      }
      s.on_writable();
    });
  }

  void on_readable() {
    if (handshaking_) return pump_handshake();
    if (write_wants_read_) {
      write_wants_read_ = false;
      self().pump_write();
    }
    pump_read();
  }

  void on_writable() {
    if (handshaking_) return pump_handshake();
    if (read_wants_write_) {
      read_wants_write_ = false;
      pump_read();
    }
    self().pump_write();
  }

  // Starts or continues the TLS server handshake; `component` names the listener in the log.
  void pump_handshake() {
    auto r = t_.handshake();
    if (r.n) {
      handshaking_ = false;
      pump_read();
      self().pump_write();  // TLS 1.3 session tickets may be waiting to go out
      return;
    }
    switch (r.w) {
      case transport::want::read: wait_readable(); return;
      case transport::want::write: wait_writable(); return;
      default:
        self().log_.log(log_level::info, self().component(), "tls_failed", "TLS handshake failed",
                        {{"remote", self().remote_}, {"error", r.error}});
        close_reason_ = r.error;
        self().finish();
    }
  }

  // Writes writing_[write_off_..]. True when all of it went out; false when it waits for the socket (a
  // wake-up resumes the derived pump_write) or the peer is gone (finished).
  bool write_out() {
    while (write_off_ < writing_.size()) {
      auto r = t_.write(writing_.data() + write_off_, writing_.size() - write_off_);
      if (r.n) {
        write_off_ += r.n;
        continue;
      }
      switch (r.w) {
        case transport::want::write: wait_writable(); return false;
        case transport::want::read:
          write_wants_read_ = true;
          wait_readable();
          return false;
        default:
          if (close_reason_.empty())
            close_reason_ = r.w == transport::want::closed ? "connection closed by client" : "write error: " + r.error;
          self().finish();
          return false;
      }
    }
    return true;
  }

  // For on_tick: a closing connection whose peer stopped reading cannot hold it open forever. True when
  // the connection is closing (or finished) and the tick needs nothing else.
  bool closing_tick(steady_time now) {
    if (finished_) return true;
    if (!closing_) return false;
    if (now >= close_by_) {
      if (close_reason_.empty()) close_reason_ = "close timed out";
      self().finish();
    }
    return true;
  }

  // Starts a freshly accepted connection: the TLS handshake, or straight to reading.
  void start_io() {
    boost::system::error_code ec;
    t_.socket().set_option(tcp::no_delay(true), ec);  // writes are batched by the drivers; Nagle only adds latency
    if (t_.tls()) {
      if (!t_.ssl()) return self().close("cannot create a TLS session");
      handshaking_ = true;
      pump_handshake();
    } else {
      wait_readable();
    }
  }

  transport t_;
  bytes writing_;              // being written; empty (no capacity) while idle
  std::size_t write_off_ = 0;
  std::string close_reason_;
  steady_time close_by_{};     // a closing connection is dropped after this
  bool closing_ = false;
  bool handshaking_ = false;
  bool read_waiting_ = false;
  bool write_waiting_ = false;
  bool read_wants_write_ = false;   // TLS: SSL_read needs the socket writable
  bool write_wants_read_ = false;   // TLS: SSL_write needs the socket readable
  bool finished_ = false;
};

}  // namespace fleethub::net
