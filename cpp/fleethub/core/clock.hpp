// Time types. Protocol machines never read a clock: `now` is always an argument.
#pragma once
#include <chrono>
#include <cstdint>

namespace fleethub {

using steady_time = std::chrono::steady_clock::time_point;  // deadlines, keep-alive
using wall_time = std::chrono::system_clock::time_point;    // enqueued time, token expiry
using millis = std::chrono::milliseconds;

inline std::int64_t to_unix_ms(wall_time t) {
  return std::chrono::duration_cast<millis>(t.time_since_epoch()).count();
}
inline wall_time from_unix_ms(std::int64_t ms) { return wall_time(millis(ms)); }
// Whole seconds since the epoch (SAS token expiry, continuation token expiry). Reads the clock: not for proto/.
inline std::int64_t unix_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fleethub
