#include "fleethub/net/listener.hpp"

#include <boost/asio/post.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace fleethub::net {

namespace asio = boost::asio;

listener::listener(io_pool& pool, logger log, std::string what, session_factory make)
    : pool_(pool), log_(std::move(log)), what_(std::move(what)), make_(std::move(make)) {}

// The owner stops the pool's threads before destroying a listener, so closing here races with nothing.
listener::~listener() {
  stopped_ = true;
  boost::system::error_code ec;
  if (retry_) retry_->cancel();
  if (acceptor_) acceptor_->close(ec);
}

result<void> listener::listen(const std::string& address, std::uint16_t port) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(address, ec);
  if (ec) return make_error(errc::invalid_argument, "bad listen address '" + address + "': " + ec.message());
  acceptor_ = std::make_unique<tcp::acceptor>(pool_.at(0));
  tcp::endpoint ep(addr, port);
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.reset();
    return make_error(errc::unavailable, "cannot listen on " + address + ":" + std::to_string(port) + ": " +
                                             ec.message());
  }
  port_ = acceptor_->local_endpoint().port();
  retry_ = std::make_unique<asio::steady_timer>(pool_.at(0));
  stopped_ = false;
  asio::post(pool_.at(0), [this] { do_accept(); });
  return {};
}

void listener::do_accept() {
  if (!acceptor_ || stopped_) return;
  auto idx = pool_.next_index();
  auto& ctx = pool_.at(idx);
  acceptor_->async_accept(ctx, [this, idx](const boost::system::error_code& ec, tcp::socket sock) {
    if (stopped_ || ec == asio::error::operation_aborted || !acceptor_ || !acceptor_->is_open()) return;
    if (!ec) {
      boost::system::error_code rec;
      auto rep = sock.remote_endpoint(rec);
      std::string remote = rec ? "?" : rep.address().to_string() + ":" + std::to_string(rep.port());
      make_(std::move(sock), idx, std::move(remote));
    } else {
      // EMFILE and friends: log, wait a little (the OS frees descriptors as connections close), go on.
      log_.log(log_level::warning, what_, "accept_failed", ec.message() + "; retrying in 100 ms");
      retry_->expires_after(std::chrono::milliseconds(100));
      retry_->async_wait([this](const boost::system::error_code& e) {
        if (!e) do_accept();
      });
      return;
    }
    do_accept();
  });
}

void listener::stop() {
  if (!acceptor_ || stopped_.exchange(true)) return;
  // The acceptor belongs to context 0's thread: close it there, never concurrently with its handlers. If the
  // pool stops first, the acceptor closes when it is destroyed (after the threads are joined).
  asio::post(pool_.at(0), [a = acceptor_.get(), t = retry_.get()] {
    boost::system::error_code ec;
    t->cancel();
    a->cancel(ec);
    a->close(ec);
  });
}

result<std::shared_ptr<SSL_CTX>> make_tls_context(const std::string& cert_chain_pem, const std::string& key_pem) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) return make_error(errc::unavailable, "cannot create a TLS context");
  SSL_CTX* native = ctx.get();
  // pydev speaks TLS 1.2 only; 1.3 for everyone else.
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle connections give their record buffers back to the allocator.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(native, cert_chain_pem.c_str()) != 1) {
    ERR_clear_error();
    return make_error(errc::invalid_argument, "cannot load certificate chain " + cert_chain_pem +
                                                  " (PEM: the server certificate first, then its CA chain)");
  }
  if (SSL_CTX_use_PrivateKey_file(native, key_pem.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return make_error(errc::invalid_argument, "cannot load private key " + key_pem +
                                                  " (PEM, unencrypted, matching the certificate)");
  }
  // Ask for a client certificate (X.509 devices) but accept any: the engine matches thumbprints.
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  SSL_CTX_set_session_id_context(native, reinterpret_cast<const unsigned char*>("fleethub"), 8);
  // Resumption uses stateless tickets; a server-side session cache would hold ~kilobytes per connection.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(native, 1);
  return ctx;
}

}  // namespace fleethub::net
