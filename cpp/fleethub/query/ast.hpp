// The compiled expression tree of a WHERE clause or route condition, and the value type it evaluates to.
// Nodes are built once by the parser and never change afterwards, so one tree may be evaluated from many
// threads at once. Evaluation borrows: values read from a document are views (string_view, pointers into
// the json::value), so a comparison never copies or allocates. Internal to fleethub_query.
#pragma once
#include <cstdint>
#include <forward_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/json.hpp"
#include "fleethub/query/query.hpp"

namespace fleethub::query::detail {

enum class vkind : std::uint8_t { undefined, null, boolean, integer, number, string, array, object };

// The result of evaluating an expression. Trivially copyable; `s` and `j` point into the document being
// evaluated, into a constant of the tree, or into eval_ctx::keep() storage.
struct val {
  vkind k = vkind::undefined;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string_view s;
  const json::value* j = nullptr;  // arrays and objects

  static val undefined() { return {}; }
  static val boolean(bool v) { val r; r.k = vkind::boolean; r.b = v; return r; }
  static val integer(std::int64_t v) { val r; r.k = vkind::integer; r.i = v; return r; }
  static val number(double v);  // undefined when not finite (NaN, overflow)
  static val string(std::string_view v) { val r; r.k = vkind::string; r.s = v; return r; }
  static val of(const json::value* v);  // nullptr -> undefined

  bool is_number() const { return k == vkind::integer || k == vkind::number; }
  bool is_primitive() const { return k >= vkind::null && k <= vkind::string; }
  double as_double() const { return k == vkind::integer ? static_cast<double>(i) : d; }
};

// Per-evaluation scratch: the resolver and storage for strings that functions compute (LOWER, CONCAT...).
// Lives on the caller's stack for one matches() call; a forward_list allocates nothing until used.
struct eval_ctx {
  explicit eval_ctx(const resolver& res) : r(res) {}
  const resolver& r;
  std::forward_list<std::string> strings;
  std::string_view keep(std::string s) { return strings.emplace_front(std::move(s)); }
};

class node {
 public:
  virtual ~node() = default;
  virtual val eval(eval_ctx& ctx) const = 0;
  int depth = 1;  // height of the subtree (the parser caps it so evaluation recursion stays shallow)
};
using node_ptr = std::unique_ptr<node>;

class constant_node final : public node {
 public:
  explicit constant_node(json::value v);  // `undefined` is a constant_node holding no value (see ctor)
  static node_ptr undefined_constant();
  val eval(eval_ctx&) const override { return v_; }
  const json::value& value() const { return json_; }
  bool is_undefined() const { return v_.k == vkind::undefined; }

 private:
  constant_node() = default;
  json::value json_;
  val v_;  // views json_, which never moves: nodes live on the heap and are not copyable
};

class path_node final : public node {
 public:
  explicit path_node(path p) : p_(std::move(p)) {}
  val eval(eval_ctx& ctx) const override { return val::of(ctx.r.resolve(p_)); }
  const path& get() const { return p_; }

 private:
  path p_;
};

enum class cmp_op { eq, ne, lt, gt, le, ge };

class compare_node final : public node {
 public:
  compare_node(cmp_op op, node_ptr l, node_ptr r) : op_(op), l_(std::move(l)), r_(std::move(r)) {}
  val eval(eval_ctx& ctx) const override;

 private:
  cmp_op op_;
  node_ptr l_, r_;
};

// x IN [c1, c2, ...] / x NIN [...]
class in_node final : public node {
 public:
  in_node(node_ptr x, json::array items, bool negate);
  val eval(eval_ctx& ctx) const override;

 private:
  node_ptr x_;
  json::array items_;
  std::vector<val> vals_;  // views items_
  bool negate_;
};

// AND / OR over any number of terms (flat, so long chains do not deepen the tree). Kleene logic.
class logic_node final : public node {
 public:
  logic_node(bool is_and, std::vector<node_ptr> terms) : and_(is_and), terms_(std::move(terms)) {}
  val eval(eval_ctx& ctx) const override;
  bool is_and() const { return and_; }
  std::vector<node_ptr>& terms() { return terms_; }

 private:
  bool and_;
  std::vector<node_ptr> terms_;
};

class not_node final : public node {
 public:
  explicit not_node(node_ptr x) : x_(std::move(x)) {}
  val eval(eval_ctx& ctx) const override;

 private:
  node_ptr x_;
};

enum class arith_op { add, sub, mul, div, mod };

class arith_node final : public node {
 public:
  arith_node(arith_op op, node_ptr l, node_ptr r) : op_(op), l_(std::move(l)), r_(std::move(r)) {}
  val eval(eval_ctx& ctx) const override;

 private:
  arith_op op_;
  node_ptr l_, r_;
};

class negate_node final : public node {
 public:
  explicit negate_node(node_ptr x) : x_(std::move(x)) {}
  val eval(eval_ctx& ctx) const override;

 private:
  node_ptr x_;
};

enum class fn {
  is_defined, is_defined_primitive, is_null, is_number, is_string, is_bool, is_object, is_primitive, is_array,
  starts_with, ends_with, contains,
  // routing only
  abs, exp, power, square, ceiling, floor, sign, sqrt, as_number,
  concat, length, lower, upper, substring, index_of,
};

struct function_info {
  std::string_view name;
  fn id;
  int min_args;
  int max_args;  // -1: any number
  bool routing_only;
};
// Case-insensitive lookup; nullptr when no such function exists in either mode.
const function_info* find_function(std::string_view name);

class function_node final : public node {
 public:
  function_node(fn id, std::vector<node_ptr> args) : id_(id), args_(std::move(args)) {}
  val eval(eval_ctx& ctx) const override;  // functions.cpp

 private:
  fn id_;
  std::vector<node_ptr> args_;
};

// Three-way comparison of two values: -1, 0, 1, or nullopt when they do not compare (undefined, different
// primitive types, arrays/objects; for ordering also null). Integers and doubles compare numerically;
// strings ordinally (byte-wise).
std::optional<int> compare(const val& a, const val& b, bool ordering);

}  // namespace fleethub::query::detail
