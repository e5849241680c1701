// Cryptographic primitives (libcrypto only: pure computation, no TLS and no I/O, so allowed in core).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "fleethub/core/bytes.hpp"

namespace fleethub {

std::array<std::uint8_t, 32> hmac_sha256(bytes_view key, bytes_view msg);
std::array<std::uint8_t, 20> sha1(bytes_view data);
std::array<std::uint8_t, 32> sha256(bytes_view data);
bool constant_time_equal(bytes_view a, bytes_view b);
bytes random_bytes(std::size_t n);       // CSPRNG (RAND_bytes); throws std::runtime_error on failure
std::string random_key_base64();         // 32 random bytes, base64: an IoT Hub SAS key
std::string new_uuid();                  // random v4 UUID, lowercase with dashes

}  // namespace fleethub
