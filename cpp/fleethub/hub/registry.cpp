#include "fleethub/hub/registry.hpp"

#include <utility>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"
#include "fleethub/core/identity.hpp"
#include "fleethub/core/record_io.hpp"

namespace fleethub::hub {

namespace {

constexpr std::uint8_t device_record_version = 1;
constexpr std::uint8_t policy_record_version = 1;

result<void> check_etag(const device_record& cur, std::string_view if_match) {
  auto want = unquote_etag(if_match);
  if (want.empty() || want == "*" || want == cur.etag) return {};
  return make_error(errc::precondition_failed, "etag mismatch: the identity was changed since etag '" + want +
                                                   "' was read (current etag '" + cur.etag + "'); read it again");
}

result<void> check_key(const std::optional<std::string>& key, const char* which) {
  if (!key || key->empty()) return {};
  auto raw = base64_decode(*key);
  if (!raw || raw->size() < 16 || raw->size() > 64)
    return make_error(errc::invalid_argument, std::string(which) +
                                                  " must be base64 of 16 to 64 bytes (IoT Hub's SAS key rule)");
  return {};
}

std::string make_etag(std::uint64_t version) {
  auto s = std::to_string(version);
  return base64_encode(as_bytes(s));
}

std::string make_generation_id(std::int64_t now_ms) {
  // Unique per (re)creation: time-derived like IoT Hub's, plus random digits against same-ms recreation.
  auto r = random_bytes(2);
  unsigned extra = (static_cast<unsigned>(r[0]) << 8 | r[1]) % 10000;
  return std::to_string(static_cast<std::uint64_t>(now_ms) * 10000 + extra);
}

bytes encode_policy(const policy_record& p) {
  record_writer w(policy_record_version);
  w.str(p.name).u32(p.rights).str(p.primary_key).str(p.secondary_key);
  return w.take();
}

result<policy_record> decode_policy(bytes_view b) {
  record_reader r(b);
  policy_record p;
  p.name = r.str();
  p.rights = r.u32();
  p.primary_key = r.str();
  p.secondary_key = r.str();
  if (!r.ok() || r.version() != policy_record_version)
    return make_error(errc::storage, "corrupt policy record");
  return p;
}

}  // namespace

const char* to_string(auth_type t) {
  switch (t) {
    case auth_type::sas: return "sas";
    case auth_type::self_signed: return "selfSigned";
    case auth_type::certificate_authority: return "certificateAuthority";
    case auth_type::none: return "none";
  }
  return "sas";
}

std::optional<auth_type> auth_type_from_string(std::string_view s) {
  if (s == "sas") return auth_type::sas;
  if (s == "selfSigned") return auth_type::self_signed;
  if (s == "certificateAuthority") return auth_type::certificate_authority;
  if (s == "none") return auth_type::none;
  return std::nullopt;
}

std::string rights_to_string(std::uint32_t r) {
  std::string s;
  auto add = [&](std::uint32_t bit, const char* name) {
    if (!(r & bit)) return;
    if (!s.empty()) s += ", ";
    s += name;
  };
  add(registry_read, "RegistryRead");
  add(registry_write, "RegistryWrite");
  add(service_connect, "ServiceConnect");
  add(device_connect, "DeviceConnect");
  return s;
}

std::optional<std::uint32_t> rights_from_string(std::string_view s) {
  std::uint32_t r = 0;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto part = s.substr(0, comma);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part == "RegistryRead") r |= registry_read;
    else if (part == "RegistryWrite") r |= registry_write;
    else if (part == "ServiceConnect") r |= service_connect;
    else if (part == "DeviceConnect") r |= device_connect;
    else if (!part.empty()) return std::nullopt;
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return r;
}

std::string module_key(std::string_view device_id, std::string_view module_id) {
  std::string k(device_id);
  k.push_back('\0');
  k.append(module_id);
  return k;
}

std::string unquote_etag(std::string_view s) {
  while (!s.empty() && (s.front() == '"' || s.front() == ' ')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '"' || s.back() == ' ')) s.remove_suffix(1);
  if (s.size() >= 2 && s[0] == 'W' && s[1] == '/') return unquote_etag(s.substr(2));
  return std::string(s);
}

