// Recursive-descent parser for the IoT Hub query language; see parser.hpp. One function per grammar rule of
// semantics.md §2.2. Errors are thrown as a private exception type and turned into result errors at the two
// entry points: it keeps the grammar functions readable, and compiling is not a hot path.
#include "fleethub/query/parser.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "fleethub/query/lexer.hpp"

namespace fleethub::query::detail {
namespace {

// Words that cannot start a path (write [[group]] for such a member). After a '.', any word is a name.
constexpr std::array<std::string_view, 21> reserved = {
    "SELECT", "TOP", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "NOT", "IN",
    "NIN", "TRUE", "FALSE", "NULL", "UNDEFINED", "ORDER", "JOIN", "DISTINCT", "LIKE", "HAVING",
};

constexpr int max_nesting = 64;      // parentheses, NOT, unary minus and function calls inside each other
constexpr int max_tree_depth = 200;  // height of the expression tree: bounds evaluation recursion

struct parse_failure {
  std::string message;
};

bool is_reserved(std::string_view word) {
  return std::any_of(reserved.begin(), reserved.end(), [&](std::string_view r) { return iequals(r, word); });
}

agg_fn aggregate_named(std::string_view name) {
  if (iequals(name, "COUNT")) return agg_fn::count;
  if (iequals(name, "AVG")) return agg_fn::avg;
  if (iequals(name, "SUM")) return agg_fn::sum;
  if (iequals(name, "MIN")) return agg_fn::min;
  if (iequals(name, "MAX")) return agg_fn::max;
  return agg_fn::none;
}

class parser {
 public:
  parser(std::string_view text, const compile_options& opt) : toks_(tokenize(text, opt.routing)), opt_(opt) {}

  parsed_condition condition() {
    parsed_condition c;
    if (peek().kind == tok::end) return c;  // an empty route condition means true (semantics.md §3.1)
    c.root = expr();
    if (peek().kind != tok::end) fail(peek(), "an operator or end of condition");
    c.paths = std::move(paths_);
    return c;
  }

  parsed_query query() {
    parsed_query q;
    expect_kw("SELECT", "SELECT");
    if (accept_kw("TOP")) {
      const token& t = take();
      if (t.kind != tok::number || !t.is_int || t.i < 0) fail(t, "a non-negative integer after TOP");
      q.top = static_cast<std::uint64_t>(t.i);
    }
    const std::size_t select_pos = peek().pos;
    if (peek().kind == tok::star) {
      take();
      q.star = true;
    } else {
      do q.items.push_back(select_item_rule()); while (accept(tok::comma));
    }
    expect_kw("FROM", "FROM");
    q.from = from_spec();
    jobs_ = q.from == collection::jobs;
    const char* next = "WHERE, GROUP BY or end of query";
    if (accept_kw("WHERE")) {
      q.where.root = expr();
      q.where.paths = std::move(paths_);
      next = "GROUP BY or end of query";
    }
    std::size_t group_pos = 0;
    if (is_kw(peek(), "GROUP")) {
      group_pos = take().pos;
      expect_kw("BY", "BY after GROUP");
      do q.group_by.push_back(path_rule("a property path")); while (accept(tok::comma));
      next = "',' or end of query";
    }
    if (peek().kind != tok::end) fail(peek(), next);
    check(q, select_pos, group_pos);
    return q;
  }

 private:
  // ---- token helpers ------------------------------------------------------------------------------------

  const token& peek(std::size_t ahead = 0) const { return toks_[std::min(i_ + ahead, toks_.size() - 1)]; }
  const token& take() {
    const token& t = toks_[i_];
    if (t.kind != tok::end) ++i_;
    return t;
  }
  bool accept(tok k) {
    if (peek().kind != k) return false;
    take();
    return true;
  }
  static bool is_kw(const token& t, std::string_view kw) { return t.kind == tok::ident && iequals(t.text, kw); }
  bool accept_kw(std::string_view kw) {
    if (!is_kw(peek(), kw)) return false;
    take();
    return true;
  }
  void expect_kw(std::string_view kw, std::string_view expected) {
    if (!accept_kw(kw)) fail(peek(), expected);
  }
  void expect(tok k, std::string_view expected) {
    if (!accept(k)) fail(peek(), expected);
  }

