// Device and module twins, durable and consistent (semantics.md §1): reads, service-side updates and
// replacements (tags, desired, If-Match), device-side reported patches, desired-change notifications to the
// device, and a TwinChangeEvents message in the same commit as every change. Identity lifecycle: a twin is
// written in the registry's batch when an identity is created and erased in its batch when it is deleted,
// together with a DeviceLifecycleEvents message (registry batch hook).
//
// Concurrency: one mutex orders every twin write: read (the newest uncommitted version if one is pending,
// else the store), apply, and submit happen under it, so writes to one twin commit in version order and a
// write never reads a stale version. Completion callbacks run on the store's writer thread after the commit.
// Thread safety: every method may be called from any thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/hub/system_events.hpp"
#include "fleethub/hub/twin.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::hub {

// A back-end change: PATCH (merge) or PUT (replace) of tags and/or desired properties.
struct twin_update {
  std::optional<json::value> tags;     // an object
  std::optional<json::value> desired;  // an object
  bool replace = false;                // PUT: absent sections become empty
  std::string if_match;                // empty or "*": unconditional; else the twin etag (quotes ignored)
};

// From a REST/Python body {"tags":{...},"properties":{"desired":{...}}}: other root fields (deviceId, etag,
// ...) are ignored as IoT Hub does; properties.reported is refused (only devices write it).
result<twin_update> parse_twin_update(const json::value& body, bool replace);

class twin_manager {
 public:
  using now_fn = std::function<std::int64_t()>;  // unix ms
  // After a desired change is durable: (client id of the twin's identity, desired $version, notification body).
  using desired_listener = std::function<void(const std::string& client_id, std::int64_t version, std::string body)>;
  using done_fn = std::function<void(result<twin_document>)>;
  using reported_done_fn = std::function<void(result<std::int64_t>)>;  // the new reported $version

  twin_manager(store::backend& store, registry& reg, system_events& events, twin_limits limits, now_fn now);

  void on_desired_change(desired_listener l) { desired_listener_ = std::move(l); }

  // Errors: not_found (no such identity), storage.
  result<twin_document> get(std::string_view device_id, std::string_view module_id = {});

  // `done` runs once: on the caller's thread for a refusal (not_found, invalid_argument,
  // precondition_failed), on the store's writer thread after the commit otherwise.
  void update(std::string_view device_id, std::string_view module_id, twin_update u, done_fn done);
  // A device's reported-properties patch (the MQTT body, a JSON object).
  void patch_reported(std::string_view device_id, std::string_view module_id, bytes_view body, reported_done_fn done);

  // Registry batch hook: adds the twin put/erase and the lifecycle event to the identity's own batch.
  void on_identity_batch(store::write_batch& b, const registry_change& c);
  // The registry committed a change (its listener): a deleted identity's writes may resume for a new one.
  void on_identity_committed(const registry_change& c);

  const twin_limits& limits() const { return limits_; }

 private:
  struct pending_doc {
    std::shared_ptr<const twin_document> doc;
    int pending = 0;  // submitted writes not yet committed
  };
  static std::string key_of(std::string_view device_id, std::string_view module_id);
  // The newest twin (pending or stored); a fresh one for an identity that has none yet. Lock held.
  result<twin_document> load_locked(const std::string& key, std::string_view device_id, std::string_view module_id);
  // Stores `doc`, appends the twin change event, and remembers the version until it commits. Lock held.
  void submit_locked(const std::string& key, twin_document doc, std::string event_body, bool replaced,
                     std::function<void(const store::commit_result&, const twin_document&)> then);

  store::backend& store_;
  registry& registry_;
  system_events& events_;
  twin_limits limits_;
  now_fn now_;
  desired_listener desired_listener_;
  // Recursive: a closed store runs commit callbacks inside submit(), under this lock.
  std::recursive_mutex mu_;
  std::unordered_map<std::string, pending_doc> pending_;
  std::unordered_map<std::string, int> deleting_;  // identities whose delete has not committed yet
};

// "deviceId" or "deviceId/moduleId": the MQTT client id of an identity.
std::string client_id_of(std::string_view device_id, std::string_view module_id);

}  // namespace fleethub::hub
