// hub_server: wiring of one hub (config -> store + registry + engine + listeners). This is the embeddable
// C++ API: the Python bindings, the CLI and C++ programs use it.
// Lifecycle: open() opens the data directory (registry usable at once); start() makes certificates and
// listens; stop() closes listeners and connections; the destructor stops and closes the store.
// Thread safety: start/stop from one thread; registry(), engine() and store() are thread-safe.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "fleethub/core/log.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/hub/http_api.hpp"
#include "fleethub/hub/query_runner.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::app {

struct hub_config {
  std::string data_dir = "./fleethub-data";
  std::string hostname = "localhost";       // the HostName devices use; goes into the server certificate
  std::string bind_address = "0.0.0.0";
  std::optional<std::uint16_t> mqtt_tls_port = 8883;  // nullopt: listener off; 0: any free port
  std::optional<std::uint16_t> mqtt_plain_port;       // off by default: local development only
  // HTTPS: the service REST API, the device HTTPS API and MQTT over WebSockets (/$iothub/websocket).
  // 443 is fixed in the Azure device SDK for WebSockets; nullopt: off; 0: any free port.
  std::optional<std::uint16_t> https_port = 443;
  std::size_t max_page_items = 100;         // query page size cap (x-ms-max-item-count)
  std::size_t rest_workers = 2;             // threads for REST requests that block (registry writes, queries)
  std::string tls_cert;                     // PEM chain; empty: the hub's own CA issues one in <data_dir>/certs
  std::string tls_key;
  bool durable = true;                      // false: "relaxed" (no fsync per group commit), explicit opt-in
  std::uint32_t partitions = 4;             // event log partitions (fixed when the data dir is created)
  std::size_t io_threads = 0;               // 0: one per core
  std::uint64_t map_size = 64ull << 30;
  std::chrono::seconds retention{std::chrono::hours(24)};
  std::uint64_t retention_bytes = 0;        // per partition; 0: unlimited
  std::size_t max_message_size = 256 * 1024;
  hub::c2d_options c2d;                     // cloud-to-device queues and feedback
  log_sink sink;                            // empty: stderr
  log_level min_level = log_level::info;
};

struct listen_ports {
  std::optional<std::uint16_t> mqtt_tls;
  std::optional<std::uint16_t> mqtt_plain;
  std::optional<std::uint16_t> https;
};

class hub_server {
 public:
  static result<std::unique_ptr<hub_server>> open(hub_config config);
  ~hub_server();
  hub_server(const hub_server&) = delete;
  hub_server& operator=(const hub_server&) = delete;

  // Errors: unavailable (port in use), invalid_argument (bad certificate files), storage.
  result<void> start();
  void stop();
  bool running() const;

  listen_ports ports() const;
  const std::string& ca_cert_path() const;  // empty with a user-supplied certificate
  const hub_config& config() const;

  hub::registry& registry();
  hub::engine& engine();
  hub::http_api& http_api();
  hub::query_runner& queries();
  store::backend& store();
  const logger& log() const;

 private:
  struct impl;
  explicit hub_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

}  // namespace fleethub::app
