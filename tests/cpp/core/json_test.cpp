#include "fleethub/core/json.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace fleethub::json {
namespace {

void expect_invalid(std::string_view text);

value parsed(std::string_view text) {
  auto r = parse(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.err().message);
  return r.ok() ? *r : value();
}

std::string round_trip(std::string_view text) { return serialize(parsed(text)); }

void expect_invalid(std::string_view text) {
  auto r = parse(text);
  ASSERT_FALSE(r.ok()) << "accepted: " << text;
  EXPECT_EQ(r.err().code, errc::invalid_argument) << text;
  EXPECT_FALSE(r.err().message.empty());
}

TEST(JsonValue, KindsAndAccessors) {
  EXPECT_TRUE(value().is_null());
  EXPECT_TRUE(value(nullptr).is_null());
  EXPECT_EQ(value(true).type(), kind::boolean);
  EXPECT_EQ(value(42).type(), kind::integer);
  EXPECT_EQ(value(std::int64_t{-7}).as_int(), -7);
  EXPECT_EQ(value(2.5).type(), kind::number);
  EXPECT_EQ(value(3).as_double(), 3.0);  // integers convert
  EXPECT_EQ(value("x").as_string(), "x");
  EXPECT_EQ(value(std::string_view("sv")).as_string(), "sv");
  EXPECT_EQ(value(std::string("s")).as_string(), "s");
  EXPECT_TRUE(value(array{1, "a", nullptr}).is_array());
  EXPECT_TRUE(value(object{{"a", 1}}).is_object());
  EXPECT_EQ(value(std::uint64_t{1} << 63).type(), kind::number);  // beyond int64
  EXPECT_EQ(value(std::uint64_t{5}).type(), kind::integer);
  EXPECT_THROW((void)value(1).as_string(), std::bad_variant_access);
}

TEST(JsonObject, InsertionOrderSetFindErase) {
  object o;
  o.set("b", 1);
  o.set("a", 2);
  o.set("c", 3);
  o.set("a", 20);  // replaced in place
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].first, "b");
  EXPECT_EQ(o[1].first, "a");
  EXPECT_EQ(o[1].second.as_int(), 20);
  EXPECT_EQ(o[2].first, "c");
  ASSERT_NE(o.find("c"), nullptr);
  EXPECT_EQ(o.find("zz"), nullptr);
  EXPECT_TRUE(o.erase("a"));
  EXPECT_FALSE(o.erase("a"));
  EXPECT_EQ(serialize(o), R"({"b":1,"c":3})");
  value v = o;
  ASSERT_NE(v.find("b"), nullptr);
  EXPECT_EQ(value(1).find("b"), nullptr);  // not an object
}

TEST(JsonValue, EqualityIsDeepAndObjectOrderInsensitive) {
  EXPECT_EQ(parsed(R"({"a":1,"b":[1,{"c":null}]})"), parsed(R"({"b":[1,{"c":null}],"a":1})"));
  EXPECT_NE(parsed(R"({"a":1})"), parsed(R"({"a":2})"));
  EXPECT_NE(parsed(R"({"a":1})"), parsed(R"({"a":1,"b":1})"));
  EXPECT_NE(parsed(R"({"a":1})"), parsed(R"({"b":1})"));
  EXPECT_NE(parsed("[1,2]"), parsed("[2,1]"));  // arrays are ordered
  EXPECT_NE(value(1), value(1.0));              // kinds differ
  EXPECT_NE(value("1"), value(1));
  // Large reordered objects take the hashed path.
  object a, b;
  for (int i = 0; i < 100; ++i) a.set("k" + std::to_string(i), i);
  for (int i = 99; i >= 0; --i) b.set("k" + std::to_string(i), i);
  EXPECT_EQ(value(a), value(b));
  b.set("k50", -1);
  EXPECT_NE(value(a), value(b));
}

TEST(JsonParse, ScalarsAndStructures) {
  EXPECT_TRUE(parsed("null").is_null());
  EXPECT_EQ(parsed("true"), value(true));
  EXPECT_EQ(parsed("false"), value(false));
  EXPECT_EQ(parsed("0"), value(0));
  EXPECT_EQ(parsed("-12"), value(-12));
  EXPECT_EQ(parsed("1.5"), value(1.5));
  EXPECT_EQ(parsed("1e3"), value(1000.0));
  EXPECT_EQ(parsed(R"("hi")"), value("hi"));
  EXPECT_EQ(parsed("  [ 1 , [ ] , { } ]  "), value(array{1, array{}, object{}}));
  value o = parsed(R"({"z":1,"a":{"b":[true,null]}})");
  ASSERT_TRUE(o.is_object());
  EXPECT_EQ(o.as_object()[0].first, "z");  // document order kept
  EXPECT_EQ(o.as_object()[1].first, "a");
}

