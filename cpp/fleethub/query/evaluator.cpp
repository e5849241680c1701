// Evaluation of the expression tree (ast.hpp): values, comparisons, logic and arithmetic. Functions live in
// functions.cpp. Semantics follow semantics.md §2.3: anything involving undefined is undefined, different
// primitive types do not compare, and only boolean true selects a document.
#include <cmath>
#include <limits>

#include "fleethub/query/ast.hpp"

namespace fleethub::query::detail {

val val::number(double v) {
  if (!std::isfinite(v)) return {};
  val r;
  r.k = vkind::number;
  r.d = v;
  return r;
}

val val::of(const json::value* v) {
  if (!v) return {};
  val r;
  switch (v->type()) {
    case json::kind::null: r.k = vkind::null; break;
    case json::kind::boolean: r.k = vkind::boolean; r.b = v->as_bool(); break;
    case json::kind::integer: r.k = vkind::integer; r.i = v->as_int(); break;
    case json::kind::number:
      // Hand-built documents may hold NaN/inf (parse() never does); they compare as undefined.
      if (!std::isfinite(v->as_double())) return {};
      r.k = vkind::number;
      r.d = v->as_double();
      break;
    case json::kind::string: r.k = vkind::string; r.s = v->as_string(); break;
    case json::kind::array: r.k = vkind::array; r.j = v; break;
    case json::kind::object: r.k = vkind::object; r.j = v; break;
  }
  return r;
}

constant_node::constant_node(json::value v) : json_(std::move(v)) { v_ = val::of(&json_); }

node_ptr constant_node::undefined_constant() { return node_ptr(new constant_node()); }

namespace {

template <class T>
int three_way(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

int compare_numbers(const val& a, const val& b) {
  if (a.k == vkind::integer && b.k == vkind::integer) return three_way(a.i, b.i);
  return three_way(a.as_double(), b.as_double());
}

val logical(const val& v) {  // operands of AND/OR/NOT: booleans stay, everything else is undefined
  return v.k == vkind::boolean ? v : val{};
}

}  // namespace

std::optional<int> compare(const val& a, const val& b, bool ordering) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b);
  if (a.k != b.k) return std::nullopt;
  switch (a.k) {
    case vkind::string: {
      int c = a.s.compare(b.s);  // char_traits<char>::compare is memcmp: unsigned, byte-wise
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    case vkind::boolean: return three_way(a.b, b.b);
    case vkind::null:
      if (ordering) return std::nullopt;  // null = null holds; null < null means nothing
      return 0;
    default: return std::nullopt;  // undefined, arrays, objects
  }
}

val compare_node::eval(eval_ctx& ctx) const {
  const val a = l_->eval(ctx);
  if (a.k == vkind::undefined) return {};
  const val b = r_->eval(ctx);
  const bool ordering = op_ != cmp_op::eq && op_ != cmp_op::ne;
  auto c = compare(a, b, ordering);
  if (!c) return {};
  switch (op_) {
    case cmp_op::eq: return val::boolean(*c == 0);
    case cmp_op::ne: return val::boolean(*c != 0);
    case cmp_op::lt: return val::boolean(*c < 0);
    case cmp_op::gt: return val::boolean(*c > 0);
    case cmp_op::le: return val::boolean(*c <= 0);
    case cmp_op::ge: return val::boolean(*c >= 0);
  }
  return {};
}

in_node::in_node(node_ptr x, json::array items, bool negate)
    : x_(std::move(x)), items_(std::move(items)), negate_(negate) {
  vals_.reserve(items_.size());
  for (const json::value& v : items_) vals_.push_back(val::of(&v));
}

val in_node::eval(eval_ctx& ctx) const {
  const val x = x_->eval(ctx);
  if (!x.is_primitive()) return {};  // undefined, or an array/object that equals nothing
  bool found = false;
  for (const val& v : vals_) {
    auto c = compare(x, v, false);
    if (c && *c == 0) {
      found = true;
      break;
    }
  }
  return val::boolean(found != negate_);
}

val logic_node::eval(eval_ctx& ctx) const {
  // Kleene logic: false AND x = false, true OR x = true; otherwise any undefined operand makes it undefined.
  bool unknown = false;
  for (const node_ptr& t : terms_) {
    const val v = logical(t->eval(ctx));
    if (v.k == vkind::undefined) {
      unknown = true;
    } else if (v.b != and_) {
      return val::boolean(!and_);  // short circuit
    }
  }
  return unknown ? val{} : val::boolean(and_);
}

val not_node::eval(eval_ctx& ctx) const {
  const val v = logical(x_->eval(ctx));
  return v.k == vkind::undefined ? v : val::boolean(!v.b);
}

val arith_node::eval(eval_ctx& ctx) const {
  const val a = l_->eval(ctx);
  if (!a.is_number()) return {};
  const val b = r_->eval(ctx);
  if (!b.is_number()) return {};
  if (a.k == vkind::integer && b.k == vkind::integer) {
    // Integers stay integers while exact; overflow falls back to double arithmetic below.
    std::int64_t r = 0;
    switch (op_) {
      case arith_op::add:
        if (!__builtin_add_overflow(a.i, b.i, &r)) return val::integer(r);
        break;
      case arith_op::sub:
        if (!__builtin_sub_overflow(a.i, b.i, &r)) return val::integer(r);
        break;
      case arith_op::mul:
        if (!__builtin_mul_overflow(a.i, b.i, &r)) return val::integer(r);
        break;
      case arith_op::div:
        if (b.i == 0) return {};
        if (!(a.i == std::numeric_limits<std::int64_t>::min() && b.i == -1) && a.i % b.i == 0)
          return val::integer(a.i / b.i);
        break;  // 7 / 2 = 3.5
      case arith_op::mod:
        if (b.i == 0) return {};
        if (b.i == -1) return val::integer(0);  // INT64_MIN % -1 traps on x86
        return val::integer(a.i % b.i);
    }
  }
  const double x = a.as_double();
  const double y = b.as_double();
  switch (op_) {
    case arith_op::add: return val::number(x + y);
    case arith_op::sub: return val::number(x - y);
    case arith_op::mul: return val::number(x * y);
    case arith_op::div: return y == 0 ? val{} : val::number(x / y);
    case arith_op::mod: return y == 0 ? val{} : val::number(std::fmod(x, y));
  }
  return {};
}

val negate_node::eval(eval_ctx& ctx) const {
  const val v = x_->eval(ctx);
  if (v.k == vkind::integer && v.i != std::numeric_limits<std::int64_t>::min()) return val::integer(-v.i);
  if (v.is_number()) return val::number(-v.as_double());
  return {};
}

}  // namespace fleethub::query::detail
