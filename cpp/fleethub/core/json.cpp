#include "fleethub/core/json.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <string>
#include <unordered_map>

namespace fleethub::json {

// ---- object ---------------------------------------------------------------------------------------------

value* object::find(std::string_view key) {
  for (auto& [k, v] : *this)
    if (k == key) return &v;
  return nullptr;
}

const value* object::find(std::string_view key) const {
  for (const auto& [k, v] : *this)
    if (k == key) return &v;
  return nullptr;
}

value& object::set(std::string key, value v) {
  if (value* existing = find(key)) {
    *existing = std::move(v);
    return *existing;
  }
  emplace_back(std::move(key), std::move(v));
  return back().second;
}

bool object::erase(std::string_view key) {
  for (auto it = begin(); it != end(); ++it) {
    if (it->first == key) {
      base::erase(it);
      return true;
    }
  }
  return false;
}

// ---- equality -------------------------------------------------------------------------------------------

namespace {

bool objects_equal(const object& a, const object& b) {
  if (a.size() != b.size()) return false;
  // Fast path: same order (round trips, copies). Falls back to lookups from the first difference.
  std::size_t i = 0;
  for (; i < a.size(); ++i) {
    if (a[i].first != b[i].first) break;
    if (!(a[i].second == b[i].second)) return false;
  }
  if (i == a.size()) return true;
  if (a.size() - i <= 16) {
    for (std::size_t j = i; j < a.size(); ++j) {
      const value* other = nullptr;
      for (std::size_t k = i; k < b.size(); ++k)
        if (b[k].first == a[j].first) { other = &b[k].second; break; }
      if (!other || !(a[j].second == *other)) return false;
    }
    return true;
  }
  // Large reordered objects: hash b's remaining keys so the comparison stays linear.
  std::unordered_map<std::string_view, const value*> index;
  index.reserve(b.size() - i);
  for (std::size_t k = i; k < b.size(); ++k) index.emplace(b[k].first, &b[k].second);
  for (std::size_t j = i; j < a.size(); ++j) {
    auto it = index.find(a[j].first);
    if (it == index.end() || !(a[j].second == *it->second)) return false;
  }
  return true;
}

}  // namespace

bool operator==(const value& a, const value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case kind::null: return true;
    case kind::boolean: return a.as_bool() == b.as_bool();
    case kind::integer: return a.as_int() == b.as_int();
    case kind::number: return a.as_double() == b.as_double();
    case kind::string: return a.as_string() == b.as_string();
    case kind::array: return a.as_array() == b.as_array();
    case kind::object: return objects_equal(a.as_object(), b.as_object());
  }
  return false;
}

// ---- parse ----------------------------------------------------------------------------------------------

namespace {

struct converter {
  std::size_t max_depth;
  bool too_deep = false;

  // `depth` is the nesting level of `e` itself when it is a container (the root container is 1).
  value convert(simdjson::dom::element e, std::size_t depth) {
    using simdjson::dom::element_type;
    switch (e.type()) {
      case element_type::NULL_VALUE: return value();
      case element_type::BOOL: return value(bool(e.get_bool().value_unsafe()));
      case element_type::INT64: return value(e.get_int64().value_unsafe());
      case element_type::UINT64: return value(static_cast<double>(e.get_uint64().value_unsafe()));
      case element_type::DOUBLE: return value(e.get_double().value_unsafe());
      case element_type::STRING: return value(e.get_string().value_unsafe());
      case element_type::ARRAY: {
        if (depth > max_depth) { too_deep = true; return value(); }
        array out;
        simdjson::dom::array a = e.get_array().value_unsafe();
        out.reserve(a.size());
        for (simdjson::dom::element child : a) {
          out.push_back(convert(child, depth + 1));
          if (too_deep) return value();
        }
        return value(std::move(out));
      }
      case element_type::OBJECT: {
        if (depth > max_depth) { too_deep = true; return value(); }
        simdjson::dom::object o = e.get_object().value_unsafe();
        object out;
        out.reserve(o.size());
        // Duplicate keys: the last one wins. Small objects use the linear set(); big ones get an index so
        // a hostile body with many keys cannot make parsing quadratic.
        if (o.size() <= 32) {
          for (auto field : o) {
            value v = convert(field.value, depth + 1);
            if (too_deep) return value();
            out.set(std::string(field.key), std::move(v));
          }
        } else {
          std::unordered_map<std::string_view, std::size_t> index;  // keys live in the parser's buffer
          index.reserve(o.size());
          for (auto field : o) {
            value v = convert(field.value, depth + 1);
            if (too_deep) return value();
            auto [it, inserted] = index.emplace(field.key, out.size());
            if (inserted) out.emplace_back(std::string(field.key), std::move(v));
            else out[it->second].second = std::move(v);
          }
        }
        return value(std::move(out));
      }
    }
    return value();
  }
};

}  // namespace

result<value> parse(std::string_view text, const parse_limits& lim) {
  if (text.size() > lim.max_bytes) {
    return make_error(errc::too_large, "JSON body is " + std::to_string(text.size()) +
                                           " bytes; the limit is " + std::to_string(lim.max_bytes));
  }
  // An empty view may carry a null data(): simdjson would memcpy from it (UB), so answer here.
  if (text.empty()) return make_error(errc::invalid_argument, "body is empty or whitespace only; expected a JSON value");
  // One parser per thread: it keeps its buffers between calls (sized to the largest body seen, bounded
  // by max_bytes), which is what makes simdjson fast.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  // realloc_if_needed=true: simdjson copies into its own padded buffer, so `text` needs no padding.
  auto err = parser.parse(text.data(), text.size(), true).get(root);
  if (err == simdjson::DEPTH_ERROR) {
    return make_error(errc::invalid_argument,
                      "JSON nests deeper than " + std::to_string(lim.max_depth) + " levels");
  }
  if (err == simdjson::EMPTY) {
    return make_error(errc::invalid_argument, "body is empty or whitespace only; expected a JSON value");
  }
  if (err) {
    return make_error(errc::invalid_argument,
                      std::string("body is not valid JSON: ") + simdjson::error_message(err));
  }
  converter c{lim.max_depth};
  value out = c.convert(root, 1);
  if (c.too_deep) {
    return make_error(errc::invalid_argument,
                      "JSON nests deeper than " + std::to_string(lim.max_depth) + " levels");
  }
  return out;
}

// ---- serialize ------------------------------------------------------------------------------------------

namespace {

bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

void write_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the current run of bytes that need no escaping
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (!needs_escape(c)) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void write_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";  // JSON has no NaN/Infinity
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
  std::string_view text(buf, static_cast<std::size_t>(end - buf));
  out += text;
  // "1" would come back as an integer; keep the kind ("1.0"), like Python's json and .NET do.
  if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

}  // namespace

void serialize_to(std::string& out, const value& v) {
  switch (v.type()) {
    case kind::null: out += "null"; return;
    case kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case kind::integer: {
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.as_int());
      out.append(buf, end);
      return;
    }
    case kind::number: write_double(out, v.as_double()); return;
    case kind::string: write_string(out, v.as_string()); return;
    case kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out.push_back(',');
        first = false;
        serialize_to(out, e);
      }
      out.push_back(']');
      return;
    }
    case kind::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out.push_back(',');
        first = false;
        write_string(out, k);
        out.push_back(':');
        serialize_to(out, e);
      }
      out.push_back('}');
      return;
    }
  }
}

std::string serialize(const value& v) {
  std::string out;
  serialize_to(out, v);
  return out;
}

}  // namespace fleethub::json
