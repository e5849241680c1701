#include "fleethub/app/hub_server.hpp"

#include <sys/resource.h>

#include <utility>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "fleethub/net/certificates.hpp"
#include "fleethub/net/io_pool.hpp"
#include "fleethub/net/http_session.hpp"
#include "fleethub/net/listener.hpp"
#include "fleethub/net/mqtt_session.hpp"
#include "fleethub/net/telemetry_stage.hpp"

namespace fleethub::app {

// Fails direct-method calls past their deadlines, from io thread 0's tick (a few times a second).
struct method_expiry final : net::ticking {
  explicit method_expiry(hub::engine& e) : engine(e) {}
  void on_tick(steady_time now) override { engine.expire(now); }
  hub::engine& engine;
};

struct hub_server::impl {
  hub_config config;
  std::unique_ptr<method_expiry> expiry;
  logger log;
  std::unique_ptr<store::backend> store;
  std::unique_ptr<hub::registry> registry;
  std::unique_ptr<hub::engine> engine;
  std::unique_ptr<net::io_pool> pool;
  std::unique_ptr<boost::asio::thread_pool> workers;  // blocking REST requests (http_api::may_block)
  std::unique_ptr<hub::http_api> api;
  std::unique_ptr<net::listener> tls_listener;
  std::unique_ptr<net::listener> plain_listener;
  std::unique_ptr<net::listener> https_listener;
  std::shared_ptr<SSL_CTX> tls;
  net::mqtt_session_options mqtt_opts;
  std::shared_ptr<const net::http_session_options> http_opts;
  std::string ca_path;
  bool running = false;
};

hub_server::hub_server(std::unique_ptr<impl> p) : p_(std::move(p)) {}

result<std::unique_ptr<hub_server>> hub_server::open(hub_config config) {
  auto p = std::make_unique<impl>();
  if (!config.sink) {
    static std::mutex stderr_mu;
    config.sink = [](log_record&& r) {
      auto line = format_log_line(r);
      std::lock_guard lk(stderr_mu);
      std::fprintf(stderr, "%s\n", line.c_str());
    };
  }
  p->log = logger(config.sink, config.min_level);
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return make_error(errc::storage, "cannot create data dir " + config.data_dir + ": " + ec.message());

  store::lmdb_options so;
  so.path = config.data_dir + "/store";
  so.partitions = config.partitions;
  so.map_size = config.map_size;
  so.durable = config.durable;
  so.retention.max_age = config.retention;
  so.retention.max_bytes_per_partition = config.retention_bytes;
  auto st = store::open_lmdb(so);
  if (!st) return st.err();
  p->store = std::move(*st);
  p->registry = std::make_unique<hub::registry>(
      *p->store, [] { return to_unix_ms(std::chrono::system_clock::now()); });
  if (auto r = p->registry->ensure_default_policies(); !r) return r.err();
  hub::engine_options eo;
  eo.hostname = config.hostname;
  eo.max_message_size = config.max_message_size;
  eo.c2d = config.c2d;
  p->engine = std::make_unique<hub::engine>(eo, *p->store, *p->registry, p->log);
  if (auto r = p->engine->c2d().load(); !r) return r.err();
  hub::http_api_options ao;
  ao.hostname = config.hostname;
  ao.max_page_items = config.max_page_items;
  p->api = std::make_unique<hub::http_api>(*p->engine, *p->registry, ao);
  if (!config.durable)
    p->log.log(log_level::warning, "store", "relaxed_durability",
               "durability=relaxed: acknowledged messages can be lost on a power failure or kernel crash");
  p->config = std::move(config);
  return std::unique_ptr<hub_server>(new hub_server(std::move(p)));
}

hub_server::~hub_server() {
  stop();
  if (p_->store) p_->store->close();
}

namespace {

// Each device holds a socket: a default soft limit of 1024 descriptors would cap the hub near 1,000 devices.
// Raise the soft limit to the hard one (no privilege needed) and say what the ceiling is.
void raise_open_file_limit(const logger& log) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    auto before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
      log.log(log_level::debug, "hub", "nofile_raised", "raised the open-file limit",
              {{"from", std::to_string(before)}, {"to", std::to_string(rl.rlim_max)}});
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4096)
    log.log(log_level::warning, "hub", "nofile_low",
            "the open-file limit allows only about this many connections; raise it (ulimit -n / LimitNOFILE)",
            {{"limit", std::to_string(rl.rlim_cur)}});
}

}  // namespace

