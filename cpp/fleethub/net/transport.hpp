// A non-blocking byte transport over one TCP socket: plain, or TLS driven by OpenSSL directly on the file
// descriptor. Readiness-based (the caller waits for readable/writable with Asio and retries), so an idle
// connection owns no buffers: OpenSSL releases its record buffers (SSL_MODE_RELEASE_BUFFERS) and there is
// no BIO pair or staging buffer as in asio::ssl::stream (~80 KB per connection, measured).
// Thread safety: none; used from its connection's thread only.
#pragma once
#include <utility>
#include <boost/asio/ip/tcp.hpp>
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace fleethub::net {

using tcp = boost::asio::ip::tcp;

class transport {
 public:
  enum class want { none, read, write, closed, error };
  struct io_result {
    std::size_t n = 0;      // bytes moved (read or write), > 0 means progress
    want w = want::none;    // when n == 0: what to wait for, or closed/error
    std::string error;      // detail for want::error
  };

  explicit transport(tcp::socket s);  // plain
  transport(tcp::socket s, SSL_CTX* ctx);  // TLS server side
  ~transport();
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;
  // Moves the socket and the TLS session (same file descriptor): an HTTPS connection upgraded to a
  // WebSocket hands its transport to the MQTT session. Only on the socket's own thread.
  transport(transport&& o) noexcept;

  bool tls() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }
  tcp::socket& socket() { return socket_; }

  io_result handshake();  // TLS: progress the server handshake; n = 1 when complete
  io_result read(std::uint8_t* buf, std::size_t cap);
  io_result write(const std::uint8_t* buf, std::size_t len);
  void shutdown();        // best effort close_notify, then close the socket
  // TLS: frees OpenSSL's record buffers when they hold no data. SSL_read allocates its read buffer before
  // it finds the socket empty, so an idle connection would otherwise keep ~17 KB.
  void release_buffers() {
    if (ssl_) SSL_free_buffers(ssl_);
  }

 private:
  io_result ssl_result(int rc, const char* op);
  tcp::socket socket_;
  SSL* ssl_ = nullptr;
};

}  // namespace fleethub::net
