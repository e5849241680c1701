// Recursive-descent parser for the IoT Hub query language (semantics.md §2.2): SELECT statements and bare
// conditions (WHERE clauses, route conditions). Produces the expression tree of ast.hpp plus the clause
// structure of a query, and applies the language's restrictions (no ORDER BY/JOIN/..., GROUP BY only FROM
// devices, only SELECT * FROM devices.jobs). Internal to fleethub_query.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/result.hpp"
#include "fleethub/query/ast.hpp"
#include "fleethub/query/query.hpp"

namespace fleethub::query::detail {

enum class agg_fn { none, count, avg, sum, min, max };

struct select_item {
  agg_fn agg = agg_fn::none;
  path p;                            // empty for COUNT() and COUNT(*)
  std::optional<std::string> alias;  // AS name
  int group_index = -1;              // aggregate queries: the GROUP BY path this plain item names
};

struct parsed_condition {
  node_ptr root;            // nullptr: always true
  std::vector<path> paths;  // distinct paths, in order of first appearance
};

struct parsed_query {
  collection from = collection::devices;
  std::optional<std::uint64_t> top;
  bool star = false;
  bool aggregate = false;
  std::vector<select_item> items;
  parsed_condition where;
  std::vector<path> group_by;
};

// Errors: invalid_argument (message "syntax error at position N: expected X, found Y" for syntax errors,
// a plain sentence for unsupported features and misuse), too_large over opt.max_length.
result<parsed_condition> parse_condition(std::string_view text, const compile_options& opt);
result<parsed_query> parse_query(std::string_view text, const compile_options& opt);

// Same path, member names compared case-insensitively (as resolution does).
bool same_path(const path& a, const path& b);
// "properties.reported.temp", "$body.a[0]": for messages.
std::string path_text(const path& p);

}  // namespace fleethub::query::detail
