#include "fleethub/hub/twin.hpp"

#include <cmath>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {
namespace {

using json::array;
using json::kind;
using json::object;
using json::value;

constexpr std::string_view never = "0001-01-01T00:00:00Z";
constexpr std::string_view k_last_updated = "$lastUpdated";
constexpr std::string_view k_last_updated_version = "$lastUpdatedVersion";

// ---- helpers --------------------------------------------------------------------------------------------

const char* section_name(twin_section s) {
  switch (s) {
    case twin_section::tags: return "tags";
    case twin_section::desired: return "desired";
    case twin_section::reported: return "reported";
  }
  return "?";
}

const char* kind_name(kind k) {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::integer: return "an integer";
    case kind::number: return "a number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
  }
  return "?";
}

// C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
bool is_c1_at(std::string_view s, std::size_t i) {
  return i + 1 < s.size() && static_cast<unsigned char>(s[i]) == 0xC2 &&
         static_cast<unsigned char>(s[i + 1]) >= 0x80 && static_cast<unsigned char>(s[i + 1]) <= 0x9F;
}
bool is_c0(unsigned char c) { return c < 0x20 || c == 0x7F; }

// Key paths go into error messages: control characters are escaped and very long keys cut short.
void append_printable(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  constexpr std::size_t max_shown = 64;
  std::size_t shown = 0;
  for (std::size_t i = 0; i < s.size(); ++i, ++shown) {
    if (shown == max_shown) {
      out += "...";
      return;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (is_c0(c)) {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else if (is_c1_at(s, i)) {
      auto d = static_cast<unsigned char>(s[++i]);
      out += "\\u00";
      out.push_back(hex[d >> 4]);
      out.push_back(hex[d & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
}

std::string quoted(std::string_view path) {
  std::string out = "'";
  append_printable(out, path);
  out += "'";
  return out;
}

std::string child_path(std::string_view parent, std::string_view key) {
  std::string p(parent);
  if (!p.empty()) p.push_back('.');
  p.append(key);
  return p;
}

// Indices of the entries that count in `o`: for a repeated key only the last one (parse() never produces
// repeats, hand-built values might). Linear thanks to hashing when the object is big.
std::vector<std::size_t> effective_entries(const object& o) {
  std::vector<std::size_t> out;
  out.reserve(o.size());
  if (o.size() <= 16) {
    for (std::size_t i = 0; i < o.size(); ++i) {
      bool later = false;
      for (std::size_t j = i + 1; j < o.size() && !later; ++j) later = o[j].first == o[i].first;
      if (!later) out.push_back(i);
    }
    return out;
  }
  std::unordered_map<std::string_view, std::size_t> last;
  last.reserve(o.size());
  for (std::size_t i = 0; i < o.size(); ++i) last[o[i].first] = i;
  for (std::size_t i = 0; i < o.size(); ++i)
    if (last[o[i].first] == i) out.push_back(i);
  return out;
}

// Key -> entry index over an object that is not modified while the index lives. Linear for small objects.
class key_index {
 public:
  explicit key_index(const object& o) : o_(o) {
    if (o.size() > 16) {
      map_.reserve(o.size());
      for (std::size_t i = 0; i < o.size(); ++i) map_[o[i].first] = i;  // last wins
    }
  }
  // npos when absent.
  std::size_t find(std::string_view key) const {
    if (o_.size() > 16) {
      auto it = map_.find(key);
      return it == map_.end() ? npos : it->second;
    }
    for (std::size_t i = o_.size(); i-- > 0;)
      if (o_[i].first == key) return i;
    return npos;
  }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  const object& o_;
  std::unordered_map<std::string_view, std::size_t> map_;
};

// ---- validation (§1.7) ----------------------------------------------------------------------------------

// All validation errors are invalid_argument: IoT Hub answers 400004 ArgumentInvalid for every twin rule,
// size included (semantics §11 item 6), so callers map one code to one HTTP status.
error invalid(std::string msg) { return make_error(errc::invalid_argument, std::move(msg)); }

result<void> validate_key(std::string_view key, const std::string& path, const twin_limits& lim) {
  constexpr std::string_view rule = "; twin keys may not contain '.', '$', spaces or control characters";
  if (key.empty()) return invalid("an empty key under " + (path.empty() ? std::string("the section root") : quoted(path)) +
                                  "; twin keys must be 1.." + std::to_string(lim.max_key_bytes) + " bytes");
  std::string full = child_path(path, key);
  if (key.size() > lim.max_key_bytes)
    return invalid("key " + quoted(full) + " is " + std::to_string(key.size()) + " bytes; twin keys are limited to " +
                   std::to_string(lim.max_key_bytes) + " bytes of UTF-8");
  if (key.front() == '$')
    return invalid("key " + quoted(full) + " starts with '$'; $-keys ($metadata, $version, ...) are reserved for the hub");
  for (std::size_t i = 0; i < key.size(); ++i) {
    auto c = static_cast<unsigned char>(key[i]);
    if (c == '.') return invalid("key " + quoted(full) + " contains '.'" + std::string(rule));
    if (c == '$') return invalid("key " + quoted(full) + " contains '$'" + std::string(rule));
    if (c == ' ') return invalid("key " + quoted(full) + " contains a space" + std::string(rule));
    if (is_c0(c) || is_c1_at(key, i))
      return invalid("key " + quoted(full) + " contains a control character" + std::string(rule));
  }
  return {};
}

// `level` is the nesting level of `v` when it is a container: the section root is 0, `tags.a` is 1.
result<void> validate_value(const value& v, const std::string& path, std::size_t level, const twin_limits& lim) {
  switch (v.type()) {
    case kind::null:
    case kind::boolean:
      return {};
    case kind::integer:
      if (v.as_int() > lim.max_int || v.as_int() < lim.min_int)
        return invalid("property " + quoted(path) + " = " + std::to_string(v.as_int()) +
                       " is outside the twin integer range [" + std::to_string(lim.min_int) + ", " +
                       std::to_string(lim.max_int) + "]");
      return {};
    case kind::number:
      if (!std::isfinite(v.as_double())) return invalid("property " + quoted(path) + " is not a finite number");
      return {};
    case kind::string:
      if (v.as_string().size() > lim.max_string_bytes)
        return invalid("property " + quoted(path) + " is a string of " + std::to_string(v.as_string().size()) +
                       " bytes; twin strings are limited to " + std::to_string(lim.max_string_bytes) + " bytes");
      return {};
    case kind::array: {
      if (level > lim.max_depth)
        return invalid("property " + quoted(path) + " nests deeper than " + std::to_string(lim.max_depth) + " levels");
      const auto& a = v.as_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        auto r = validate_value(a[i], path + "[" + std::to_string(i) + "]", level + 1, lim);
        if (!r) return r;
      }
      return {};
    }
    case kind::object: {
      if (level > lim.max_depth)
        return invalid("property " + quoted(path) + " nests deeper than " + std::to_string(lim.max_depth) + " levels");
      for (const auto& [k, child] : v.as_object()) {
        if (auto r = validate_key(k, path, lim); !r) return r;
        if (auto r = validate_value(child, child_path(path, k), level + 1, lim); !r) return r;
      }
      return {};
    }
  }
  return {};
}

// §1.7 size: keys and strings as UTF-8 bytes without C0/C1 control characters, numbers 8, booleans 4;
// null (only possible inside arrays once merged) 1, arrays the sum of their elements.
std::size_t text_size(std::string_view s) {
  std::size_t n = s.size();
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (is_c0(static_cast<unsigned char>(s[i]))) {
      --n;
    } else if (is_c1_at(s, i)) {
      n -= 2;
      ++i;
    }
  }
  return n;
}

std::size_t value_size(const value& v) {
  switch (v.type()) {
    case kind::null: return 1;
    case kind::boolean: return 4;
    case kind::integer:
    case kind::number: return 8;
    case kind::string: return text_size(v.as_string());
    case kind::array: {
      std::size_t n = 0;
      for (const auto& e : v.as_array()) n += value_size(e);
      return n;
    }
    case kind::object: {
      std::size_t n = 0;
      for (const auto& [k, e] : v.as_object()) n += text_size(k) + value_size(e);
      return n;
    }
  }
  return 0;
}

result<void> check_section_size(const value& section, twin_section s, const twin_limits& lim) {
  std::size_t limit = s == twin_section::tags ? lim.max_tags_bytes : lim.max_section_bytes;
  std::size_t n = value_size(section);
  if (n > limit)
    return invalid(std::string(section_name(s)) + " would be " + std::to_string(n) + " bytes; the limit is " +
                   std::to_string(limit) + " bytes (keys plus values, counted as IoT Hub does)");
  return {};
}

// ---- merge and metadata (§1.4, §1.5) --------------------------------------------------------------------

struct stamp {
  std::string when;        // ISO-8601
  bool with_version;       // desired only
  std::int64_t version;
};

value meta_node(const stamp& st) {
  object o;
  o.emplace_back(std::string(k_last_updated), value(st.when));
  if (st.with_version) o.emplace_back(std::string(k_last_updated_version), value(st.version));
  return value(std::move(o));
}

void touch(value& node, const stamp& st) {
  if (!node.is_object()) node = object{};
  auto& o = node.as_object();
  o.set(std::string(k_last_updated), value(st.when));
  if (st.with_version) o.set(std::string(k_last_updated_version), value(st.version));
}

// A patch value as stored: nulls inside objects dropped (merge-patch applied to nothing); arrays verbatim.
value stripped(const value& v) {
  if (!v.is_object()) return v;
  const auto& o = v.as_object();
  object out;
  for (std::size_t i : effective_entries(o)) {
    if (o[i].second.is_null()) continue;
    out.emplace_back(o[i].first, stripped(o[i].second));
  }
  return value(std::move(out));
}

// Metadata for a freshly written (already stripped) value: a node for it and for every object member.
value fresh_meta(const value& v, const stamp& st) {
  value node = meta_node(st);
  if (v.is_object())
    for (const auto& [k, child] : v.as_object()) node.as_object().emplace_back(k, fresh_meta(child, st));
  return node;
}

// Merges `patch` into `target` (both objects) and keeps `meta` (target's metadata node; nullptr for tags)
// in step. Rebuilds the level rather than editing in place so that big objects stay linear.
void merge(value& target, value* meta, const object& patch, const stamp& st) {
  if (meta) touch(*meta, st);  // the node of every object on the path of a write is refreshed
  object& t = target.as_object();
  std::vector<std::size_t> eff = effective_entries(patch);
  std::unordered_map<std::string_view, std::size_t> pidx;  // patch key -> entry (patch is const)
  pidx.reserve(eff.size());
  for (std::size_t i : eff) pidx.emplace(patch[i].first, i);
  std::vector<bool> used(patch.size(), false);

  object* m = meta ? &meta->as_object() : nullptr;
  std::unordered_map<std::string_view, std::size_t> midx;  // metadata child key -> entry
  object new_m;
  if (m) {
    midx.reserve(m->size());
    for (std::size_t i = 0; i < m->size(); ++i) {
      if (!(*m)[i].first.empty() && (*m)[i].first.front() == '$') new_m.push_back((*m)[i]);
      else midx[(*m)[i].first] = i;
    }
  }
  // Takes the child's metadata node out of *m; entries leave midx first so no key view dangles.
  auto take_meta = [&](std::string_view key) -> value {
    if (!m) return value();
    auto it = midx.find(key);
    if (it == midx.end()) return value();
    std::size_t i = it->second;
    midx.erase(it);
    return std::move((*m)[i].second);
  };

  object new_t;
  new_t.reserve(t.size() + eff.size());
  if (m) new_m.reserve(new_m.size() + t.size() + eff.size());
  for (auto& [k, v] : t) {
    auto p = pidx.find(k);
    if (p == pidx.end()) {  // untouched
      value mv = take_meta(k);
      if (m && !mv.is_null()) new_m.emplace_back(k, std::move(mv));
      new_t.emplace_back(std::move(k), std::move(v));
      continue;
    }
    const value& pv = patch[p->second].second;
    used[p->second] = true;
    value mv = take_meta(k);
    if (pv.is_null()) continue;  // delete, metadata subtree with it
    if (pv.is_object() && v.is_object()) {
      if (m && !mv.is_object()) mv = meta_node(st);
      merge(v, m ? &mv : nullptr, pv.as_object(), st);
    } else {
      v = stripped(pv);  // replace (a primitive loses its old child metadata)
      if (m) mv = fresh_meta(v, st);
    }
    if (m) new_m.emplace_back(k, std::move(mv));
    new_t.emplace_back(std::move(k), std::move(v));
  }
  for (std::size_t i : eff) {  // new keys, in patch order; nulls for absent keys are dropped
    if (used[i] || patch[i].second.is_null()) continue;
    value v = stripped(patch[i].second);
    if (m) new_m.emplace_back(patch[i].first, fresh_meta(v, st));
    new_t.emplace_back(patch[i].first, std::move(v));
  }
  t = std::move(new_t);
  if (m) *m = std::move(new_m);
}

// Metadata of the paths a patch touched (for TwinChangeEvents): the node's own $-entries plus, per patched
// key, either the recursion (object patches) or the whole stored node. Deleted keys have none.
value changed_meta(const object& patch, const value& node) {
  object out;
  if (!node.is_object()) return value(std::move(out));
  const object& n = node.as_object();
  for (const auto& [k, v] : n)
    if (!k.empty() && k.front() == '$') out.emplace_back(k, v);
  key_index idx(n);
  for (std::size_t i : effective_entries(patch)) {
    const auto& [k, pv] = patch[i];
    if (pv.is_null()) continue;
    std::size_t j = idx.find(k);
    if (j == key_index::npos) continue;
    if (pv.is_object()) out.emplace_back(k, changed_meta(pv.as_object(), n[j].second));
    else out.emplace_back(k, n[j].second);
  }
  return value(std::move(out));
}

value& section_ref(twin_document& t, twin_section s) {
  switch (s) {
    case twin_section::tags: return t.tags;
    case twin_section::desired: return t.desired;
    case twin_section::reported: return t.reported;
  }
  return t.tags;
}
const value& section_ref(const twin_document& t, twin_section s) {
  return section_ref(const_cast<twin_document&>(t), s);
}

stamp make_stamp(const twin_document& t, twin_section s, std::int64_t now_ms) {
  return stamp{format_iso8601(now_ms), s == twin_section::desired, t.desired_version + 1};
}

void bump(twin_document& t, twin_section s) {
  if (s == twin_section::desired) ++t.desired_version;
  if (s == twin_section::reported) ++t.reported_version;
  ++t.version;
}

std::string timestamp(std::int64_t ms) { return ms == 0 ? std::string(never) : format_iso8601(ms); }

value string_or_null(const std::string& s) { return s.empty() ? value() : value(s); }

}  // namespace

// ---- public ---------------------------------------------------------------------------------------------

twin_document new_twin(std::string device_id, std::string module_id, std::int64_t now_ms) {
  twin_document t;
  t.device_id = std::move(device_id);
  t.module_id = std::move(module_id);
  t.desired_meta = meta_node(stamp{format_iso8601(now_ms), true, 1});
  t.reported_meta = meta_node(stamp{format_iso8601(now_ms), false, 0});
  return t;
}

std::string twin_etag(const twin_document& t) {
  std::uint8_t be[8];
  auto v = static_cast<std::uint64_t>(t.version);
  for (int i = 7; i >= 0; --i, v >>= 8) be[i] = static_cast<std::uint8_t>(v & 0xFF);
  return base64_encode(bytes_view(be, 8));
}

result<json::value> apply_patch(twin_document& t, twin_section s, const json::value& patch, std::int64_t now_ms,
                                const twin_limits& lim) {
  if (!patch.is_object())
    return invalid(std::string("a twin patch for ") + section_name(s) + " must be a JSON object (got " +
                   kind_name(patch.type()) + ")");
  if (auto r = validate_value(patch, "", 0, lim); !r) return r.err();

  // Work on copies so that a refused patch (size is only known after merging) leaves no trace.
  value section = section_ref(t, s);
  if (!section.is_object()) section = object{};
  value meta;
  value* meta_ptr = nullptr;
  if (s != twin_section::tags) {
    meta = s == twin_section::desired ? t.desired_meta : t.reported_meta;
    meta_ptr = &meta;
  }
  merge(section, meta_ptr, patch.as_object(), make_stamp(t, s, now_ms));
  if (auto r = check_section_size(section, s, lim); !r) return r.err();

  section_ref(t, s) = std::move(section);
  if (s == twin_section::desired) t.desired_meta = std::move(meta);
  if (s == twin_section::reported) t.reported_meta = std::move(meta);
  bump(t, s);
  return patch;
}

result<void> replace_section(twin_document& t, twin_section s, const json::value& v, std::int64_t now_ms,
                             const twin_limits& lim) {
  if (!v.is_object())
    return invalid(std::string("a replacement for ") + section_name(s) + " must be a JSON object (got " +
                   kind_name(v.type()) + ")");
  if (auto r = validate_value(v, "", 0, lim); !r) return r;
  value section = stripped(v);
  if (auto r = check_section_size(section, s, lim); !r) return r;
  stamp st = make_stamp(t, s, now_ms);
  if (s == twin_section::desired) t.desired_meta = fresh_meta(section, st);
  if (s == twin_section::reported) t.reported_meta = fresh_meta(section, st);
  section_ref(t, s) = std::move(section);
  bump(t, s);
  return {};
}

json::value device_view(const twin_document& t) {
  object desired = t.desired.is_object() ? t.desired.as_object() : object{};
  desired.emplace_back("$version", t.desired_version);
  object reported = t.reported.is_object() ? t.reported.as_object() : object{};
  reported.emplace_back("$version", t.reported_version);
  object out;
  out.emplace_back("desired", std::move(desired));
  out.emplace_back("reported", std::move(reported));
  return out;
}

json::value section_with_meta(const twin_document& t, twin_section s) {
  if (s == twin_section::tags) return t.tags;
  const value& props = section_ref(t, s);
  object out = props.is_object() ? props.as_object() : object{};
  out.emplace_back("$metadata", s == twin_section::desired ? t.desired_meta : t.reported_meta);
  out.emplace_back("$version", s == twin_section::desired ? t.desired_version : t.reported_version);
  return out;
}

namespace {
object properties_with_meta(const twin_document& t) {
  object props;
  props.emplace_back("desired", section_with_meta(t, twin_section::desired));
  props.emplace_back("reported", section_with_meta(t, twin_section::reported));
  return props;
}
}  // namespace

json::value service_view(const twin_document& t, const twin_identity& id) {
  object out;
  out.emplace_back("deviceId", t.device_id);
  if (!t.module_id.empty()) out.emplace_back("moduleId", t.module_id);
  out.emplace_back("etag", twin_etag(t));
  out.emplace_back("deviceEtag", id.device_etag);
  out.emplace_back("status", id.enabled ? "enabled" : "disabled");
  out.emplace_back("statusReason", string_or_null(id.status_reason));
  out.emplace_back("statusUpdateTime", timestamp(id.status_updated_ms));
  out.emplace_back("connectionState", id.connected ? "Connected" : "Disconnected");
  out.emplace_back("lastActivityTime", timestamp(id.last_activity_ms));
  out.emplace_back("cloudToDeviceMessageCount", id.c2d_message_count);
  out.emplace_back("authenticationType", id.authentication_type);
  object thumbs;
  thumbs.emplace_back("primaryThumbprint", string_or_null(id.primary_thumbprint));
  thumbs.emplace_back("secondaryThumbprint", string_or_null(id.secondary_thumbprint));
  out.emplace_back("x509Thumbprint", std::move(thumbs));
  if (t.module_id.empty()) out.emplace_back("capabilities", object{{"iotEdge", id.iot_edge}});
  out.emplace_back("version", t.version);
  out.emplace_back("tags", t.tags);
  out.emplace_back("properties", properties_with_meta(t));
  return out;
}

json::value desired_notification(const json::value& applied_patch, std::int64_t desired_version) {
  object out = applied_patch.is_object() ? applied_patch.as_object() : object{};
  out.set("$version", desired_version);
  return out;
}

json::value twin_change_update_body(const twin_document& t, twin_section s, const json::value& applied_patch) {
  object out;
  out.emplace_back("version", t.version);
  if (s == twin_section::tags) {
    out.emplace_back("tags", applied_patch);
    return out;
  }
  const object empty;
  const object& patch = applied_patch.is_object() ? applied_patch.as_object() : empty;
  object sec = patch;
  sec.emplace_back("$metadata", changed_meta(patch, s == twin_section::desired ? t.desired_meta : t.reported_meta));
  sec.emplace_back("$version", s == twin_section::desired ? t.desired_version : t.reported_version);
  object props;
  props.emplace_back(section_name(s), std::move(sec));
  out.emplace_back("properties", std::move(props));
  return out;
}

json::value twin_change_replace_body(const twin_document& t) {
  object out;
  out.emplace_back("deviceId", t.device_id);
  if (!t.module_id.empty()) out.emplace_back("moduleId", t.module_id);
  out.emplace_back("etag", twin_etag(t));
  out.emplace_back("version", t.version);
  out.emplace_back("tags", t.tags);
  out.emplace_back("properties", properties_with_meta(t));
  return out;
}

// ---- storage --------------------------------------------------------------------------------------------

bytes encode_twin(const twin_document& t) {
  object o;
  o.emplace_back("fmt", 1);
  o.emplace_back("deviceId", t.device_id);
  o.emplace_back("moduleId", t.module_id);
  o.emplace_back("version", t.version);
  o.emplace_back("desiredVersion", t.desired_version);
  o.emplace_back("reportedVersion", t.reported_version);
  o.emplace_back("tags", t.tags);
  o.emplace_back("desired", t.desired);
  o.emplace_back("reported", t.reported);
  o.emplace_back("desiredMeta", t.desired_meta);
  o.emplace_back("reportedMeta", t.reported_meta);
  return to_bytes(json::serialize(value(std::move(o))));
}

result<twin_document> decode_twin(bytes_view b) {
  auto corrupt = [](std::string what) { return make_error(errc::storage, "twin record is corrupt: " + what); };
  // Generous limits: this is our own record, and metadata nests one level deeper than the properties.
  auto parsed = json::parse(as_string_view(b), json::parse_limits{1000, std::size_t{1} << 30});
  if (!parsed) return corrupt(parsed.err().message);
  value& root = *parsed;
  if (!root.is_object()) return corrupt("not a JSON object");
  const value* fmt = root.find("fmt");
  if (!fmt || !fmt->is_int()) return corrupt("no \"fmt\" field");
  if (fmt->as_int() != 1)
    return make_error(errc::schema_mismatch, "twin record format " + std::to_string(fmt->as_int()) +
                                                 " is not supported by this version (expected 1)");
  twin_document t;
  auto get = [&](std::string_view key, kind k) -> value* {
    value* v = root.find(key);
    return v && v->type() == k ? v : nullptr;
  };
  struct str_field { std::string_view key; std::string* dst; };
  for (auto [key, dst] : {str_field{"deviceId", &t.device_id}, str_field{"moduleId", &t.module_id}}) {
    value* v = get(key, kind::string);
    if (!v) return corrupt("\"" + std::string(key) + "\" is missing or not a string");
    *dst = std::move(v->as_string());
  }
  struct int_field { std::string_view key; std::int64_t* dst; };
  for (auto [key, dst] : {int_field{"version", &t.version}, int_field{"desiredVersion", &t.desired_version},
                          int_field{"reportedVersion", &t.reported_version}}) {
    value* v = get(key, kind::integer);
    if (!v) return corrupt("\"" + std::string(key) + "\" is missing or not an integer");
    *dst = v->as_int();
  }
  struct obj_field { std::string_view key; value* dst; };
  for (auto [key, dst] : {obj_field{"tags", &t.tags}, obj_field{"desired", &t.desired},
                          obj_field{"reported", &t.reported}, obj_field{"desiredMeta", &t.desired_meta},
                          obj_field{"reportedMeta", &t.reported_meta}}) {
    value* v = get(key, kind::object);
    if (!v) return corrupt("\"" + std::string(key) + "\" is missing or not an object");
    *dst = std::move(*v);
  }
  return t;
}

}  // namespace fleethub::hub
