// Identifier rules for devices, modules and policies (IoT Hub's): up to 128 characters of ASCII letters,
// digits and - . % _ * ? ! ( ) , : = @ $ '  (device ids); modules the same. Returns an error that
// says which character or length rule failed.
#pragma once
#include <string_view>

#include "fleethub/core/result.hpp"

namespace fleethub {

result<void> validate_device_id(std::string_view id);
result<void> validate_module_id(std::string_view id);

}  // namespace fleethub
