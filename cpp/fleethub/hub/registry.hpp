// Identity registry: devices, modules and shared access policies, persisted in the store.
// Who calls it: the authenticator (connect-time lookups), the bindings (CRUD), later the REST API.
// Owns nothing but a reference to the store; every call reads or writes through it, so a record is the same
// for every thread and survives restarts. Thread safety: all methods may be called from any thread;
// writes to one device (and its modules) are serialized so etag checks and generation ids stay consistent;
// writes to different devices commit concurrently (and share group commits).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fleethub/core/result.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::hub {

enum class auth_type : std::uint8_t { sas = 0, self_signed = 1, certificate_authority = 2, none = 3 };
const char* to_string(auth_type t);
std::optional<auth_type> auth_type_from_string(std::string_view s);

struct device_record {
  std::string device_id;
  std::string module_id;          // non-empty for a module identity
  std::string generation_id;
  std::string etag;
  bool enabled = true;            // modules are always enabled
  std::string status_reason;
  std::int64_t status_updated_ms = 0;
  std::int64_t created_ms = 0;
  auth_type auth = auth_type::sas;
  std::string primary_key;        // base64 SAS keys (auth == sas)
  std::string secondary_key;
  std::string primary_thumbprint; // X.509 (auth == self_signed)
  std::string secondary_thumbprint;
  bool iot_edge = false;
  std::string managed_by;         // modules
  std::uint64_t version = 1;      // bumps on every update; the etag is derived from it
};

// What a caller supplies to create or update an identity. Unset optionals keep (update) or default (create).
struct device_spec {
  std::string device_id;
  std::string module_id;
  std::optional<bool> enabled;
  std::optional<std::string> status_reason;
  std::optional<auth_type> auth;
  std::optional<std::string> primary_key;
  std::optional<std::string> secondary_key;
  std::optional<std::string> primary_thumbprint;
  std::optional<std::string> secondary_thumbprint;
  std::optional<bool> iot_edge;
  std::optional<std::string> managed_by;
};

// Shared access policy rights (bit set).
enum rights : std::uint32_t {
  registry_read = 1,
  registry_write = 2,
  service_connect = 4,
  device_connect = 8,
};
std::string rights_to_string(std::uint32_t r);                 // "RegistryRead, RegistryWrite, ..."
std::optional<std::uint32_t> rights_from_string(std::string_view s);

struct policy_record {
  std::string name;
  std::uint32_t rights = 0;
  std::string primary_key;
  std::string secondary_key;
};

struct registry_change {
  enum class kind { created, updated, deleted } what;
  device_record record;
};

class registry {
 public:
  using now_fn = std::function<std::int64_t()>;  // unix ms; injected so tests control time
  registry(store::backend& store, now_fn now);

  // Creates the default policies (iothubowner, service, device, registryRead, registryReadWrite) with
  // generated keys when missing. Idempotent; call once at start.
  result<void> ensure_default_policies();

  // Errors: invalid_argument (id rules, bad key), already_exists.
  result<device_record> create(const device_spec& spec);
  // if_match: empty or "*" = unconditional; otherwise must equal the current etag (quotes ignored).
  // Errors: not_found, precondition_failed, invalid_argument.
  result<device_record> update(const device_spec& spec, std::string_view if_match = {});
  result<device_record> create_or_update(const device_spec& spec, std::string_view if_match = {});
  result<device_record> get(std::string_view device_id, std::string_view module_id = {}) const;
  // Deletes a device and its modules (or one module). Errors: not_found, precondition_failed.
  result<void> remove(std::string_view device_id, std::string_view module_id = {}, std::string_view if_match = {});
  // Devices ordered by id, ids > after, at most limit.
  result<std::vector<device_record>> list(std::string_view after, std::size_t limit) const;
  result<std::vector<device_record>> list_modules(std::string_view device_id) const;
  struct statistics { std::uint64_t total = 0, enabled = 0, disabled = 0; };
  result<statistics> stats() const;

  result<policy_record> get_policy(std::string_view name) const;
  result<std::vector<policy_record>> list_policies() const;
  result<policy_record> put_policy(const policy_record& p);  // keys generated when empty
  result<void> remove_policy(std::string_view name);

  // Called after every committed change (on the caller's thread); the hub uses it to drop sessions of
  // disabled or deleted identities.
  void on_change(std::function<void(const registry_change&)> cb) { listener_ = std::move(cb); }
  // Lets another component add ops to the registry's own write batch for a change (twins and lifecycle
  // events commit atomically with the identity). Runs on the caller's thread, before the commit.
  // `failed` runs (instead of the change listener) when such a batch did not commit.
  using batch_hook = std::function<void(store::write_batch&, const registry_change&)>;
  void on_batch(batch_hook h, std::function<void(const registry_change&)> failed = {}) {
    batch_hook_ = std::move(h);
    batch_failed_ = std::move(failed);
  }

 private:
  result<device_record> write(device_record rec, registry_change::kind k);
  store::backend& store_;
  now_fn now_;
  // Writes to one device (and its modules) are serialized so etag checks and generation ids stay
  // consistent; writes to different devices run concurrently, so their commits share group commits.
  std::mutex& stripe(std::string_view device_id) const;
  mutable std::array<std::mutex, 64> stripes_;
  std::function<void(const registry_change&)> listener_;
  batch_hook batch_hook_;
  std::function<void(const registry_change&)> batch_failed_;
};

// An etag or lock token as clients send it in If-Match/ETag headers (`"MQ=="`, `W/"MQ=="`, `"*"`), bare.
std::string unquote_etag(std::string_view s);

bytes encode_device_record(const device_record& r);
result<device_record> decode_device_record(bytes_view b);
std::string module_key(std::string_view device_id, std::string_view module_id);

}  // namespace fleethub::hub
