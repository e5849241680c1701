// A small mutable JSON DOM for twins, REST bodies and event payloads: parse (simdjson's DOM API, which picks
// its SIMD kernel at run time), edit, serialize. Objects keep insertion order (twins are small and users
// expect their key order back) with linear lookup. Thread safety: values are plain data (no sharing);
// parse() uses one parser per thread, so concurrent calls from different threads are fine.
#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fleethub/core/result.hpp"

namespace fleethub::json {

enum class kind { null, boolean, integer, number, string, array, object };

class value;
using array = std::vector<value>;

// Insertion-ordered members. Keys are unique when built through set() or parse(); push_back bypasses that.
class object : public std::vector<std::pair<std::string, value>> {
 public:
  using base = std::vector<std::pair<std::string, value>>;
  using base::base;

  value* find(std::string_view key);
  const value* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Replaces the value in place when the key exists (keeps its position), else appends.
  value& set(std::string key, value v);
  bool erase(std::string_view key);
};

class value {
 public:
  value() = default;
  value(std::nullptr_t) {}                                    // NOLINT(implicit)
  value(bool b) : v_(b) {}                                    // NOLINT(implicit)
  // Any integer type (not bool): unsigned values above INT64_MAX become numbers, as parse() does.
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  value(T i) {                                                // NOLINT(implicit)
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (i > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
        v_ = static_cast<double>(i);
        return;
      }
    }
    v_ = static_cast<std::int64_t>(i);
  }
  template <std::floating_point T>
  value(T d) : v_(static_cast<double>(d)) {}                  // NOLINT(implicit)
  value(const char* s) : v_(std::string(s)) {}                // NOLINT(implicit)
  value(std::string s) : v_(std::move(s)) {}                  // NOLINT(implicit)
  value(std::string_view s) : v_(std::string(s)) {}           // NOLINT(implicit)
  value(array a) : v_(std::move(a)) {}                        // NOLINT(implicit)
  value(object o) : v_(std::move(o)) {}                       // NOLINT(implicit)

  kind type() const { return static_cast<kind>(v_.index()); }
  bool is_null() const { return type() == kind::null; }
  bool is_bool() const { return type() == kind::boolean; }
  bool is_int() const { return type() == kind::integer; }
  bool is_double() const { return type() == kind::number; }
  bool is_number() const { return is_int() || is_double(); }  // integer or number
  bool is_string() const { return type() == kind::string; }
  bool is_array() const { return type() == kind::array; }
  bool is_object() const { return type() == kind::object; }

  // Accessors throw std::bad_variant_access on a kind mismatch (a programming error; check type() first).
  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_double() const {  // integers convert
    return is_int() ? static_cast<double>(std::get<std::int64_t>(v_)) : std::get<double>(v_);
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  std::string& as_string() { return std::get<std::string>(v_); }
  const array& as_array() const { return std::get<array>(v_); }
  array& as_array() { return std::get<array>(v_); }
  const object& as_object() const { return std::get<object>(v_); }
  object& as_object() { return std::get<object>(v_); }

  // Member lookup; nullptr when this is not an object or has no such key.
  value* find(std::string_view key) { return is_object() ? as_object().find(key) : nullptr; }
  const value* find(std::string_view key) const { return is_object() ? as_object().find(key) : nullptr; }

  // Deep equality. Objects compare order-insensitively; integer and number are different kinds
  // (1 != 1.0), so a round trip that changed a number's kind is visible.
  friend bool operator==(const value& a, const value& b);

 private:
  std::variant<std::monostate, bool, std::int64_t, double, std::string, array, object> v_;
};

struct parse_limits {
  std::size_t max_depth = 64;          // nested array/object levels; a scalar is depth 0, {} is 1
  std::size_t max_bytes = 4 << 20;
};

// Integers that fit int64 -> integer; larger unsigned -> number; duplicate keys: the last one wins (at the
// first one's position). Errors: invalid_argument (malformed, empty, too deep), too_large (over max_bytes).
// Numbers that fit neither int64/uint64 nor a finite double (1e400, 30-digit integers) are refused
// (simdjson 3.0 has no big-number mode); IoT Hub refuses such twin values anyway.
result<value> parse(std::string_view text, const parse_limits& lim = {});

// Compact JSON. Doubles print shortest round-trip and always look like doubles ("1.0", "1e+300") so that
// parse(serialize(v)) == v; non-finite doubles print as null. Strings are written byte for byte apart from
// escapes (the caller guarantees UTF-8; everything parse() produced is).
std::string serialize(const value& v);
void serialize_to(std::string& out, const value& v);

}  // namespace fleethub::json
