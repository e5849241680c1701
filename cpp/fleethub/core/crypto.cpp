#include "fleethub/core/crypto.hpp"

#include <cstring>

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

namespace {
// xoshiro256**: message ids need uniqueness, not secrecy, and RAND_bytes through OpenSSL 3's provider layer
// costs about a microsecond per call on the telemetry hot path. Seeded per thread from the CSPRNG.
struct fast_rng {
  std::uint64_t s[4];
  fast_rng() {
    auto seed = random_bytes(sizeof s);
    std::memcpy(s, seed.data(), sizeof s);
    if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() {
    std::uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
};
}  // namespace

std::string new_uuid() {
  thread_local fast_rng rng;
  std::uint8_t b[16];
  std::uint64_t a = rng.next(), c = rng.next();
  std::memcpy(b, &a, 8);
  std::memcpy(b + 8, &c, 8);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(36, '-');
  std::size_t o = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++o;
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  return out;
}

}  // namespace fleethub