bytes encode_device_record(const device_record& d) {
  record_writer w(device_record_version);
  w.str(d.device_id).str(d.module_id).str(d.generation_id).u64(d.version).u8(d.enabled ? 1 : 0)
      .str(d.status_reason).i64(d.status_updated_ms).i64(d.created_ms).u8(static_cast<std::uint8_t>(d.auth))
      .str(d.primary_key).str(d.secondary_key).str(d.primary_thumbprint).str(d.secondary_thumbprint)
      .u8(d.iot_edge ? 1 : 0).str(d.managed_by);
  return w.take();
}

result<device_record> decode_device_record(bytes_view b) {
  record_reader r(b);
  device_record d;
  d.device_id = r.str();
  d.module_id = r.str();
  d.generation_id = r.str();
  d.version = r.u64();
  d.enabled = r.u8() != 0;
  d.status_reason = r.str();
  d.status_updated_ms = r.i64();
  d.created_ms = r.i64();
  auto a = r.u8();
  d.primary_key = r.str();
  d.secondary_key = r.str();
  d.primary_thumbprint = r.str();
  d.secondary_thumbprint = r.str();
  d.iot_edge = r.u8() != 0;
  d.managed_by = r.str();
  if (!r.ok() || r.version() != device_record_version || a > 3)
    return make_error(errc::storage, "corrupt device record");
  d.auth = static_cast<auth_type>(a);
  d.etag = make_etag(d.version);
  return d;
}

registry::registry(store::backend& store, now_fn now) : store_(store), now_(std::move(now)) {}

result<void> registry::ensure_default_policies() {
  struct def { const char* name; std::uint32_t rights; };
  static constexpr def defaults[] = {
      {"iothubowner", registry_read | registry_write | service_connect | device_connect},
      {"service", service_connect},
      {"device", device_connect},
      {"registryRead", registry_read},
      {"registryReadWrite", registry_read | registry_write},
  };
  for (auto& d : defaults) {
    auto cur = store_.get(store::table::policies, d.name);
    if (!cur) return cur.err();
    if (*cur) continue;
    auto put = put_policy(policy_record{d.name, d.rights, {}, {}});
    if (!put) return put.err();
  }
  return {};
}

result<policy_record> registry::put_policy(const policy_record& in) {
  if (in.name.empty() || in.name.size() > 64)
    return make_error(errc::invalid_argument, "policy name must be 1..64 characters");
  if (auto e = check_key(in.primary_key, "primaryKey"); !e) return e.err();
  if (auto e = check_key(in.secondary_key, "secondaryKey"); !e) return e.err();
  policy_record p = in;
  if (p.primary_key.empty()) p.primary_key = random_key_base64();
  if (p.secondary_key.empty()) p.secondary_key = random_key_base64();
  store::write_batch b;
  b.ops.push_back(store::put_op{store::table::policies, p.name, encode_policy(p)});
  auto c = store_.submit_and_wait(std::move(b));
  if (!c.ok()) return c.err;
  return p;
}

result<policy_record> registry::get_policy(std::string_view name) const {
  auto v = store_.get(store::table::policies, name);
  if (!v) return v.err();
  if (!*v) return make_error(errc::not_found, "no shared access policy named '" + std::string(name) + "'");
  return decode_policy(**v);
}

result<std::vector<policy_record>> registry::list_policies() const {
  auto rows = store_.scan(store::table::policies, {}, {}, 1000);
  if (!rows) return rows.err();
  std::vector<policy_record> out;
  for (auto& kv : *rows) {
    auto p = decode_policy(kv.value);
    if (!p) return p.err();
    out.push_back(std::move(*p));
  }
  return out;
}

result<void> registry::remove_policy(std::string_view name) {
  auto cur = get_policy(name);
  if (!cur) return cur.err();
  store::write_batch b;
  b.ops.push_back(store::erase_op{store::table::policies, std::string(name)});
  auto c = store_.submit_and_wait(std::move(b));
  if (!c.ok()) return c.err;
  return {};
}