result<void> hub_server::start() {
  if (p_->running) return {};
  auto& c = p_->config;
  raise_open_file_limit(p_->log);
  p_->pool = std::make_unique<net::io_pool>(c.io_threads);
  p_->mqtt_opts.limits.max_packet_size = c.max_message_size + 64 * 1024;  // room for topic and property bag
  auto http_opts = std::make_shared<net::http_session_options>();
  http_opts->mqtt = p_->mqtt_opts;
  if (c.rest_workers > 0) {
    p_->workers = std::make_unique<boost::asio::thread_pool>(c.rest_workers);
    http_opts->workers = p_->workers.get();
  }
  // Bodies: a 256 KB D2C message (base64 in a batch grows it by a third) or a bulk registry request.
  http_opts->limits.max_body_bytes = std::max<std::size_t>(1024 * 1024, c.max_message_size * 2);
  p_->http_opts = http_opts;
  // HTTPS telemetry handled on an io thread joins that thread's batch (with its MQTT publishes).
  p_->api->set_ingest([eng = p_->engine.get()](std::vector<hub::publish_telemetry> msgs, store::commit_callback done) {
    if (auto* ctx = net::io_pool::current()) {
      net::telemetry_stage::here().add(*eng, ctx->get_executor(), msgs, std::move(done));
      return;
    }
    eng->ingest(std::move(msgs), std::move(done));
  });
  auto fail = [&](error e) -> result<void> {
    p_->https_listener.reset();
    p_->plain_listener.reset();
    p_->tls_listener.reset();
    p_->workers.reset();
    p_->pool.reset();
    return e;
  };
  if (c.mqtt_tls_port || c.https_port) {
    std::string cert = c.tls_cert, key = c.tls_key;
    if (cert.empty()) {
      auto certs = net::ensure_certificates(c.data_dir + "/certs", c.hostname);
      if (!certs) return fail(certs.err());
      cert = certs->server_cert;
      key = certs->server_key;
      p_->ca_path = certs->ca_cert;
      if (certs->created)
        p_->log.log(log_level::info, "tls", "certificates_created", "made the hub's CA and server certificate",
                    {{"ca", certs->ca_cert}, {"hostname", c.hostname}});
    }
    auto ctx = net::make_tls_context(cert, key);
    if (!ctx) return fail(ctx.err());
    p_->tls = *ctx;
  }
  auto mqtt_factory = [this](SSL_CTX* tls) {
    return [this, tls](net::tcp::socket sock, std::size_t idx, std::string remote) {
      auto s = std::make_shared<net::mqtt_session>(std::move(sock), tls, p_->pool->ticks(idx), p_->pool->commits(idx),
                                                   *p_->engine, p_->log, p_->mqtt_opts, std::move(remote));
      boost::asio::post(p_->pool->at(idx), [s] { s->start(); });
    };
  };
  if (c.mqtt_tls_port) {
    p_->tls_listener = std::make_unique<net::listener>(*p_->pool, p_->log, "mqtt", mqtt_factory(p_->tls.get()));
    if (auto r = p_->tls_listener->listen(c.bind_address, *c.mqtt_tls_port); !r) return fail(r.err());
  }
  if (c.mqtt_plain_port) {
    p_->plain_listener = std::make_unique<net::listener>(*p_->pool, p_->log, "mqtt", mqtt_factory(nullptr));
    if (auto r = p_->plain_listener->listen(c.bind_address, *c.mqtt_plain_port); !r) return fail(r.err());
  }
  if (c.https_port) {
    p_->https_listener = std::make_unique<net::listener>(
        *p_->pool, p_->log, "https", [this](net::tcp::socket sock, std::size_t idx, std::string remote) {
          auto s = std::make_shared<net::http_session>(std::move(sock), p_->tls.get(), p_->pool->ticks(idx),
                                                       p_->pool->commits(idx), *p_->engine, *p_->api, p_->log,
                                                       p_->http_opts, std::move(remote));
          boost::asio::post(p_->pool->at(idx), [s] { s->start(); });
        });
    if (auto r = p_->https_listener->listen(c.bind_address, *c.https_port); !r) return fail(r.err());
  }
  p_->expiry = std::make_unique<method_expiry>(*p_->engine);
  p_->pool->ticks(0).add(p_->expiry.get());  // before start(): the list is still ours to touch
  p_->pool->start();
  p_->running = true;
  auto ports = this->ports();
  p_->log.log(log_level::info, "hub", "started", "hub listening",
              {{"hostname", c.hostname},
               {"mqtts", ports.mqtt_tls ? std::to_string(*ports.mqtt_tls) : "off"},
               {"mqtt", ports.mqtt_plain ? std::to_string(*ports.mqtt_plain) : "off"},
               {"https", ports.https ? std::to_string(*ports.https) : "off"},
               {"data_dir", c.data_dir}});
  return {};
}

void hub_server::stop() {
  if (!p_->running) return;
  p_->running = false;
  if (p_->tls_listener) p_->tls_listener->stop();
  if (p_->plain_listener) p_->plain_listener->stop();
  if (p_->https_listener) p_->https_listener->stop();
  p_->pool->stop();
  // Blocking REST requests already handed to the workers finish (their answers go nowhere: the io threads
  // are stopped); then no worker touches the engine, and no closure holds a session of the pool.
  if (p_->workers) p_->workers->join();
  // Commit callbacks of batches still in the store hand back to the pool's queues: let them all run (FIFO
  // barrier) before the queues go away.
  p_->store->submit_and_wait({});
  // Sessions hold sockets of the pool's contexts: drop the engine's links before the contexts go away.
  // Also fails pending method calls and records the dropped connections' disconnect events.
  p_->engine->release_links();
  p_->store->submit_and_wait({});
  p_->tls_listener.reset();
  p_->plain_listener.reset();
  p_->https_listener.reset();
  p_->workers.reset();
  p_->pool.reset();
  p_->expiry.reset();
  p_->log.log(log_level::info, "hub", "stopped", "hub stopped");
}

bool hub_server::running() const { return p_->running; }

listen_ports hub_server::ports() const {
  listen_ports lp;
  if (p_->tls_listener) lp.mqtt_tls = p_->tls_listener->port();
  if (p_->plain_listener) lp.mqtt_plain = p_->plain_listener->port();
  if (p_->https_listener) lp.https = p_->https_listener->port();
  return lp;
}

const std::string& hub_server::ca_cert_path() const { return p_->ca_path; }
const hub_config& hub_server::config() const { return p_->config; }
hub::registry& hub_server::registry() { return *p_->registry; }
hub::engine& hub_server::engine() { return *p_->engine; }
hub::http_api& hub_server::http_api() { return *p_->api; }
hub::query_runner& hub_server::queries() { return p_->api->queries(); }
store::backend& hub_server::store() { return *p_->store; }
const logger& hub_server::log() const { return p_->log; }

}  // namespace fleethub::app