  [[noreturn]] static void refuse(std::string message) { throw parse_failure{std::move(message)}; }

  // A syntax error at `t`, unless `t` is the start of something the language deliberately lacks: then the
  // message says that instead, which is what a user writing SQL needs to hear.
  [[noreturn]] void fail(const token& t, std::string_view expected) const {
    if (t.kind == tok::error) refuse(t.str);
    const std::string unsupported = " is not supported by the IoT Hub query language";
    const std::string unsupported_plural = " are not supported by the IoT Hub query language";
    if (is_kw(t, "ORDER")) refuse("ORDER BY" + unsupported);
    if (is_kw(t, "JOIN")) refuse("JOIN" + unsupported);
    if (is_kw(t, "DISTINCT")) refuse("DISTINCT" + unsupported);
    if (is_kw(t, "LIKE")) refuse("LIKE" + unsupported);
    if (is_kw(t, "HAVING")) refuse("HAVING" + unsupported);
    if (t.kind == tok::param) refuse("query parameters (" + std::string(t.text) + ")" + unsupported_plural);
    const bool after_paren = &t != toks_.data() && (&t - 1)->kind == tok::lparen;
    if ((is_kw(t, "SELECT") && after_paren) || (t.kind == tok::lparen && is_kw(*(&t + 1), "SELECT")))
      refuse("subqueries" + unsupported_plural);
    refuse(syntax_message(t.pos, expected, describe(t)));
  }

  struct nesting_guard {
    explicit nesting_guard(parser& p, const token& at) : p_(p) {
      if (++p_.nesting_ > max_nesting)
        refuse("expression nested too deeply at position " + std::to_string(at.pos) + " (more than " +
               std::to_string(max_nesting) + " levels)");
    }
    ~nesting_guard() { --p_.nesting_; }
    parser& p_;
  };

  node_ptr checked(node_ptr n, std::initializer_list<const node*> children, std::size_t pos) {
    for (const node* c : children) n->depth = std::max(n->depth, c->depth + 1);
    if (n->depth > max_tree_depth)
      refuse("expression too complex at position " + std::to_string(pos) + " (more than " +
             std::to_string(max_tree_depth) + " levels of operators)");
    return n;
  }

  // ---- expressions --------------------------------------------------------------------------------------

  node_ptr expr() { return logic(false); }

  // or_expr / and_expr: flat lists of terms.
  node_ptr logic(bool is_and) {
    std::vector<node_ptr> terms;
    terms.push_back(is_and ? not_expr() : logic(true));
    const std::size_t pos = peek().pos;
    while (accept_kw(is_and ? "AND" : "OR")) terms.push_back(is_and ? not_expr() : logic(true));
    if (terms.size() == 1) return std::move(terms.front());
    int depth = 1;
    for (const node_ptr& t : terms) depth = std::max(depth, t->depth + 1);
    auto n = std::make_unique<logic_node>(is_and, std::move(terms));
    n->depth = depth;
    return checked(std::move(n), {}, pos);
  }

  node_ptr not_expr() {
    if (!is_kw(peek(), "NOT")) return cmp_expr();
    const token& t = take();
    nesting_guard g(*this, t);
    node_ptr x = not_expr();
    const node* raw = x.get();
    return checked(std::make_unique<not_node>(std::move(x)), {raw}, t.pos);
  }

