#include "fleethub/core/identity.hpp"

#include <string>

namespace fleethub {
namespace {

constexpr std::string_view allowed_specials = "-:.+%_#*?!(),=@;$'";
constexpr std::size_t max_id_length = 128;

bool allowed(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         allowed_specials.find(c) != std::string_view::npos;
}

std::string describe(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  static constexpr char hex[] = "0123456789ABCDEF";
  return std::string("byte 0x") + hex[u >> 4] + hex[u & 15];
}

result<void> validate_id(std::string_view kind, std::string_view id) {
  if (id.empty() || id.size() > max_id_length) {
    return make_error(errc::invalid_argument, std::string(kind) + " must be 1..128 characters (got " +
                                                  std::to_string(id.size()) + ")");
  }
  for (char c : id) {
    if (!allowed(c)) {
      return make_error(errc::invalid_argument,
                        std::string(kind) + " '" + std::string(id) + "' contains " + describe(c) +
                            " (allowed: letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ ')");
    }
  }
  return {};
}

}  // namespace

result<void> validate_device_id(std::string_view id) { return validate_id("device id", id); }
result<void> validate_module_id(std::string_view id) { return validate_id("module id", id); }

}  // namespace fleethub
