#include "fleethub/proto/mqtt/property_bag.hpp"

#include <array>
#include <utility>

#include "fleethub/core/encoding.hpp"

namespace fleethub::proto::mqtt {
namespace {

struct short_key {
  std::string_view bag;     // without the "$." prefix
  std::string_view sysprop;
};

// Keys the SDKs send (wire-protocol.md §1.5). Parsing and encoding share this table.
constexpr std::array<short_key, 13> short_keys{{
    {"mid", sysprop::message_id},
    {"cid", sysprop::correlation_id},
    {"uid", sysprop::user_id},
    {"ct", sysprop::content_type},
    {"ce", sysprop::content_encoding},
    {"exp", sysprop::absolute_expiry_time},
    {"to", sysprop::to},
    {"on", sysprop::output_name},
    {"ifid", sysprop::interface_id},
    {"sub", sysprop::component_name},
    {"ctime", sysprop::creation_time_utc},
    {"diagid", sysprop::diag_id},
    {"diagctx", sysprop::diag_context},
}};

// Encode-only: csdk recognises %24.cdid / %24.cmid on device-bound messages (module-to-module routing),
// but a device must not be able to set them on D2C, so the parser does not map them.
constexpr std::array<short_key, 2> encode_only_keys{{
    {"cdid", sysprop::connection_device_id},
    {"cmid", sysprop::connection_module_id},
}};

std::optional<std::string_view> short_key_for(std::string_view name) {
  for (const auto& k : short_keys)
    if (k.sysprop == name) return k.bag;
  for (const auto& k : encode_only_keys)
    if (k.sysprop == name) return k.bag;
  return std::nullopt;
}

}  // namespace

std::optional<std::string_view> system_property_from_short_key(std::string_view short_key) {
  for (const auto& k : short_keys)
    if (k.bag == short_key) return k.sysprop;
  return std::nullopt;
}

result<parsed_bag> parse_property_bag(std::string_view bag, const bag_limits& limits) {
  parsed_bag out;
  std::size_t count = 0;
  while (!bag.empty()) {
    std::size_t amp = bag.find('&');
    std::string_view segment = bag.substr(0, amp);
    bag = amp == std::string_view::npos ? std::string_view{} : bag.substr(amp + 1);
    if (segment.empty()) continue;  // "a=1&&b=2" or a trailing '&'

    std::size_t eq = segment.find('=');
    std::string key = percent_decode(segment.substr(0, eq));
    // A bare key (no '=') is a property with an empty value: property values cannot be null.
    std::string value = eq == std::string_view::npos ? std::string{} : percent_decode(segment.substr(eq + 1));

    if (key.empty()) {
      return make_error(errc::invalid_argument,
                        "property bag segment '" + std::string(segment) + "' has an empty key");
    }
    if (++count > limits.max_properties) {
      return make_error(errc::too_large, "property bag has more than " + std::to_string(limits.max_properties) +
                                             " properties");
    }
    if (key.size() > limits.max_key_length) {
      return make_error(errc::too_large, "property key of " + std::to_string(key.size()) +
                                             " bytes exceeds the limit of " +
                                             std::to_string(limits.max_key_length));
    }
    if (value.size() > limits.max_value_length) {
      return make_error(errc::too_large, "value of property '" + key.substr(0, 64) + "' (" +
                                             std::to_string(value.size()) + " bytes) exceeds the limit of " +
                                             std::to_string(limits.max_value_length));
    }

    if (key.size() > 2 && key[0] == '$' && key[1] == '.') {
      if (auto name = system_property_from_short_key(std::string_view(key).substr(2))) {
        if (find_property(out.system_properties, *name) != nullptr) {
          return make_error(errc::invalid_argument, "system property '" + key + "' appears more than once");
        }
        out.system_properties.push_back(property{std::string(*name), std::move(value)});
        continue;
      }
      // Unknown "$.xxx" (a newer SDK's key): keep it rather than fail the publish.
    }
    out.app_properties.push_back(property{std::move(key), std::move(value)});
  }
  return out;
}

std::string encode_property_bag(const property_list& system_properties, const property_list& app_properties) {
  std::string out;
  auto append = [&out](std::string_view encoded_key, std::string_view value) {
    if (!out.empty()) out += '&';
    out += encoded_key;
    out += '=';  // values are never null here, so an empty value is written as "key="
    out += percent_encode(value);
  };
  for (const auto& p : system_properties) {
    if (auto sk = short_key_for(p.key)) {
      append("%24." + std::string(*sk), p.value);  // csdk compares these raw bytes
    } else {
      append(percent_encode(p.key), p.value);
    }
  }
  for (const auto& p : app_properties) append(percent_encode(p.key), p.value);
  return out;
}

}  // namespace fleethub::proto::mqtt
