// Built-in functions of the query and routing languages (semantics.md §2.3, §3.5). Twin queries get the
// type checks and string predicates; route conditions get everything. A function given arguments of the
// wrong type returns undefined (the condition is then false), as IoT Hub does; IS_* never return undefined.
// String positions and lengths count Unicode code points (UTF-8 decoded), not bytes.
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "fleethub/query/ast.hpp"
#include "fleethub/query/lexer.hpp"

namespace fleethub::query::detail {
namespace {

constexpr int any = -1;

constexpr std::array<function_info, 28> functions = {{
    {"IS_DEFINED", fn::is_defined, 1, 1, false},
    {"IS_NULL", fn::is_null, 1, 1, false},
    {"IS_NUMBER", fn::is_number, 1, 1, false},
    {"IS_STRING", fn::is_string, 1, 1, false},
    {"IS_BOOL", fn::is_bool, 1, 1, false},
    {"IS_OBJECT", fn::is_object, 1, 1, false},
    {"IS_PRIMITIVE", fn::is_primitive, 1, 1, false},
    {"IS_ARRAY", fn::is_array, 1, 1, false},
    // Both spellings in both modes: the service accepts a different one in each (semantics.md §3.5 trap).
    {"STARTS_WITH", fn::starts_with, 2, 2, false},
    {"STARTSWITH", fn::starts_with, 2, 2, false},
    {"ENDS_WITH", fn::ends_with, 2, 2, false},
    {"ENDSWITH", fn::ends_with, 2, 2, false},
    {"CONTAINS", fn::contains, 2, 2, false},
    {"ABS", fn::abs, 1, 1, true},
    {"EXP", fn::exp, 1, 1, true},
    {"POWER", fn::power, 2, 2, true},
    {"SQUARE", fn::square, 1, 1, true},
    {"CEILING", fn::ceiling, 1, 1, true},
    {"FLOOR", fn::floor, 1, 1, true},
    {"SIGN", fn::sign, 1, 1, true},
    {"SQRT", fn::sqrt, 1, 1, true},
    {"AS_NUMBER", fn::as_number, 1, 1, true},
    {"CONCAT", fn::concat, 2, any, true},
    {"LENGTH", fn::length, 1, 1, true},
    {"LOWER", fn::lower, 1, 1, true},
    {"UPPER", fn::upper, 1, 1, true},
    {"SUBSTRING", fn::substring, 2, 3, true},
    {"INDEX_OF", fn::index_of, 2, 2, true},
}};

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

std::int64_t code_points(std::string_view s) {
  std::int64_t n = 0;
  for (char c : s) n += !is_continuation(c);
  return n;
}

// Byte offset of code point `cp` (clamped to the end).
std::size_t byte_offset(std::string_view s, std::int64_t cp) {
  std::size_t k = 0;
  for (; k < s.size() && cp > 0; --cp) {
    ++k;
    while (k < s.size() && is_continuation(s[k])) ++k;
  }
  return k;
}

// An integral argument: integers, or doubles with no fraction (SUBSTRING(s, 1.0) works like 1).
bool integral(const val& v, std::int64_t& out) {
  if (v.k == vkind::integer) {
    out = v.i;
    return true;
  }
  if (v.k == vkind::number && std::floor(v.d) == v.d && std::fabs(v.d) < 9.0e18) {
    out = static_cast<std::int64_t>(v.d);
    return true;
  }
  return false;
}

val parse_number(std::string_view s) {
  if (s.empty()) return {};
  const char* b = s.data();
  const char* e = s.data() + s.size();
  std::int64_t i = 0;
  if (auto [p, ec] = std::from_chars(b, e, i); ec == std::errc() && p == e) return val::integer(i);
  double d = 0;
  if (auto [p, ec] = std::from_chars(b, e, d, std::chars_format::general); ec == std::errc() && p == e)
    return val::number(d);  // "inf"/"nan" parse but are not finite: undefined
  return {};
}

std::string ascii_case(std::string_view s, bool upper) {
  std::string out(s);
  for (char& c : out) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

const function_info* find_function(std::string_view name) {
  for (const function_info& f : functions)
    if (iequals(f.name, name)) return &f;
  return nullptr;
}

val function_node::eval(eval_ctx& ctx) const {
  if (id_ == fn::concat) {  // variadic: the only function with more than three arguments
    std::string out;
    for (const node_ptr& a : args_) {
      const val v = a->eval(ctx);
      if (v.k != vkind::string) return {};
      out.append(v.s);
    }
    return val::string(ctx.keep(std::move(out)));
  }
  std::array<val, 3> a{};
  for (std::size_t k = 0; k < args_.size() && k < a.size(); ++k) a[k] = args_[k]->eval(ctx);
  const val& x = a[0];
  const val& y = a[1];
  switch (id_) {
    case fn::is_defined: return val::boolean(x.k != vkind::undefined);
    // Routing: objects and arrays do not count as defined (semantics.md §3.5).
    case fn::is_defined_primitive: return val::boolean(x.is_primitive());
    case fn::is_null: return val::boolean(x.k == vkind::null);
    case fn::is_number: return val::boolean(x.is_number());
    case fn::is_string: return val::boolean(x.k == vkind::string);
    case fn::is_bool: return val::boolean(x.k == vkind::boolean);
    case fn::is_object: return val::boolean(x.k == vkind::object);
    case fn::is_primitive: return val::boolean(x.is_primitive());
    case fn::is_array: return val::boolean(x.k == vkind::array);
    case fn::starts_with:
      if (x.k != vkind::string || y.k != vkind::string) return {};
      return val::boolean(x.s.starts_with(y.s));
    case fn::ends_with:
      if (x.k != vkind::string || y.k != vkind::string) return {};
      return val::boolean(x.s.ends_with(y.s));
    case fn::contains:
      if (x.k != vkind::string || y.k != vkind::string) return {};
      return val::boolean(x.s.find(y.s) != std::string_view::npos);
    case fn::abs:
      if (x.k == vkind::integer && x.i != std::numeric_limits<std::int64_t>::min())
        return val::integer(x.i < 0 ? -x.i : x.i);
      return x.is_number() ? val::number(std::fabs(x.as_double())) : val{};
    case fn::exp: return x.is_number() ? val::number(std::exp(x.as_double())) : val{};
    case fn::power:
      if (!x.is_number() || !y.is_number()) return {};
      return val::number(std::pow(x.as_double(), y.as_double()));
    case fn::square: {
      std::int64_t r = 0;
      if (x.k == vkind::integer && !__builtin_mul_overflow(x.i, x.i, &r)) return val::integer(r);
      return x.is_number() ? val::number(x.as_double() * x.as_double()) : val{};
    }
    case fn::ceiling:
      if (x.k == vkind::integer) return x;
      return x.is_number() ? val::number(std::ceil(x.d)) : val{};
    case fn::floor:
      if (x.k == vkind::integer) return x;
      return x.is_number() ? val::number(std::floor(x.d)) : val{};
    case fn::sign:
      if (!x.is_number()) return {};
      return val::integer(x.as_double() > 0 ? 1 : (x.as_double() < 0 ? -1 : 0));
    case fn::sqrt:
      if (!x.is_number() || x.as_double() < 0) return {};
      return val::number(std::sqrt(x.as_double()));
    case fn::as_number:
      // Application properties are strings; AS_NUMBER is how routes compare them numerically.
      if (x.is_number()) return x;
      return x.k == vkind::string ? parse_number(x.s) : val{};
    case fn::length: return x.k == vkind::string ? val::integer(code_points(x.s)) : val{};
    case fn::lower:
    case fn::upper:
      if (x.k != vkind::string) return {};
      return val::string(ctx.keep(ascii_case(x.s, id_ == fn::upper)));
    case fn::substring: {
      std::int64_t start = 0;
      std::int64_t len = std::numeric_limits<std::int64_t>::max();
      if (x.k != vkind::string || !integral(y, start)) return {};
      if (args_.size() == 3 && !integral(a[2], len)) return {};
      if (start < 0) start = 0;
      if (len <= 0) return val::string(std::string_view());
      const std::size_t b = byte_offset(x.s, start);
      const std::size_t e = b + byte_offset(x.s.substr(b), len);
      return val::string(x.s.substr(b, e - b));  // a view: no copy needed
    }
    case fn::index_of: {
      if (x.k != vkind::string || y.k != vkind::string) return {};
      const std::size_t at = x.s.find(y.s);
      return val::integer(at == std::string_view::npos ? -1 : code_points(x.s.substr(0, at)));
    }
    case fn::concat: break;  // handled above
  }
  return {};
}

}  // namespace fleethub::query::detail