TEST(JsonParse, BigIntegersAndDoubles) {
  EXPECT_EQ(parsed("9223372036854775807"), value(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(parsed("-9223372036854775808"), value(std::numeric_limits<std::int64_t>::min()));
  value big = parsed("9223372036854775808");  // uint64 beyond int64 -> number
  EXPECT_EQ(big.type(), kind::number);
  EXPECT_EQ(big.as_double(), 9223372036854775808.0);
  value umax = parsed("18446744073709551615");
  EXPECT_EQ(umax.type(), kind::number);
  EXPECT_EQ(parsed("4503599627370495").as_int(), 4503599627370495);
  EXPECT_EQ(parsed("0.1").as_double(), 0.1);
  EXPECT_EQ(parsed("-2.5e-3").as_double(), -2.5e-3);
  EXPECT_EQ(parsed("1.7976931348623157e308").as_double(), std::numeric_limits<double>::max());
  EXPECT_EQ(parsed("1E2"), value(100.0));
  EXPECT_EQ(parsed("-0"), value(0));
  // simdjson 3.0 refuses numbers that fit neither 64-bit integers nor doubles: a clean error, not a crash.
  expect_invalid("123456789012345678901234567890");
  expect_invalid("-9223372036854775809");
  expect_invalid("1e400");
}

TEST(JsonParse, Unicode) {
  EXPECT_EQ(parsed(R"("\u00e9")").as_string(), "\xC3\xA9");
  EXPECT_EQ(parsed(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");  // surrogate pair -> U+1F600
  EXPECT_EQ(parsed("\"caf\xC3\xA9 \xE2\x82\xAC\"").as_string(), "caf\xC3\xA9 \xE2\x82\xAC");  // raw UTF-8
  EXPECT_EQ(parsed(R"("\u0000x")").as_string(), std::string("\0x", 2));
  EXPECT_EQ(parsed(R"({"\u00e9":1})").as_object()[0].first, "\xC3\xA9");
  EXPECT_EQ(parsed(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
}

TEST(JsonParse, DuplicateKeysLastWins) {
  value v = parsed(R"({"a":1,"b":2,"a":3})");
  ASSERT_EQ(v.as_object().size(), 2u);
  EXPECT_EQ(v.find("a")->as_int(), 3);
  EXPECT_EQ(v.as_object()[0].first, "a");  // at the first one's position
  // Big objects take the hashed path; same rule.
  std::string text = "{";
  for (int i = 0; i < 100; ++i) text += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  text += "\"k7\":\"last\"}";
  value big = parsed(text);
  EXPECT_EQ(big.as_object().size(), 100u);
  EXPECT_EQ(big.find("k7")->as_string(), "last");
  EXPECT_EQ(big.as_object()[7].first, "k7");
}

TEST(JsonParse, DepthLimit) {
  auto nested = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_TRUE(parse(nested(64)).ok());
  auto r = parse(nested(65));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_NE(r.err().message.find("deeper than 64"), std::string::npos) << r.err().message;
  EXPECT_TRUE(parse(R"({"a":{"b":1}})", {.max_depth = 2}).ok());
  EXPECT_FALSE(parse(R"({"a":{"b":{}}})", {.max_depth = 2}).ok());
  EXPECT_TRUE(parse("1", {.max_depth = 0}).ok());  // scalars have depth 0
  EXPECT_FALSE(parse("[]", {.max_depth = 0}).ok());
  EXPECT_FALSE(parse(nested(5000)).ok());           // beyond simdjson's own limit: still a clean error
}

TEST(JsonParse, SizeLimit) {
  EXPECT_TRUE(parse("[1,2]", {.max_bytes = 5}).ok());
  auto r = parse("[1,2] ", {.max_bytes = 5});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::too_large);
}

TEST(JsonParse, InvalidInputs) {
  expect_invalid("");
  expect_invalid("   \n\t ");
  expect_invalid(R"({"a":1)");          // truncated
  expect_invalid(R"({"a":)");
  expect_invalid(R"(["abc)");
  expect_invalid(R"({"a":1} x)");       // trailing garbage
  expect_invalid("[1] [2]");
  expect_invalid("\"\xC3\x28\"");       // invalid UTF-8
  expect_invalid("\"\xFF\"");
  expect_invalid("{\"\xED\xA0\x80\":1}");  // encoded surrogate
  expect_invalid("{a:1}");
  expect_invalid("[1,]");
  expect_invalid("01");
  expect_invalid("nul");
  expect_invalid("NaN");
  expect_invalid("\"a\x01b\"");         // raw control character in a string
  expect_invalid(R"("\ud83d")");        // lone surrogate escape
  auto r = parse("{");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("not valid JSON"), std::string::npos) << r.err().message;
}

TEST(JsonSerialize, CompactAndOrdered) {
  EXPECT_EQ(round_trip(R"( { "b" : 1 , "a" : [ true , false , null , "x" ] , "c" : { } } )"),
            R"({"b":1,"a":[true,false,null,"x"],"c":{}})");
  EXPECT_EQ(serialize(value()), "null");
  EXPECT_EQ(serialize(array{}), "[]");
  EXPECT_EQ(serialize(object{}), "{}");
  EXPECT_EQ(serialize(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  std::string out = "x";
  serialize_to(out, value(array{1, 2}));
  EXPECT_EQ(out, "x[1,2]");
}

TEST(JsonSerialize, Escaping) {
  EXPECT_EQ(serialize(value("a\"b\\c")), R"("a\"b\\c")");
  EXPECT_EQ(serialize(value("\b\f\n\r\t")), R"("\b\f\n\r\t")");
  EXPECT_EQ(serialize(value(std::string("\0\x01\x1f", 3))), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(serialize(value("/\x7f")), "\"/\x7f\"");  // DEL and '/' need no escape
  EXPECT_EQ(serialize(value("\xC3\xA9\xF0\x9F\x98\x80")), "\"\xC3\xA9\xF0\x9F\x98\x80\"");  // UTF-8 raw
  EXPECT_EQ(serialize(object{{"k\"\n", 1}}), R"({"k\"\n":1})");
  std::string all;
  for (int c = 0; c < 128; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(parsed(serialize(value(all))).as_string(), all);
}

TEST(JsonSerialize, Doubles) {
  EXPECT_EQ(serialize(0.1), "0.1");
  EXPECT_EQ(serialize(1.0), "1.0");  // stays a double on the way back
  EXPECT_EQ(serialize(-0.0), "-0.0");
  EXPECT_EQ(serialize(1e300), "1e+300");
  EXPECT_EQ(serialize(2.5e-8), "2.5e-08");
  EXPECT_EQ(serialize(std::nan("")), "null");
  EXPECT_EQ(serialize(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(serialize(-std::numeric_limits<double>::infinity()), "null");
  for (double d : {0.1, 1.0 / 3, 1e-320, 123456789.123456789, 9007199254740993.0, -1e22,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min()}) {
    value back = parsed(serialize(d));
    EXPECT_EQ(back.type(), kind::number) << serialize(d);
    EXPECT_EQ(back.as_double(), d) << serialize(d);
  }
}

TEST(JsonRoundTrip, ParseSerializeParse) {
  const char* docs[] = {
      R"({"a":{"b":{"c":[1,2.5,"x",null,true,{"d":[]}]}},"e":-9007199254740993,"f":"\u00e9\ud83d\ude00"})",
      R"([[[[[]]]],{},"",0,-0.0,1e-7])",
      R"("just a string")",
      R"({"$metadata":{"$lastUpdated":"2024-01-01T00:00:00.000Z"},"$version":3})",
  };
  for (const char* d : docs) {
    value v = parsed(d);
    std::string s = serialize(v);
    EXPECT_EQ(parsed(s), v) << d;
    EXPECT_EQ(serialize(parsed(s)), s) << d;  // serialization is a fixed point
  }
}

TEST(JsonParse, ThreadLocalParserIsReusable) {
  // The parser keeps buffers between calls: a big document followed by a small one must not leak state.
  std::string big = "[";
  for (int i = 0; i < 10000; ++i) big += std::to_string(i) + ",";
  big += "0]";
  EXPECT_EQ(parsed(big).as_array().size(), 10001u);
  EXPECT_EQ(parsed("[1]"), value(array{1}));
  EXPECT_FALSE(parse("[1").ok());
  EXPECT_EQ(parsed("2"), value(2));
}

}  // namespace
}  // namespace fleethub::json
