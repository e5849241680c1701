// Accepts TCP connections on one endpoint and hands each socket, with the index of the io_context it was
// accepted on (round robin over the pool), to a session factory: MQTT (8883/1883) and HTTPS (443) listeners
// differ only in that factory. Thread safety: listen/stop from the owning (app) thread; the factory runs on
// io thread 0 and must post the session's start to the socket's own context.
#pragma once
#include <utility>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "fleethub/core/log.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/net/io_pool.hpp"
#include "fleethub/net/transport.hpp"

namespace fleethub::net {

class listener {
 public:
  // (socket, io_context index, "address:port" of the peer)
  using session_factory = std::function<void(tcp::socket, std::size_t, std::string)>;
  // `what` names the listener in logs ("mqtt", "https").
  listener(io_pool& pool, logger log, std::string what, session_factory make);
  ~listener();
  // Binds and listens; port 0 picks a free port. Errors: unavailable with the OS reason ("address in use").
  result<void> listen(const std::string& address, std::uint16_t port);
  std::uint16_t port() const { return port_; }
  void stop();

 private:
  void do_accept();
  io_pool& pool_;
  logger log_;
  std::string what_;
  session_factory make_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<boost::asio::steady_timer> retry_;  // backs off after EMFILE and friends
  std::atomic<bool> stopped_{false};
  std::uint16_t port_ = 0;
};

// TLS 1.2 and 1.3 server context from PEM files; requests (but does not require) a client certificate for
// X.509 device authentication. Errors: invalid_argument naming the file that failed.
result<std::shared_ptr<SSL_CTX>> make_tls_context(const std::string& cert_chain_pem,
                                                                    const std::string& key_pem);

}  // namespace fleethub::net