  node_ptr cmp_expr() {
    node_ptr l = add_expr();
    const token& t = peek();
    std::optional<cmp_op> op;
    switch (t.kind) {
      case tok::eq: op = cmp_op::eq; break;
      case tok::ne: op = cmp_op::ne; break;
      case tok::lt: op = cmp_op::lt; break;
      case tok::gt: op = cmp_op::gt; break;
      case tok::le: op = cmp_op::le; break;
      case tok::ge: op = cmp_op::ge; break;
      default: break;
    }
    if (op) {
      take();
      node_ptr r = add_expr();
      const node *a = l.get(), *b = r.get();
      return checked(std::make_unique<compare_node>(*op, std::move(l), std::move(r)), {a, b}, t.pos);
    }
    bool negate = false;
    if (is_kw(t, "IN")) {
      take();
    } else if (is_kw(t, "NIN")) {
      take();
      negate = true;
    } else if (is_kw(t, "NOT") && is_kw(peek(1), "IN")) {  // SQL spelling of NIN
      take();
      take();
      negate = true;
    } else {
      return l;
    }
    json::array items = array_const();
    const node* a = l.get();
    return checked(std::make_unique<in_node>(std::move(l), std::move(items), negate), {a}, t.pos);
  }

  node_ptr add_expr() {
    node_ptr l = mul_expr();
    for (;;) {
      const token& t = peek();
      arith_op op;
      if (t.kind == tok::plus) op = arith_op::add;
      else if (t.kind == tok::minus) op = arith_op::sub;
      else return l;
      take();
      node_ptr r = mul_expr();
      const node *a = l.get(), *b = r.get();
      l = checked(std::make_unique<arith_node>(op, std::move(l), std::move(r)), {a, b}, t.pos);
    }
  }

  node_ptr mul_expr() {
    node_ptr l = unary();
    for (;;) {
      const token& t = peek();
      arith_op op;
      if (t.kind == tok::star) op = arith_op::mul;
      else if (t.kind == tok::slash) op = arith_op::div;
      else if (t.kind == tok::percent) op = arith_op::mod;
      else return l;
      take();
      node_ptr r = unary();
      const node *a = l.get(), *b = r.get();
      l = checked(std::make_unique<arith_node>(op, std::move(l), std::move(r)), {a, b}, t.pos);
    }
  }

  node_ptr unary() {
    if (peek().kind != tok::minus) return primary();
    const token& t = take();
    nesting_guard g(*this, t);
    if (peek().kind == tok::number) return number_constant(take(), true);  // fold -5 into a constant
    node_ptr x = unary();
    const node* raw = x.get();
    return checked(std::make_unique<negate_node>(std::move(x)), {raw}, t.pos);
  }

  node_ptr primary() {
    const token& t = peek();
    switch (t.kind) {
      case tok::number: return number_constant(take(), false);
      case tok::string: return std::make_unique<constant_node>(json::value(take().str));
      case tok::lbracket: return std::make_unique<constant_node>(json::value(array_const()));
      case tok::lparen: {
        take();
        nesting_guard g(*this, t);
        node_ptr e = expr();
        expect(tok::rparen, "')'");
        return e;
      }
      case tok::escaped_ident: return path_expr();
      case tok::ident: {
        if (accept_kw("TRUE")) return std::make_unique<constant_node>(json::value(true));
        if (accept_kw("FALSE")) return std::make_unique<constant_node>(json::value(false));
        if (accept_kw("NULL")) return std::make_unique<constant_node>(json::value(nullptr));
        if (accept_kw("UNDEFINED")) return constant_node::undefined_constant();
        if (peek(1).kind == tok::lparen && !is_reserved(t.text)) return function_call();
        return path_expr();
      }
      default: fail(t, "an expression");
    }
  }

  static json::value number_value(const token& t, bool negative) {
    if (t.is_int) return json::value(negative ? -t.i : t.i);  // literals are >= 0, so -t.i cannot overflow
    return json::value(negative ? -t.d : t.d);
  }
  static node_ptr number_constant(const token& t, bool negative) {
    return std::make_unique<constant_node>(number_value(t, negative));
  }

  node_ptr path_expr() {
    path p = path_rule("an expression");
    // Job queries qualify their fields (`WHERE devices.jobs.jobId = 'j1'` in [DOC qlang]) while the records
    // hold plain jobId: drop the qualifier so that both spellings read the same member.
    if (jobs_ && p.size() > 2 && iequals(p[0].name, "devices") && iequals(p[1].name, "jobs"))
      p.erase(p.begin(), p.begin() + 2);
    if (std::find(paths_.begin(), paths_.end(), p) == paths_.end()) paths_.push_back(p);
    return std::make_unique<path_node>(std::move(p));
  }

