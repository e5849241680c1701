// Byte vocabulary shared by every layer. Thread safety: plain values.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fleethub {

using bytes = std::vector<std::uint8_t>;
using bytes_view = std::span<const std::uint8_t>;

inline bytes_view as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_string_view(bytes_view b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline bytes to_bytes(std::string_view s) { return bytes(s.begin(), s.end()); }

}  // namespace fleethub
