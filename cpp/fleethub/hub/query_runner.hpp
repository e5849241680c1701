// Runs IoT Hub twin queries (semantics.md §2) over committed data: FROM devices scans the devices table and
// the twins table together in key order (both are keyed by device id, module twins by device id + NUL +
// module id), builds each service twin (the same JSON as GET /twins/{id}) and evaluates the compiled query;
// FROM devices.modules does the same over the modules table; FROM devices.jobs has no rows yet (no jobs).
// Paging: pages of at most `max_items` (default 100), TOP caps the total, and a signed continuation token
// (continuation.hpp) resumes a scan after the last returned key. Aggregates and GROUP BY are computed over
// every matching twin on each page and their rows paged by offset.
// Consistency: strongly consistent for committed writes; a twin write whose commit is still pending is not
// visible yet. Thread safety: run() may be called from any number of threads at once.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/hub/continuation.hpp"

namespace fleethub::hub {

class engine;
class registry;

struct query_page {
  std::string item_type;     // x-ms-item-type: "twin", "deviceJob" or "raw"
  json::array items;
  std::string continuation;  // empty = last page
};

class query_runner {
 public:
  query_runner(engine& eng, registry& reg, std::chrono::seconds continuation_ttl);

  // `max_items` 0 means the default page size (100); callers cap it (the REST API at 100, semantics §2.4).
  // Errors: invalid_argument (syntax: the query compiler's message; bad, foreign or expired continuation),
  // too_large (query text over 8192 characters), storage.
  result<query_page> run(std::string_view text, std::string_view continuation, std::size_t max_items);

  static constexpr std::size_t default_page_size = 100;

 private:
  engine& eng_;
  [[maybe_unused]] registry& reg_;  // for identity lookups beyond the scanned record (kept in the contract)
  std::chrono::seconds ttl_;
  continuation_codec codec_;
};

}  // namespace fleethub::hub
