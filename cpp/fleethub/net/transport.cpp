#include "fleethub/net/transport.hpp"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace fleethub::net {

transport::transport(tcp::socket s) : socket_(std::move(s)) {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
}

transport::transport(tcp::socket s, SSL_CTX* ctx) : socket_(std::move(s)) {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  ssl_ = SSL_new(ctx);
  if (ssl_) {
    SSL_set_fd(ssl_, socket_.native_handle());
    SSL_set_accept_state(ssl_);
    // Partial writes with a buffer that may move between retries: we keep our own output queue.
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  }
}

transport::transport(transport&& o) noexcept : socket_(std::move(o.socket_)), ssl_(std::exchange(o.ssl_, nullptr)) {}

transport::~transport() {
  if (ssl_) SSL_free(ssl_);
}

transport::io_result transport::ssl_result(int rc, const char* op) {
  int e = SSL_get_error(ssl_, rc);
  switch (e) {
    case SSL_ERROR_WANT_READ: return {0, want::read, {}};
    case SSL_ERROR_WANT_WRITE: return {0, want::write, {}};
    case SSL_ERROR_ZERO_RETURN: return {0, want::closed, {}};
    case SSL_ERROR_SYSCALL: {
      int err = errno;
      ERR_clear_error();
      if (err == 0 || err == ECONNRESET || err == EPIPE) return {0, want::closed, {}};
      return {0, want::error, std::string(op) + ": " + std::strerror(err)};
    }
    default: {
      char buf[256];
      unsigned long code = ERR_get_error();
      ERR_error_string_n(code, buf, sizeof buf);
      ERR_clear_error();
      return {0, want::error, std::string(op) + ": " + (code ? buf : "TLS error")};
    }
  }
}

transport::io_result transport::handshake() {
  if (!ssl_) return {1, want::none, {}};
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return {1, want::none, {}};
  auto r = ssl_result(rc, "TLS handshake");
  if (r.w == want::closed) r = {0, want::error, "TLS handshake: connection closed by peer"};
  return r;
}

transport::io_result transport::read(std::uint8_t* buf, std::size_t cap) {
  if (ssl_) {
    ERR_clear_error();
    int rc = SSL_read(ssl_, buf, static_cast<int>(cap));
    if (rc > 0) return {static_cast<std::size_t>(rc), want::none, {}};
    return ssl_result(rc, "TLS read");
  }
  boost::system::error_code ec;
  auto n = socket_.read_some(boost::asio::buffer(buf, cap), ec);
  if (n > 0) return {n, want::none, {}};
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) return {0, want::read, {}};
  if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset) return {0, want::closed, {}};
  return {0, want::error, ec.message()};
}

transport::io_result transport::write(const std::uint8_t* buf, std::size_t len) {
  if (ssl_) {
    ERR_clear_error();
    int rc = SSL_write(ssl_, buf, static_cast<int>(len));
    if (rc > 0) return {static_cast<std::size_t>(rc), want::none, {}};
    return ssl_result(rc, "TLS write");
  }
  boost::system::error_code ec;
  auto n = socket_.write_some(boost::asio::buffer(buf, len), ec);
  if (n > 0) return {n, want::none, {}};
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) return {0, want::write, {}};
  if (ec == boost::asio::error::broken_pipe || ec == boost::asio::error::connection_reset) return {0, want::closed, {}};
  return {0, want::error, ec.message()};
}

void transport::shutdown() {
  if (ssl_ && SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // one non-blocking attempt at close_notify; we do not wait for the peer's
    ERR_clear_error();
  }
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

}  // namespace fleethub::net