  node_ptr function_call() {
    const token& name = take();
    const std::string where = " at position " + std::to_string(name.pos);
    const function_info* f = find_function(name.text);
    if (!f) {
      if (aggregate_named(name.text) != agg_fn::none)
        refuse("aggregate " + std::string(name.text) + where + " is only allowed in the SELECT list");
      refuse("unknown function " + std::string(name.text) + where);
    }
    if (f->routing_only && !opt_.routing)
      refuse("function " + std::string(f->name) + where + " is only available in routing conditions");
    nesting_guard g(*this, name);
    take();  // '('
    std::vector<node_ptr> args;
    if (peek().kind != tok::rparen) {
      do args.push_back(expr()); while (accept(tok::comma));
    }
    expect(tok::rparen, "',' or ')'");
    const int n = static_cast<int>(args.size());
    if (n < f->min_args || (f->max_args >= 0 && n > f->max_args)) {
      std::string takes = std::to_string(f->min_args);
      if (f->max_args < 0) takes = "at least " + takes;
      else if (f->max_args != f->min_args) takes += " or " + std::to_string(f->max_args);
      takes += takes == "1" ? " argument" : " arguments";
      refuse("function " + std::string(f->name) + where + " takes " + takes + ", got " + std::to_string(n));
    }
    fn id = f->id;
    if (id == fn::is_defined && opt_.routing) id = fn::is_defined_primitive;
    int depth = 1;
    for (const node_ptr& a : args) depth = std::max(depth, a->depth + 1);
    auto node = std::make_unique<function_node>(id, std::move(args));
    node->depth = depth;
    return checked(std::move(node), {}, name.pos);
  }

  json::array array_const() {
    expect(tok::lbracket, "'[' (IN and NIN take an array of constants)");
    json::array items;
    if (accept(tok::rbracket)) return items;
    do {
      const token& t = take();
      if (t.kind == tok::number) {
        items.push_back(number_value(t, false));
      } else if (t.kind == tok::minus && peek().kind == tok::number) {
        items.push_back(number_value(take(), true));
      } else if (t.kind == tok::string) {
        items.emplace_back(t.str);
      } else if (is_kw(t, "TRUE") || is_kw(t, "FALSE")) {
        items.emplace_back(is_kw(t, "TRUE"));
      } else if (is_kw(t, "NULL")) {
        items.emplace_back(nullptr);
      } else {
        fail(t, "a constant");
      }
    } while (accept(tok::comma));
    expect(tok::rbracket, "',' or ']'");
    return items;
  }

  // ---- paths and clauses --------------------------------------------------------------------------------

  // segment ('.' segment | '[' index ']')*; `expected` describes the context for an error at the start.
  path path_rule(std::string_view expected) {
    const token& first = take();
    path p;
    if (first.kind == tok::escaped_ident) {
      p.push_back({std::string(first.text)});
    } else if (first.kind == tok::ident && !is_reserved(first.text)) {
      if (first.text.front() == '$' && !opt_.routing)
        fail(first, "a property name ($-prefixed names are for routing conditions)");
      p.push_back({std::string(first.text)});
    } else if (is_kw(first, "GROUP")) {
      fail(first, std::string(expected) + " (write [[group]] for a property named group)");
    } else {
      fail(first, expected);
    }
    for (;;) {
      if (accept(tok::dot)) {
        const token& t = take();
        if (t.kind != tok::ident && t.kind != tok::escaped_ident) fail(t, "a property name after '.'");
        p.push_back({std::string(t.text)});
      } else if (peek().kind == tok::lbracket) {
        take();
        const token& t = take();
        if (t.kind != tok::number || !t.is_int || t.i < 0) fail(t, "an array index (a non-negative integer)");
        p.push_back({std::string(), t.i});
        expect(tok::rbracket, "']'");
      } else {
        return p;
      }
    }
  }

