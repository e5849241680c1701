// Public entry points of the query layer (query.hpp): compile_condition / compile_query, the condition and
// compiled_query handles, document_resolver and projection. Aggregation lives in aggregation.cpp.
// Thread safety: everything compiled here is immutable after construction and shared by shared_ptr, so
// copies may be evaluated concurrently; evaluation state lives on the caller's stack.
#include <utility>

#include "fleethub/query/query_impl.hpp"

namespace fleethub::query {
namespace detail {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// One pass over the members: an exact match returns at once; the first case-insensitive match is kept in
// case no exact one follows. Keys of a different length are skipped on the size check alone, so this
// costs about what an exact lookup costs and allocates nothing.
const std::pair<std::string, json::value>* member(const json::object& o, std::string_view name) {
  const std::pair<std::string, json::value>* folded = nullptr;
  const std::size_t n = name.size();
  for (const auto& kv : o) {
    const std::string& key = kv.first;
    if (key.size() != n) continue;
    bool exact = true;
    std::size_t k = 0;
    for (; k < n; ++k) {
      const char a = key[k], b = name[k];
      if (a == b) continue;
      exact = false;
      if (lower(a) != lower(b)) break;
    }
    if (k < n) continue;
    if (exact) return &kv;
    if (!folded) folded = &kv;
  }
  return folded;
}

}  // namespace

const json::value* lookup(const json::value& doc, const path& p, const std::string** stored, std::size_t first) {
  const json::value* cur = &doc;
  for (std::size_t i = first; i < p.size(); ++i) {
    const path_segment& s = p[i];
    if (s.index >= 0) {
      if (!cur->is_array()) return nullptr;
      const json::array& a = cur->as_array();
      if (static_cast<std::uint64_t>(s.index) >= a.size()) return nullptr;
      cur = &a[static_cast<std::size_t>(s.index)];
      continue;
    }
    if (!cur->is_object()) return nullptr;
    const auto* kv = member(cur->as_object(), s.name);
    if (!kv) return nullptr;
    if (stored) *stored = &kv->first;
    cur = &kv->second;
  }
  return cur;
}

}  // namespace detail

// ---- document_resolver ----------------------------------------------------------------------------------

const json::value* document_resolver::resolve(const path& p) const { return detail::lookup(doc_, p); }

const json::value* resolve_in(const json::value& doc, const path& p, std::size_t first) {
  return detail::lookup(doc, p, nullptr, first);
}

// ---- condition ------------------------------------------------------------------------------------------

condition::condition() = default;
condition::condition(std::shared_ptr<const impl> p) : p_(std::move(p)) {}

bool condition::matches(const resolver& r) const {
  if (!p_ || !p_->c.root) return true;
  detail::eval_ctx ctx(r);
  const detail::val v = p_->c.root->eval(ctx);
  return v.k == detail::vkind::boolean && v.b;
}

const std::vector<path>& condition::paths() const {
  static const std::vector<path> none;
  return p_ ? p_->c.paths : none;
}

result<condition> compile_condition(std::string_view text, const compile_options& opt) {
  auto parsed = detail::parse_condition(text, opt);
  if (!parsed) return parsed.err();
  auto p = std::make_shared<condition::impl>();
  p->c = std::move(*parsed);
  return condition(std::move(p));
}

// ---- compiled_query -------------------------------------------------------------------------------------

compiled_query::compiled_query(std::shared_ptr<const impl> p) : p_(std::move(p)) {}

collection compiled_query::from() const { return p_->q.from; }
std::optional<std::uint64_t> compiled_query::top() const { return p_->q.top; }
bool compiled_query::select_star() const { return p_->q.star; }
bool compiled_query::aggregate() const { return p_->q.aggregate; }
const condition& compiled_query::where() const { return p_->where; }

std::string compiled_query::item_type() const {
  if (p_->q.from == collection::jobs) return "deviceJob";
  return p_->q.star && !p_->q.aggregate ? "twin" : "raw";
}

json::value compiled_query::project(const json::value& doc) const {
  if (p_->q.star) return doc;
  // Aggregates have no per-document value; an aggregate query projects its GROUP BY items only.
  json::object out;
  for (const detail::select_item& it : p_->q.items) {
    if (it.agg != detail::agg_fn::none) continue;
    const std::string* stored = nullptr;
    const json::value* v = detail::lookup(doc, it.p, &stored);
    if (!v) continue;  // undefined values are left out
    out.set(it.alias ? *it.alias : *stored, *v);
  }
  return out;
}

result<compiled_query> compile_query(std::string_view text, const compile_options& opt) {
  auto parsed = detail::parse_query(text, opt);
  if (!parsed) return parsed.err();
  auto p = std::make_shared<compiled_query::impl>();
  p->q = std::move(*parsed);
  if (p->q.where.root) {
    auto c = std::make_shared<condition::impl>();
    c->c = std::move(p->q.where);
    p->where = condition(std::move(c));
  }
  return compiled_query(std::move(p));
}

}  // namespace fleethub::query
