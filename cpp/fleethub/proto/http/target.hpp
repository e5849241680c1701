// Splits an origin-form request-target ("/devices/d%2F1/messages/events?api-version=2021-04-12&reject")
// into percent-decoded path segments and query parameters. Pure.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fleethub/core/result.hpp"

namespace fleethub::proto::http {

struct target {
  std::vector<std::string> segments;  // decoded; no empty segments (a trailing '/' is dropped)
  std::vector<std::pair<std::string, std::string>> query;  // decoded ('+' stays '+'); "reject" -> {"reject",""}

  const std::string* query_value(std::string_view key) const;  // case-insensitive key; nullptr if absent
  bool has_query(std::string_view key) const { return query_value(key) != nullptr; }
};

// Errors: invalid_argument for a target that is not origin-form (no leading '/'), a bad %-escape, or a
// decoded segment or query key/value containing NUL.
result<target> parse_target(std::string_view raw);

}  // namespace fleethub::proto::http