result<device_record> registry::create(const device_spec& spec) {
  if (auto v = validate_device_id(spec.device_id); !v) return v.err();
  if (!spec.module_id.empty())
    if (auto v = validate_module_id(spec.module_id); !v) return v.err();
  if (auto e = check_key(spec.primary_key, "primaryKey"); !e) return e.err();
  if (auto e = check_key(spec.secondary_key, "secondaryKey"); !e) return e.err();
  std::lock_guard lk(stripe(spec.device_id));
  if (!spec.module_id.empty()) {
    auto parent = get(spec.device_id);
    if (!parent) return parent.err();
  }
  auto existing = get(spec.device_id, spec.module_id);
  if (existing) {
    return make_error(errc::already_exists, spec.module_id.empty()
                                                ? "device '" + spec.device_id + "' already exists"
                                                : "module '" + spec.module_id + "' already exists on device '" +
                                                      spec.device_id + "'");
  }
  if (existing.err().code != errc::not_found) return existing.err();
  auto now = now_();
  device_record d;
  d.device_id = spec.device_id;
  d.module_id = spec.module_id;
  d.generation_id = make_generation_id(now);
  d.created_ms = now;
  d.status_updated_ms = now;
  d.enabled = spec.module_id.empty() ? spec.enabled.value_or(true) : true;
  d.status_reason = spec.status_reason.value_or("");
  d.auth = spec.auth.value_or(auth_type::sas);
  d.primary_key = spec.primary_key.value_or("");
  d.secondary_key = spec.secondary_key.value_or("");
  if (d.auth == auth_type::sas) {
    // IoT Hub generates the keys it is not given.
    if (d.primary_key.empty()) d.primary_key = random_key_base64();
    if (d.secondary_key.empty()) d.secondary_key = random_key_base64();
  }
  d.primary_thumbprint = spec.primary_thumbprint.value_or("");
  d.secondary_thumbprint = spec.secondary_thumbprint.value_or("");
  if (d.auth == auth_type::self_signed && d.primary_thumbprint.empty())
    return make_error(errc::invalid_argument, "selfSigned authentication needs a primary thumbprint");
  d.iot_edge = spec.iot_edge.value_or(false);
  d.managed_by = spec.managed_by.value_or("");
  d.version = 1;
  return write(std::move(d), registry_change::kind::created);
}

result<device_record> registry::update(const device_spec& spec, std::string_view if_match) {
  if (auto e = check_key(spec.primary_key, "primaryKey"); !e) return e.err();
  if (auto e = check_key(spec.secondary_key, "secondaryKey"); !e) return e.err();
  std::lock_guard lk(stripe(spec.device_id));
  auto cur = get(spec.device_id, spec.module_id);
  if (!cur) return cur.err();
  if (auto e = check_etag(*cur, if_match); !e) return e.err();
  device_record d = *cur;
  auto now = now_();
  if (spec.enabled && spec.module_id.empty() && *spec.enabled != d.enabled) {
    d.enabled = *spec.enabled;
    d.status_updated_ms = now;
  }
  if (spec.status_reason) d.status_reason = *spec.status_reason;
  if (spec.auth) d.auth = *spec.auth;
  if (spec.primary_key) d.primary_key = *spec.primary_key;
  if (spec.secondary_key) d.secondary_key = *spec.secondary_key;
  if (d.auth == auth_type::sas) {
    if (d.primary_key.empty()) d.primary_key = random_key_base64();
    if (d.secondary_key.empty()) d.secondary_key = random_key_base64();
  }
  if (spec.primary_thumbprint) d.primary_thumbprint = *spec.primary_thumbprint;
  if (spec.secondary_thumbprint) d.secondary_thumbprint = *spec.secondary_thumbprint;
  if (spec.iot_edge) d.iot_edge = *spec.iot_edge;
  if (spec.managed_by) d.managed_by = *spec.managed_by;
  d.version += 1;
  return write(std::move(d), registry_change::kind::updated);
}

