#include "fleethub/core/identity.hpp"

#include <gtest/gtest.h>

namespace fleethub {
namespace {

TEST(Identity, AcceptsRestModelCharacterSet) {
  EXPECT_TRUE(validate_device_id("dev1"));
  EXPECT_TRUE(validate_device_id("Dev-1:a.b+c%d_e#f*g?h!i(j)k,l=m@n;o$p'q"));
  EXPECT_TRUE(validate_device_id(std::string(128, 'a')));
  EXPECT_TRUE(validate_module_id("$edgeAgent"));
  EXPECT_TRUE(validate_module_id("mod1"));
}

TEST(Identity, RejectsBadCharactersWithMessage) {
  auto r = validate_device_id("a b");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_EQ(r.err().message,
            "device id 'a b' contains ' ' (allowed: letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ ')");
  for (const char* bad : {"a/b", "a\\b", "a&b", "a\"b", "a<b", "a{b", "a[b", "a~b", "a^b", "a|b", "a`b", "a\tb"}) {
    EXPECT_FALSE(validate_device_id(bad)) << bad;
  }
  EXPECT_FALSE(validate_device_id("caf\xC3\xA9"));  // non-ASCII
  auto m = validate_module_id("m/x");
  ASSERT_FALSE(m);
  EXPECT_NE(m.err().message.find("module id 'm/x' contains '/'"), std::string::npos) << m.err().message;
}

TEST(Identity, LengthRule) {
  auto empty = validate_device_id("");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.err().message.find("1..128 characters"), std::string::npos) << empty.err().message;
  auto longer = validate_module_id(std::string(129, 'a'));
  ASSERT_FALSE(longer);
  EXPECT_EQ(longer.err().code, errc::invalid_argument);
  EXPECT_NE(longer.err().message.find("1..128 characters"), std::string::npos);
}

TEST(Identity, CaseSensitiveIdsAreDistinctButBothValid) {
  EXPECT_TRUE(validate_device_id("DEV"));
  EXPECT_TRUE(validate_device_id("dev"));
}

}  // namespace
}  // namespace fleethub
