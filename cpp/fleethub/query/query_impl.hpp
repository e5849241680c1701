// The private halves of condition and compiled_query (query.hpp), shared by query.cpp and aggregation.cpp,
// and the document lookup that projections and aggregates use. Internal to fleethub_query.
#pragma once
#include <string>

#include "fleethub/core/json.hpp"
#include "fleethub/query/parser.hpp"
#include "fleethub/query/query.hpp"

namespace fleethub::query {

struct condition::impl {
  detail::parsed_condition c;
};

struct compiled_query::impl {
  detail::parsed_query q;
  condition where;  // shares nothing with q.where, which compile_query moved into it
};

namespace detail {

// Walks `p` through `doc` like document_resolver (case-insensitive members, exact match first; subscripts
// index arrays). When `stored` is given it receives the document's own spelling of the last member name
// on the path (projection and GROUP BY output keys). nullptr when the path does not resolve.
const json::value* lookup(const json::value& doc, const path& p, const std::string** stored = nullptr,
                         std::size_t first = 0);

}  // namespace detail
}  // namespace fleethub::query