result<device_record> registry::create_or_update(const device_spec& spec, std::string_view if_match) {
  auto cur = get(spec.device_id, spec.module_id);
  if (cur) return update(spec, if_match);
  if (cur.err().code != errc::not_found) return cur.err();
  return create(spec);
}

std::mutex& registry::stripe(std::string_view device_id) const {
  return stripes_[std::hash<std::string_view>{}(device_id) % stripes_.size()];
}

result<device_record> registry::write(device_record d, registry_change::kind k) {
  store::write_batch b;
  auto key = d.module_id.empty() ? d.device_id : module_key(d.device_id, d.module_id);
  auto t = d.module_id.empty() ? store::table::devices : store::table::modules;
  b.ops.push_back(store::put_op{t, std::move(key), encode_device_record(d)});
  if (batch_hook_) {
    d.etag = make_etag(d.version);
    batch_hook_(b, registry_change{k, d});
  }
  auto c = store_.submit_and_wait(std::move(b));
  if (!c.ok()) return c.err;
  d.etag = make_etag(d.version);
  if (listener_) listener_(registry_change{k, d});
  return d;
}

result<device_record> registry::get(std::string_view device_id, std::string_view module_id) const {
  auto v = module_id.empty() ? store_.get(store::table::devices, device_id)
                             : store_.get(store::table::modules, module_key(device_id, module_id));
  if (!v) return v.err();
  if (!*v) {
    if (module_id.empty())
      return make_error(errc::not_found, "device '" + std::string(device_id) + "' is not registered");
    return make_error(errc::not_found, "module '" + std::string(module_id) + "' is not registered on device '" +
                                           std::string(device_id) + "'");
  }
  return decode_device_record(**v);
}

result<void> registry::remove(std::string_view device_id, std::string_view module_id, std::string_view if_match) {
  std::lock_guard lk(stripe(device_id));
  auto cur = get(device_id, module_id);
  if (!cur) return cur.err();
  if (auto e = check_etag(*cur, if_match); !e) return e.err();
  store::write_batch b;
  if (module_id.empty()) {
    b.ops.push_back(store::erase_op{store::table::devices, std::string(device_id)});
    std::string prefix(device_id);
    prefix.push_back('\0');
    b.ops.push_back(store::erase_prefix_op{store::table::modules, std::move(prefix)});
  } else {
    b.ops.push_back(store::erase_op{store::table::modules, module_key(device_id, module_id)});
  }
  if (batch_hook_) batch_hook_(b, registry_change{registry_change::kind::deleted, *cur});
  auto c = store_.submit_and_wait(std::move(b));
  if (!c.ok()) {
    if (batch_failed_) batch_failed_(registry_change{registry_change::kind::deleted, *cur});
    return c.err;
  }
  if (listener_) listener_(registry_change{registry_change::kind::deleted, *cur});
  return {};
}

namespace {

// Decodes a scan of device or module records; a corrupt record fails the whole listing.
result<std::vector<device_record>> decode_rows(result<std::vector<store::key_value>> rows) {
  if (!rows) return rows.err();
  std::vector<device_record> out;
  out.reserve(rows->size());
  for (auto& kv : *rows) {
    auto d = decode_device_record(kv.value);
    if (!d) return d.err();
    out.push_back(std::move(*d));
  }
  return out;
}

}  // namespace

result<std::vector<device_record>> registry::list(std::string_view after, std::size_t limit) const {
  return decode_rows(store_.scan(store::table::devices, {}, after, limit));
}

result<std::vector<device_record>> registry::list_modules(std::string_view device_id) const {
  std::string prefix(device_id);
  prefix.push_back('\0');
  return decode_rows(store_.scan(store::table::modules, prefix, {}, 1000));
}

result<registry::statistics> registry::stats() const {
  statistics s;
  std::string after;
  for (;;) {
    auto page = list(after, 1000);
    if (!page) return page.err();
    for (auto& d : *page) {
      ++s.total;
      ++(d.enabled ? s.enabled : s.disabled);
    }
    if (page->size() < 1000) break;
    after = page->back().device_id;
  }
  return s;
}

}  // namespace fleethub::hub
