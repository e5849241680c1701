// Property-bag parser fuzz target: arbitrary bytes must never crash, and whatever parses must survive an
// encode -> parse round trip unchanged (the hub re-emits bags it parsed on C2D and routing paths).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fleethub/proto/mqtt/property_bag.hpp"

using namespace fleethub::proto::mqtt;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bag(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_property_bag(bag);
  if (!parsed) return 0;
  std::string encoded = encode_property_bag(parsed->system_properties, parsed->app_properties);
  auto again = parse_property_bag(encoded);
  if (!again) std::abort();
  if (again->system_properties != parsed->system_properties || again->app_properties != parsed->app_properties)
    std::abort();
  return 0;
}
