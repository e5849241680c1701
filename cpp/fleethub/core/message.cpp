#include "fleethub/core/message.hpp"

namespace fleethub {

const std::string* find_property(const property_list& props, std::string_view key) {
  for (const auto& p : props) {
    if (p.key == key) return &p.value;
  }
  return nullptr;
}

void set_property(property_list& props, std::string_view key, std::string value) {
  for (auto& p : props) {
    if (p.key == key) {
      p.value = std::move(value);
      return;
    }
  }
  props.push_back(property{std::string(key), std::move(value)});
}

}  // namespace fleethub