  select_item select_item_rule() {
    const token& t = peek();
    select_item item;
    const std::string_view expected = "'*', a property path or an aggregate (COUNT, AVG, SUM, MIN, MAX)";
    if (t.kind == tok::ident && peek(1).kind == tok::lparen && !is_reserved(t.text)) {
      item.agg = aggregate_named(t.text);
      if (item.agg == agg_fn::none) fail(t, expected);
      take();
      take();  // '('
      if (item.agg == agg_fn::count) {
        if (!accept(tok::star) && peek().kind != tok::rparen) item.p = path_rule("')', '*' or a property path");
      } else {
        item.p = path_rule("a property path");
      }
      expect(tok::rparen, "')'");
    } else {
      item.p = path_rule(expected);
    }
    if (accept_kw("AS")) {
      const token& a = take();
      if (a.kind != tok::escaped_ident && (a.kind != tok::ident || is_reserved(a.text)))
        fail(a, "an alias name after AS");
      item.alias = std::string(a.text);
    }
    return item;
  }

  collection from_spec() {
    const token& t = take();
    if (!is_kw(t, "devices")) fail(t, "devices, devices.modules or devices.jobs");
    if (!accept(tok::dot)) return collection::devices;
    const token& sub = take();
    if (is_kw(sub, "modules")) return collection::modules;
    if (is_kw(sub, "jobs")) return collection::jobs;
    fail(sub, "modules or jobs after 'devices.'");
  }

  // Restrictions of semantics.md §2.3 that the grammar alone does not express.
  static void check(parsed_query& q, std::size_t select_pos, std::size_t group_pos) {
    for (const select_item& it : q.items) q.aggregate = q.aggregate || it.agg != agg_fn::none;
    q.aggregate = q.aggregate || !q.group_by.empty();
    if (q.from == collection::jobs && !q.star)
      refuse("queries FROM devices.jobs support only SELECT * (no projections or aggregates)");
    if (!q.group_by.empty() && q.from != collection::devices)
      refuse("GROUP BY at position " + std::to_string(group_pos) + " is only supported in queries FROM devices");
    if (q.star && !q.group_by.empty())
      refuse("SELECT * at position " + std::to_string(select_pos) + " cannot be combined with GROUP BY");
    if (!q.aggregate) return;
    for (select_item& it : q.items) {
      if (it.agg != agg_fn::none) continue;
      for (std::size_t g = 0; g < q.group_by.size() && it.group_index < 0; ++g)
        if (same_path(it.p, q.group_by[g])) it.group_index = static_cast<int>(g);
      if (it.group_index < 0)
        refuse("'" + path_text(it.p) + "' in the SELECT list of an aggregate query must be a GROUP BY path or an "
               "aggregate");
    }
  }

  std::vector<token> toks_;
  const compile_options& opt_;
  std::size_t i_ = 0;
  int nesting_ = 0;
  std::vector<path> paths_;
  bool jobs_ = false;  // FROM devices.jobs
};

template <class T, class F>
result<T> run(std::string_view text, const compile_options& opt, F&& f) {
  if (text.size() > opt.max_length)
    return make_error(errc::too_large, "query is " + std::to_string(text.size()) +
                                           " characters long; the limit is " + std::to_string(opt.max_length));
  try {
    parser p(text, opt);
    return f(p);
  } catch (parse_failure& e) {
    return make_error(errc::invalid_argument, std::move(e.message));
  }
}

}  // namespace

result<parsed_condition> parse_condition(std::string_view text, const compile_options& opt) {
  return run<parsed_condition>(text, opt, [](parser& p) { return p.condition(); });
}

result<parsed_query> parse_query(std::string_view text, const compile_options& opt) {
  return run<parsed_query>(text, opt, [](parser& p) { return p.query(); });
}

bool same_path(const path& a, const path& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (a[k].index != b[k].index || !iequals(a[k].name, b[k].name)) return false;
  return true;
}

std::string path_text(const path& p) {
  std::string out;
  for (const path_segment& s : p) {
    if (s.index >= 0) {
      out += "[" + std::to_string(s.index) + "]";
      continue;
    }
    if (!out.empty()) out += '.';
    out += s.name;
  }
  return out;
}

}  // namespace fleethub::query::detail
