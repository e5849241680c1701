#include "fleethub/core/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "fleethub/core/encoding.hpp"

namespace fleethub {
namespace {

template <std::size_t N>
std::array<std::uint8_t, N> digest(const EVP_MD* md, bytes_view data) {
  std::array<std::uint8_t, N> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 || len != N) {
    throw std::runtime_error("EVP_Digest failed");
  }
  return out;
}

}  // namespace

std::array<std::uint8_t, 32> hmac_sha256(bytes_view key, bytes_view msg) {
  std::array<std::uint8_t, 32> out{};
  unsigned int len = 0;
  // HMAC() rejects a null key pointer even with length 0, so pass a valid address for empty keys.
  static const std::uint8_t empty = 0;
  const std::uint8_t* k = key.empty() ? &empty : key.data();
  const std::uint8_t* m = msg.empty() ? &empty : msg.data();
  if (HMAC(EVP_sha256(), k, static_cast<int>(key.size()), m, msg.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return out;
}

std::array<std::uint8_t, 20> sha1(bytes_view data) { return digest<20>(EVP_sha1(), data); }
std::array<std::uint8_t, 32> sha256(bytes_view data) { return digest<32>(EVP_sha256(), data); }

bool constant_time_equal(bytes_view a, bytes_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bytes random_bytes(std::size_t n) {
  bytes out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed: the system CSPRNG is unavailable");
  }
  return out;
}

std::string random_key_base64() { return base64_encode(random_bytes(32)); }

std::string new_uuid() {
  bytes b = random_bytes(16);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[b[i] >> 4];
    out += hex[b[i] & 15];
  }
  return out;
}

}  // namespace fleethub
