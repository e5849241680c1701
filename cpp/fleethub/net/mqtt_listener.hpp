// Accepts MQTT connections on one endpoint (plain TCP or TLS) and hands each socket to an mqtt_session on
// the next io_context of the pool. Thread safety: start/stop from the owning (app) thread.
#pragma once
#include <utility>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <memory>
#include <string>

#include "fleethub/core/log.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/net/io_pool.hpp"
#include "fleethub/net/mqtt_session.hpp"

namespace fleethub::net {

class mqtt_listener {
 public:
  // `tls` null: plain MQTT.
  mqtt_listener(io_pool& pool, hub::engine& engine, logger log, std::shared_ptr<SSL_CTX> tls,
                mqtt_session_options opts);
  ~mqtt_listener();
  // Binds and listens; port 0 picks a free port. Errors: unavailable with the OS reason ("address in use").
  result<void> listen(const std::string& address, std::uint16_t port);
  std::uint16_t port() const { return port_; }
  void stop();

 private:
  void do_accept();
  io_pool& pool_;
  hub::engine& engine_;
  logger log_;
  std::shared_ptr<SSL_CTX> tls_;
  mqtt_session_options opts_;
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
