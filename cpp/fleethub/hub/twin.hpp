// Device and module twins (semantics.md §1): the stored document, merge-patch with null deletes, the
// `$metadata` tree, versions and ETags, the §1.7 validation limits, and the JSON views the wire needs
// (device GET, service REST twin, desired notifications, TwinChangeEvents bodies) plus the storage
// encoding. Pure and I/O-free; a twin_document is plain data, so callers serialize access to one document.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::hub {

struct twin_limits {
  std::size_t max_depth = 10;                  // object/array levels under tags/desired/reported (§1.7)
  std::size_t max_key_bytes = 1024;
  std::size_t max_string_bytes = 4096;
  std::size_t max_tags_bytes = 8 * 1024;
  std::size_t max_section_bytes = 32 * 1024;   // desired, reported each
  std::int64_t max_int = 4503599627370495, min_int = -4503599627370496;
};

struct twin_document {
  std::string device_id, module_id;            // module_id empty for a device twin
  json::value tags = json::object{}, desired = json::object{}, reported = json::object{};  // user properties
  // Metadata trees: objects with "$lastUpdated" (+ "$lastUpdatedVersion" for desired) and one child node
  // per property (object-valued or leaf), keyed like the property.
  json::value desired_meta = json::object{}, reported_meta = json::object{};
  std::int64_t desired_version = 1, reported_version = 1;
  std::int64_t version = 1;                    // twin-level, bumped on every write (tags, desired or reported)

  friend bool operator==(const twin_document&, const twin_document&) = default;
};

twin_document new_twin(std::string device_id, std::string module_id, std::int64_t now_ms);
// Base64 of the 8-byte big-endian `version` ("AAAAAAAAAAE=" for 1).
std::string twin_etag(const twin_document& t);

enum class twin_section { tags, desired, reported };

// Validates `patch` (a JSON object) against the limits, then merges it into the section (RFC 7386: null
// deletes, objects merge deeply, anything else replaces; nulls for keys the target lacks are dropped),
// refreshes metadata with now_ms, bumps that section's $version (not for tags) and the twin `version`
// (even when nothing changed). On error the document is unchanged. Errors are all invalid_argument (IoT
// Hub answers 400004 ArgumentInvalid, size overflow included) and name the key path and the rule.
// Returns the change as applied: the patch, nulls kept (what a device is told / an event carries).
result<json::value> apply_patch(twin_document& t, twin_section s, const json::value& patch, std::int64_t now_ms,
                                const twin_limits& lim = {});
// Replaces the whole section with `value` (an object; nulls in objects are dropped), validated the same
// way; all of the section's metadata is rebuilt with now_ms; versions bumped.
result<void> replace_section(twin_document& t, twin_section s, const json::value& value, std::int64_t now_ms,
                             const twin_limits& lim = {});

// Device GET body: {"desired":{...,"$version":n},"reported":{...,"$version":m}} (no $metadata, §11 item 13).
json::value device_view(const twin_document& t);
// {...props, "$metadata":{...}, "$version":n} for desired/reported; tags as they are.
json::value section_with_meta(const twin_document& t, twin_section s);

// Identity facts the service view copies from the registry/engine.
struct twin_identity {
  std::string device_etag;           // registry etag
  bool enabled = true;
  std::string status_reason;         // empty -> null
  std::int64_t status_updated_ms = 0;
  bool connected = false;
  std::int64_t last_activity_ms = 0;
  std::int64_t c2d_message_count = 0;
  std::string authentication_type = "sas";    // sas | selfSigned | certificateAuthority | none
  std::string primary_thumbprint, secondary_thumbprint;  // empty -> null
  bool iot_edge = false;
};

// The REST twin (§1.1 field order): deviceId, [moduleId], etag, deviceEtag, status, statusReason,
// statusUpdateTime, connectionState, lastActivityTime, cloudToDeviceMessageCount, authenticationType,
// x509Thumbprint, [capabilities (devices only)], version, tags, properties{desired, reported}.
// Timestamps 0 -> "0001-01-01T00:00:00Z".
json::value service_view(const twin_document& t, const twin_identity& id);
// Desired-property notification body: the applied patch plus "$version".
json::value desired_notification(const json::value& applied_patch, std::int64_t desired_version);
// TwinChangeEvents updateTwin body (§8.4): {"version":n, "tags":{patch}} or
// {"version":n, "properties":{"desired"|"reported":{patch..., "$metadata":{changed paths}, "$version":n}}}.
json::value twin_change_update_body(const twin_document& t, twin_section s, const json::value& applied_patch);
// TwinChangeEvents replaceTwin body: {deviceId,[moduleId],etag,version,tags,properties{desired,reported}}.
json::value twin_change_replace_body(const twin_document& t);

// Storage record: JSON text with "fmt":1. Round-trips exactly (versions, metadata, key order, number kinds).
bytes encode_twin(const twin_document& t);
// errc::storage for a corrupt record, errc::schema_mismatch for an unknown fmt.
result<twin_document> decode_twin(bytes_view b);

}  // namespace fleethub::hub
