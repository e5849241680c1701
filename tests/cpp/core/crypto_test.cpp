#include "fleethub/core/crypto.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "fleethub/core/encoding.hpp"

namespace fleethub {
namespace {

template <std::size_t N>
std::string hex(const std::array<std::uint8_t, N>& a) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (auto b : a) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

TEST(Crypto, HmacSha256Rfc4231) {
  // Test case 1: key = 20 x 0x0b, data = "Hi There".
  bytes key1(20, 0x0b);
  EXPECT_EQ(hex(hmac_sha256(key1, as_bytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: key = "Jefe".
  EXPECT_EQ(hex(hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: 131-byte key (longer than the block size).
  bytes key6(131, 0xaa);
  EXPECT_EQ(hex(hmac_sha256(key6, as_bytes("Test Using Larger Than Block-Size Key - Hash Key First"))),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Crypto, HmacEmptyInputs) {
  EXPECT_EQ(hex(hmac_sha256({}, {})), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(Crypto, Digests) {
  EXPECT_EQ(hex(sha1(as_bytes("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(hex(sha256(as_bytes("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Crypto, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal(as_bytes("abc"), as_bytes("abc")));
  EXPECT_FALSE(constant_time_equal(as_bytes("abc"), as_bytes("abd")));
  EXPECT_FALSE(constant_time_equal(as_bytes("abc"), as_bytes("abcd")));
  EXPECT_TRUE(constant_time_equal({}, {}));
}

TEST(Crypto, RandomBytesAndKeys) {
  EXPECT_EQ(random_bytes(0).size(), 0u);
  EXPECT_EQ(random_bytes(48).size(), 48u);
  EXPECT_NE(random_bytes(32), random_bytes(32));
  auto key = random_key_base64();
  EXPECT_EQ(key.size(), 44u);
  auto decoded = base64_decode(key);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->size(), 32u);
}

TEST(Crypto, UuidV4Format) {
  std::regex re("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto u = new_uuid();
    EXPECT_TRUE(std::regex_match(u, re)) << u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace fleethub
