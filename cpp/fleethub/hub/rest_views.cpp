#include "fleethub/hub/rest_views.hpp"

#include "fleethub/core/encoding.hpp"
#include "fleethub/hub/engine.hpp"

namespace fleethub::hub {

namespace {

json::value string_or_null(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

json::value authentication_json(const device_record& d) {
  json::object keys;
  keys.emplace_back("primaryKey", string_or_null(d.primary_key));
  keys.emplace_back("secondaryKey", string_or_null(d.secondary_key));
  json::object thumbs;
  thumbs.emplace_back("primaryThumbprint", string_or_null(d.primary_thumbprint));
  thumbs.emplace_back("secondaryThumbprint", string_or_null(d.secondary_thumbprint));
  json::object a;
  a.emplace_back("symmetricKey", std::move(keys));
  a.emplace_back("x509Thumbprint", std::move(thumbs));
  a.emplace_back("type", to_string(d.auth));
  return a;
}

error bad_field(std::string_view field, std::string_view rule) {
  return make_error(errc::invalid_argument, "'" + std::string(field) + "' " + std::string(rule));
}

// A string member, or null/absent. Errors when present with another type.
result<std::optional<std::string>> optional_string(const json::object& o, std::string_view key,
                                                   std::string_view path) {
  const auto* v = o.find(key);
  if (!v || v->is_null()) return std::optional<std::string>{};
  if (!v->is_string()) return bad_field(path, "must be a string or null");
  return std::optional<std::string>(v->as_string());
}

}  // namespace

std::string rest_timestamp(std::int64_t unix_ms) {
  return unix_ms <= 0 ? std::string("0001-01-01T00:00:00Z") : format_iso8601(unix_ms);
}

twin_identity identity_facts(engine& eng, const device_record& rec) {
  twin_identity id;
  id.device_etag = rec.etag;
  id.enabled = rec.enabled;
  id.status_reason = rec.status_reason;
  id.status_updated_ms = rec.status_updated_ms;
  id.authentication_type = to_string(rec.auth);
  id.primary_thumbprint = rec.primary_thumbprint;
  id.secondary_thumbprint = rec.secondary_thumbprint;
  id.iot_edge = rec.iot_edge;
  auto cs = eng.connection_state(rec.device_id, rec.module_id);
  id.connected = cs.connected;
  id.last_activity_ms = cs.updated_ms;
  if (rec.module_id.empty()) id.c2d_message_count = static_cast<std::int64_t>(eng.c2d().depth(rec.device_id));
  return id;
}

twin_identity identity_facts(engine& eng, registry& reg, std::string_view device_id, std::string_view module_id) {
  if (auto rec = reg.get(device_id, module_id)) return identity_facts(eng, *rec);
  twin_identity id;
  auto cs = eng.connection_state(device_id, module_id);
  id.connected = cs.connected;
  id.last_activity_ms = cs.updated_ms;
  return id;
}

json::value service_twin_json(engine& eng, const device_record& rec, const twin_document& twin) {
  return service_view(twin, identity_facts(eng, rec));
}

json::value service_twin_json(engine& eng, registry& reg, const twin_document& twin) {
  return service_view(twin, identity_facts(eng, reg, twin.device_id, twin.module_id));
}

json::value device_json(const device_record& d, engine& eng) {
  auto cs = eng.connection_state(d.device_id);
  json::object o;
  o.emplace_back("deviceId", d.device_id);
  o.emplace_back("generationId", d.generation_id);
  o.emplace_back("etag", d.etag);
  o.emplace_back("connectionState", cs.connected ? "Connected" : "Disconnected");
  o.emplace_back("status", d.enabled ? "enabled" : "disabled");
  o.emplace_back("statusReason", string_or_null(d.status_reason));
  o.emplace_back("connectionStateUpdatedTime", rest_timestamp(cs.updated_ms));
  o.emplace_back("statusUpdatedTime", rest_timestamp(d.status_updated_ms));
  o.emplace_back("lastActivityTime", rest_timestamp(cs.updated_ms));
  o.emplace_back("cloudToDeviceMessageCount", static_cast<std::int64_t>(eng.c2d().depth(d.device_id)));
  o.emplace_back("authentication", authentication_json(d));
  o.emplace_back("capabilities", json::object{{"iotEdge", d.iot_edge}});
  o.emplace_back("deviceScope", nullptr);
  o.emplace_back("parentScopes", json::array{});
  return o;
}

json::value module_json(const device_record& m, engine& eng) {
  auto cs = eng.connection_state(m.device_id, m.module_id);
  json::object o;
  o.emplace_back("moduleId", m.module_id);
  o.emplace_back("managedBy", string_or_null(m.managed_by));
  o.emplace_back("deviceId", m.device_id);
  o.emplace_back("generationId", m.generation_id);
  o.emplace_back("etag", m.etag);
  o.emplace_back("connectionState", cs.connected ? "Connected" : "Disconnected");
  o.emplace_back("connectionStateUpdatedTime", rest_timestamp(cs.updated_ms));
  o.emplace_back("lastActivityTime", rest_timestamp(cs.updated_ms));
  o.emplace_back("cloudToDeviceMessageCount", std::int64_t{0});
  o.emplace_back("authentication", authentication_json(m));
  return o;
}

result<device_spec> device_spec_from_json(const json::value& body, std::string_view device_id,
                                          std::string_view module_id, std::string_view id_key) {
  if (!body.is_object()) return make_error(errc::invalid_argument, "the identity must be a JSON object");
  const auto& o = body.as_object();
  device_spec spec;
  spec.device_id = std::string(device_id);
  spec.module_id = std::string(module_id);

  auto id = optional_string(o, id_key, id_key);
  if (!id) return id.err();
  if (*id && !(*id)->empty() && **id != device_id)
    return bad_field(id_key, "('" + **id + "') does not match the device id in the request ('" +
                                 std::string(device_id) + "')");
  auto mid = optional_string(o, "moduleId", "moduleId");
  if (!mid) return mid.err();
  if (*mid && !(*mid)->empty() && **mid != module_id)
    return bad_field("moduleId", "('" + **mid + "') does not match the module id in the request ('" +
                                     std::string(module_id) + "')");

  auto status = optional_string(o, "status", "status");
  if (!status) return status.err();
  if (*status) {
    if (**status == "enabled") spec.enabled = true;
    else if (**status == "disabled") spec.enabled = false;
    else return bad_field("status", "must be \"enabled\" or \"disabled\"");
  }
  if (const auto* r = o.find("statusReason")) {
    if (r->is_null()) spec.status_reason = std::string();
    else if (r->is_string()) spec.status_reason = r->as_string();
    else return bad_field("statusReason", "must be a string or null");
    if (spec.status_reason->size() > 128) return bad_field("statusReason", "must be at most 128 characters");
  }
  if (const auto* a = o.find("authentication"); a && !a->is_null()) {
    if (!a->is_object()) return bad_field("authentication", "must be a JSON object");
    const auto& ao = a->as_object();
    auto type = optional_string(ao, "type", "authentication.type");
    if (!type) return type.err();
    const json::object empty;
    const auto* sk = ao.find("symmetricKey");
    if (sk && !sk->is_null() && !sk->is_object()) return bad_field("authentication.symmetricKey", "must be an object");
    const auto* tp = ao.find("x509Thumbprint");
    if (tp && !tp->is_null() && !tp->is_object())
      return bad_field("authentication.x509Thumbprint", "must be an object");
    const auto& sko = sk && sk->is_object() ? sk->as_object() : empty;
    const auto& tpo = tp && tp->is_object() ? tp->as_object() : empty;
    auto pk = optional_string(sko, "primaryKey", "authentication.symmetricKey.primaryKey");
    if (!pk) return pk.err();
    auto sk2 = optional_string(sko, "secondaryKey", "authentication.symmetricKey.secondaryKey");
    if (!sk2) return sk2.err();
    auto pt = optional_string(tpo, "primaryThumbprint", "authentication.x509Thumbprint.primaryThumbprint");
    if (!pt) return pt.err();
    auto st = optional_string(tpo, "secondaryThumbprint", "authentication.x509Thumbprint.secondaryThumbprint");
    if (!st) return st.err();
    auth_type t = auth_type::sas;
    if (*type) {
      auto parsed = auth_type_from_string(**type);
      if (!parsed) return bad_field("authentication.type", "must be sas, selfSigned, certificateAuthority or none");
      t = *parsed;
    } else if (*pt && !(*pt)->empty()) {
      t = auth_type::self_signed;  // thumbprints without a type: what else could it mean
    }
    spec.auth = t;
    // Empty keys make the registry generate new ones (IoT Hub generates the keys it is not given).
    spec.primary_key = t == auth_type::sas ? pk->value_or("") : std::string();
    spec.secondary_key = t == auth_type::sas ? sk2->value_or("") : std::string();
    spec.primary_thumbprint = pt->value_or("");
    spec.secondary_thumbprint = st->value_or("");
  }
  if (const auto* c = o.find("capabilities"); c && !c->is_null()) {
    if (!c->is_object()) return bad_field("capabilities", "must be a JSON object");
    if (const auto* e = c->find("iotEdge"); e && !e->is_null()) {
      if (!e->is_bool()) return bad_field("capabilities.iotEdge", "must be true or false");
      spec.iot_edge = e->as_bool();
    }
  }
  if (!module_id.empty()) {
    auto mb = optional_string(o, "managedBy", "managedBy");
    if (!mb) return mb.err();
    if (o.find("managedBy")) spec.managed_by = mb->value_or("");
  }
  return spec;
}

}  // namespace fleethub::hub
