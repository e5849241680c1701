// The HTTPS REST API, I/O-free: turns one parsed HTTP request into one response. It serves (a) IoT Hub's
// service API as the azure-iot-hub 2.7.0 SDK calls it (registry, twins, direct methods, queries, statistics,
// C2D purge and feedback; wire-protocol.md §3.2) and (b) the device HTTPS API (telemetry, C2D receive,
// complete, reject, abandon; wire-protocol.md §4). The net driver parses requests (proto/http) and calls
// handle(); the answer comes back through `respond`, synchronously or later from a hub thread (after a store
// commit, or when a device answers a method). Jobs, configurations, digital twins and file upload are not
// supported yet and answer 501. Layout: routing and authorization in http_api.cpp, handlers in
// service_routes.cpp and device_routes.cpp, JSON shapes in rest_views.hpp, errors in rest_error.hpp.
// Thread safety: handle() may be called from any number of threads at once. Like the registry API it may
// block the calling thread for a store commit (identity writes, bulk items, C2D purge, feedback completion);
// twin writes, telemetry and method calls never block it. The engine and registry must outlive every pending
// answer (they do when the engine is stopped first: it drains its callbacks); the http_api need not.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/message.hpp"
#include "fleethub/hub/engine.hpp"
#include "fleethub/hub/query_runner.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/hub/rest_error.hpp"
#include "fleethub/proto/http/message.hpp"
#include "fleethub/proto/http/target.hpp"

namespace fleethub::hub {

struct http_api_options {
  std::string hostname;                          // canonical hub host name
  std::size_t max_page_items = 100;              // x-ms-max-item-count cap (semantics §2.4)
  std::chrono::seconds continuation_ttl{600};
  std::chrono::seconds c2d_lock_timeout{60};     // device HTTPS receive (IotHub-MessageLockTimeout overrides)
};

class http_api {
 public:
  http_api(engine& eng, registry& reg, http_api_options opt);

  using respond_fn = std::function<void(proto::http::response)>;
  // Handles one request. `respond` runs exactly once: synchronously inside handle(), or later on a hub thread
  // (store commit callbacks, method answers). Never throws for bad input. `remote_address` is not used yet
  // (no IP filter at this layer).
  void handle(const proto::http::request& req, std::string_view remote_address, respond_fn respond);

  // True for requests whose handling waits on the calling thread: identity writes and bulk operations,
  // purge, C2D and feedback settlement (each waits for a store commit), device lists, and queries (a scan of
  // the registry). Callers that must not block (the io threads) run these elsewhere. Cheap: looks at the
  // method and the path only.
  static bool may_block(const proto::http::request& req);

  // How device telemetry reaches the store: engine::ingest by default. The net layer installs one that
  // stages the messages of an io thread's loop turn into one write batch (shared with MQTT publishes).
  using ingest_fn = std::function<void(std::vector<publish_telemetry>, store::commit_callback)>;
  void set_ingest(ingest_fn f) { ingest_ = std::move(f); }

  query_runner& queries() { return queries_; }
  const http_api_options& options() const { return opt_; }

 private:
  // One request being routed. `req` lives only until handle() returns: a handler that answers later copies
  // what it needs first. `respond` is once-only (later calls are ignored).
  struct call {
    const proto::http::request& req;
    proto::http::target target;
    respond_fn respond;
  };
  // An authenticated device request.
  struct device_caller {
    device_record record;
    connection_auth auth = connection_auth::sas;
  };

  void dispatch(call& c);
  void route_devices(call& c);
  void route_twins(call& c);
  void route_messages(call& c);

  // Checks the Authorization header of a service request: a shared access policy token with any of
  // `rights`. Answers 401 (IotHubUnauthorized) and returns false otherwise. `what` names the operation.
  bool authorize_service(call& c, std::uint32_t rights, std::string_view what);
  // Checks a device request: a token whose resource covers /devices/{id}[/modules/{mid}] signed with the
  // identity's key, or with a policy that has DeviceConnect. Answers 401, or 403 DeviceDisabled, and returns
  // nullopt otherwise.
  std::optional<device_caller> authorize_device(call& c, const std::string& device_id, const std::string& module_id);
  // Maps an error to its REST answer; for not_found it checks whether the device or the module is missing.
  // Static: answers given from commit or method callbacks use the registry, never the http_api, which may
  // be gone by then (the engine outlives both and drains its callbacks when it stops).
  static proto::http::response error_for(registry& reg, const error& e, std::string_view device_id,
                                         std::string_view module_id, error_scope scope = error_scope::device);

  // ---- service routes (service_routes.cpp) ----
  void list_devices(call& c);
  void bulk_registry(call& c);
  void get_identity(call& c, const std::string& device_id, const std::string& module_id);
  void put_identity(call& c, const std::string& device_id, const std::string& module_id);
  void delete_identity(call& c, const std::string& device_id, const std::string& module_id);
  void list_modules(call& c, const std::string& device_id);
  void get_twin(call& c, const std::string& device_id, const std::string& module_id);
  void update_twin(call& c, const std::string& device_id, const std::string& module_id, bool replace);
  void invoke_method(call& c, const std::string& device_id, const std::string& module_id);
  void run_query(call& c);
  void device_statistics(call& c);
  void service_statistics(call& c);
  void purge_c2d(call& c, const std::string& device_id);
  void receive_feedback(call& c);
  void settle_feedback(call& c, const std::string& lock_token, bool abandon);

  // ---- device routes (device_routes.cpp) ----
  void send_events(call& c, const device_caller& who);
  void receive_c2d(call& c, const device_caller& who);
  enum class settle { complete, reject, abandon };
  void settle_c2d(call& c, const device_caller& who, const std::string& lock_token, settle how);

  engine& eng_;
  registry& reg_;
  http_api_options opt_;
  query_runner queries_;
  ingest_fn ingest_;  // empty: engine::ingest
};

}  // namespace fleethub::hub
