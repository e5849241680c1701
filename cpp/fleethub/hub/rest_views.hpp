// The JSON shapes of IoT Hub's service REST API (wire-protocol.md §3.2, semantics.md §6.1): device and module
// identities, the service twin with the identity facts it copies, and the parsing of identity bodies
// (PUT /devices/{id}, PUT /devices/{id}/modules/{mid}, bulk ExportImportDevice items) into a device_spec.
// Shared by the REST router, the query runner and (later) the Python bindings, so every surface shows the
// same document. Thread safety: free functions; they read the engine and registry, which are thread-safe.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/hub/twin.hpp"

namespace fleethub::hub {

class engine;

// "0001-01-01T00:00:00Z" for 0 (IoT Hub's "never"), else ISO-8601 UTC with milliseconds.
std::string rest_timestamp(std::int64_t unix_ms);

// Identity facts a service twin copies: registry fields, connection state, queued C2D messages (devices).
twin_identity identity_facts(engine& eng, const device_record& rec);
// The same, looking the identity up; an unknown identity gives default facts (enabled, disconnected).
twin_identity identity_facts(engine& eng, registry& reg, std::string_view device_id, std::string_view module_id);

// The service twin (GET /twins/{id}, query results): service_view with the identity's facts.
json::value service_twin_json(engine& eng, const device_record& rec, const twin_document& twin);
json::value service_twin_json(engine& eng, registry& reg, const twin_document& twin);

// Device identity JSON (pysdk device_py3.py attribute map, camelCase, dates always valid ISO-8601).
json::value device_json(const device_record& d, engine& eng);
// Module identity JSON (module_py3.py).
json::value module_json(const device_record& m, engine& eng);

// Parses an identity body into a spec for registry create/update. `id_key` names the id field ("deviceId"
// for Device/Module bodies, "id" for bulk items); an id in the body must match `device_id` (and a
// "moduleId" must match `module_id`). Rules: status "enabled"/"disabled"; an "authentication" object
// replaces the credentials: type sas with null or missing keys makes the registry generate them, thumbprints
// null -> none; without "authentication" the stored credentials stay (create: generated SAS keys).
// Errors: invalid_argument naming the field.
result<device_spec> device_spec_from_json(const json::value& body, std::string_view device_id,
                                          std::string_view module_id, std::string_view id_key = "deviceId");

}  // namespace fleethub::hub
