#include "fleethub/core/encoding.hpp"

#include <gtest/gtest.h>

namespace fleethub {
namespace {

std::string b64(std::string_view s) { return base64_encode(as_bytes(s)); }
std::optional<std::string> unb64(std::string_view s) {
  auto r = base64_decode(s);
  if (!r) return std::nullopt;
  return std::string(as_string_view(*r));
}

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(unb64(""), "");
  EXPECT_EQ(unb64("Zg=="), "f");
  EXPECT_EQ(unb64("Zm8="), "fo");
  EXPECT_EQ(unb64("Zm9v"), "foo");
  EXPECT_EQ(unb64("Zm9vYg=="), "foob");
  EXPECT_EQ(unb64("Zm9vYmE="), "fooba");
  EXPECT_EQ(unb64("Zm9vYmFy"), "foobar");
}

TEST(Base64, MissingPaddingAccepted) {
  EXPECT_EQ(unb64("Zg"), "f");
  EXPECT_EQ(unb64("Zm8"), "fo");
  EXPECT_EQ(unb64("Zm9vYg"), "foob");
}

TEST(Base64, RejectsInvalid) {
  EXPECT_FALSE(base64_decode("Zm9v YmFy"));   // whitespace
  EXPECT_FALSE(base64_decode("Zm9v\nYmFy"));
  EXPECT_FALSE(base64_decode("Zm9v-_"));      // url-safe alphabet
  EXPECT_FALSE(base64_decode("Zm=9v"));       // padding in the middle
  EXPECT_FALSE(base64_decode("Z"));           // lone sextet
  EXPECT_FALSE(base64_decode("Zg="));         // padded but wrong length
  EXPECT_FALSE(base64_decode("Zg==="));
  EXPECT_FALSE(base64_decode("===="));
}

TEST(Base64, BinaryRoundTrip) {
  bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    bytes part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    auto back = base64_decode(base64_encode(part));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, part);
  }
}

TEST(Percent, DecodeLenient) {
  EXPECT_EQ(percent_decode("a%20b"), "a b");
  EXPECT_EQ(percent_decode("%24.mid"), "$.mid");
  EXPECT_EQ(percent_decode("application%2fjson"), "application/json");
  EXPECT_EQ(percent_decode("a+b"), "a+b");  // '+' is not a space
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("100%2"), "100%2");
  EXPECT_EQ(percent_decode("%zz%4"), "%zz%4");
  EXPECT_EQ(percent_decode("%%41"), "%A");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_EQ(percent_decode("%00"), std::string(1, '\0'));
}

TEST(Percent, Encode) {
  EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode("hub.local/devices/dev1"), "hub.local%2Fdevices%2Fdev1");
  EXPECT_EQ(percent_encode("hub.local/devices/dev1", false), "hub.local%2fdevices%2fdev1");
  EXPECT_EQ(percent_encode("a b+c=d&e$"), "a%20b%2Bc%3Dd%26e%24");
  EXPECT_EQ(percent_encode("\xC3\xA9"), "%C3%A9");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(percent_decode(percent_encode(all)), all);
  EXPECT_EQ(percent_decode(percent_encode(all, false)), all);
}

TEST(Iso8601, Format) {
  EXPECT_EQ(format_iso8601(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_iso8601(1704164645678), "2024-01-02T03:04:05.678Z");
  EXPECT_EQ(format_iso8601(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_iso8601(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(format_iso8601(-62135596800000), "0001-01-01T00:00:00.000Z");
}

TEST(Iso8601, Parse) {
  EXPECT_EQ(parse_iso8601("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_iso8601("2024-01-02T03:04:05.678Z"), 1704164645678);
  EXPECT_EQ(parse_iso8601("2024-01-02T03:04:05.6Z"), 1704164645600);
  EXPECT_EQ(parse_iso8601("2024-01-02T03:04:05.6789999Z"), 1704164645678);  // .NET 7 digits, truncated
  EXPECT_EQ(parse_iso8601("2024-01-02T04:04:05.678+01:00"), 1704164645678);
  EXPECT_EQ(parse_iso8601("2024-01-01T22:34:05.678-04:30"), 1704164645678);
  EXPECT_EQ(parse_iso8601("0001-01-01T00:00:00Z"), -62135596800000);
  EXPECT_EQ(parse_iso8601("1969-12-31T23:59:59.999Z"), -1);
  EXPECT_EQ(parse_iso8601("2000-02-29T00:00:00Z"), 951782400000);
  EXPECT_EQ(parse_iso8601("9999-12-31T23:59:59.999Z"), 253402300799999);
}

TEST(Iso8601, ParseRejectsMalformed) {
  for (const char* bad : {"", "2024-01-02", "2024-01-02T03:04:05", "2024-01-02 03:04:05Z", "2024-1-02T03:04:05Z",
                          "2024-13-02T03:04:05Z", "2023-02-29T00:00:00Z", "2024-01-32T00:00:00Z",
                          "2024-01-02T24:00:00Z", "2024-01-02T03:60:00Z", "2024-01-02T03:04:05.Z",
                          "2024-01-02T03:04:05Zjunk", "2024-01-02T03:04:05+0100", "2024-01-02T03:04:05+1:00",
                          "abcd-01-02T03:04:05Z"}) {
    EXPECT_FALSE(parse_iso8601(bad)) << bad;
  }
}

TEST(Iso8601, RoundTrip) {
  for (std::int64_t ms : {0LL, 1LL, -1LL, 1700000000123LL, -62135596800000LL, 253402300799999LL, -86400001LL}) {
    EXPECT_EQ(parse_iso8601(format_iso8601(ms)), ms) << ms;
  }
}

}  // namespace
}  // namespace fleethub
