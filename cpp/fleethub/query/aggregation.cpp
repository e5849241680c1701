// GROUP BY and aggregates (COUNT, AVG, SUM, MIN, MAX) over the documents a query matched (semantics.md §2.3).
// Groups are keyed by the serialized JSON of their GROUP BY values, so a group is an exact JSON value
// (1 and 1.0 are different groups); output follows first-seen order. Thread safety: an aggregation is
// mutable state for one query run; use it from one thread (the compiled query it came from stays shareable).
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fleethub/query/query_impl.hpp"

namespace fleethub::query {

using detail::agg_fn;
using detail::select_item;
using detail::val;
using detail::vkind;

namespace {

// One aggregate of one group. SUM stays an integer while every input is an integer and nothing overflows.
struct accumulator {
  std::int64_t count = 0;  // COUNT: documents (COUNT(path): documents where path is defined)
  std::int64_t n = 0;      // numeric inputs seen
  std::int64_t isum = 0;
  bool int_sum = true;
  double dsum = 0;
  std::optional<val> best;  // MIN/MAX so far (numbers only; val holds no pointers for numbers)

  void add_number(const val& v, agg_fn f) {
    ++n;
    dsum += v.as_double();
    if (int_sum && (v.k != vkind::integer || __builtin_add_overflow(isum, v.i, &isum))) int_sum = false;
    if (!best) {
      best = v;
    } else {
      auto c = detail::compare(v, *best, true);
      if (c && ((f == agg_fn::min && *c < 0) || (f == agg_fn::max && *c > 0))) best = v;
    }
  }

  // nullopt: undefined, so the key is left out of the row.
  std::optional<json::value> result(agg_fn f) const {
    switch (f) {
      case agg_fn::count: return json::value(count);
      case agg_fn::sum:
        if (int_sum) return json::value(isum);  // 0 when nothing numeric was seen
        return json::value(dsum);
      case agg_fn::avg:
        if (n == 0) return std::nullopt;
        return json::value(dsum / static_cast<double>(n));
      case agg_fn::min:
      case agg_fn::max:
        if (!best) return std::nullopt;
        return best->k == vkind::integer ? json::value(best->i) : json::value(best->d);
      case agg_fn::none: break;
    }
    return std::nullopt;
  }
};

struct group {
  std::vector<std::optional<json::value>> keys;  // one per GROUP BY path; nullopt: undefined there
  std::vector<std::string> names;                // the stored spelling of each key's last member name
  std::vector<accumulator> accs;                 // one per select item (unused for plain items)
};

}  // namespace

struct compiled_query::aggregation::state {
  std::shared_ptr<const compiled_query::impl> q;
  std::vector<group> groups;
  std::unordered_map<std::string, std::size_t> index;  // serialized group key -> groups[]
  std::string key;                                     // scratch, reused for every document
  std::vector<const json::value*> vals;                // scratch: this document's GROUP BY values
  std::vector<const std::string*> names;
  json::array rows;  // queries without aggregates: the projections, in order

  group& new_group() {
    group& g = groups.emplace_back();
    g.keys.resize(q->q.group_by.size());
    g.names.resize(q->q.group_by.size());
    g.accs.resize(q->q.items.size());
    return g;
  }
};

compiled_query::aggregation::aggregation(std::shared_ptr<state> s) : s_(std::move(s)) {}

compiled_query::aggregation compiled_query::start_aggregation() const {
  auto s = std::make_shared<aggregation::state>();
  s->q = p_;
  // Aggregates without GROUP BY produce exactly one row, even over no documents (COUNT() = 0).
  if (p_->q.aggregate && p_->q.group_by.empty()) s->new_group();
  return aggregation(std::move(s));
}

void compiled_query::aggregation::add(const json::value& doc) {
  state& s = *s_;
  const detail::parsed_query& q = s.q->q;
  if (!q.aggregate) {
    s.rows.push_back(compiled_query(s.q).project(doc));
    return;
  }
  group* g = nullptr;
  if (q.group_by.empty()) {
    g = &s.groups.front();
  } else {
    const std::size_t n = q.group_by.size();
    s.vals.assign(n, nullptr);
    s.names.assign(n, nullptr);
    s.key.clear();
    for (std::size_t k = 0; k < n; ++k) {
      s.vals[k] = detail::lookup(doc, q.group_by[k], &s.names[k]);
      // Serialized JSON never holds raw control bytes, so these markers cannot collide with a value.
      s.key.push_back(s.vals[k] ? '\x02' : '\x01');
      if (s.vals[k]) json::serialize_to(s.key, *s.vals[k]);
    }
    auto it = s.index.find(s.key);
    if (it != s.index.end()) {
      g = &s.groups[it->second];
    } else {
      s.index.emplace(s.key, s.groups.size());
      g = &s.new_group();
      for (std::size_t k = 0; k < n; ++k) {
        if (!s.vals[k]) continue;
        g->keys[k] = *s.vals[k];
        g->names[k] = *s.names[k];
      }
    }
  }
  for (std::size_t k = 0; k < q.items.size(); ++k) {
    const select_item& it = q.items[k];
    accumulator& acc = g->accs[k];
    if (it.agg == agg_fn::none) continue;
    if (it.agg == agg_fn::count) {
      if (it.p.empty() || detail::lookup(doc, it.p)) ++acc.count;
      continue;
    }
    // AVG/SUM/MIN/MAX read numbers only; other values (and missing ones) are skipped.
    const val v = val::of(detail::lookup(doc, it.p));
    if (v.is_number()) acc.add_number(v, it.agg);
  }
}

json::array compiled_query::aggregation::finish() const {
  const state& s = *s_;
  const detail::parsed_query& q = s.q->q;
  const std::uint64_t limit = q.top.value_or(UINT64_MAX);
  if (!q.aggregate) {
    const auto n = static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(limit, s.rows.size()));
    return json::array(s.rows.begin(), s.rows.begin() + n);
  }
  json::array out;
  for (const group& g : s.groups) {
    if (out.size() >= limit) break;
    json::object row;
    int unnamed = 0;  // unaliased aggregates are "$1", "$2", ... in SELECT order
    for (std::size_t k = 0; k < q.items.size(); ++k) {
      const select_item& it = q.items[k];
      if (it.agg == agg_fn::none) {
        const auto gi = static_cast<std::size_t>(it.group_index);
        if (g.keys[gi]) row.set(it.alias ? *it.alias : g.names[gi], *g.keys[gi]);
        continue;
      }
      std::string name = it.alias ? *it.alias : "$" + std::to_string(++unnamed);
      if (auto v = g.accs[k].result(it.agg)) row.set(std::move(name), std::move(*v));
    }
    out.emplace_back(std::move(row));
  }
  return out;
}

}  // namespace fleethub::query
