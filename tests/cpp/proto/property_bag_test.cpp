#include "fleethub/proto/mqtt/property_bag.hpp"

#include <gtest/gtest.h>

namespace fleethub::proto::mqtt {
namespace {

std::string sys(const parsed_bag& b, std::string_view name) {
  auto* v = find_property(b.system_properties, name);
  return v ? *v : "<absent>";
}

TEST(PropertyBag, Empty) {
  auto r = parse_property_bag("");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->system_properties.empty());
  EXPECT_TRUE(r->app_properties.empty());
}

TEST(PropertyBag, PydevStyle) {
  auto r = parse_property_bag(
      "%24.mid=6b82e0a1&%24.cid=corr%201&%24.uid=user&%24.ct=application%2Fjson&%24.ce=utf-8"
      "&%24.exp=2030-01-01T00%3A00%3A00.000Z&alpha=1&beta=two%20words");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(sys(*r, sysprop::message_id), "6b82e0a1");
  EXPECT_EQ(sys(*r, sysprop::correlation_id), "corr 1");
  EXPECT_EQ(sys(*r, sysprop::user_id), "user");
  EXPECT_EQ(sys(*r, sysprop::content_type), "application/json");
  EXPECT_EQ(sys(*r, sysprop::content_encoding), "utf-8");
  EXPECT_EQ(sys(*r, sysprop::absolute_expiry_time), "2030-01-01T00:00:00.000Z");
  EXPECT_EQ(r->app_properties, (property_list{{"alpha", "1"}, {"beta", "two words"}}));
}

TEST(PropertyBag, CsdkRawValues) {
  // csdk sends values raw: '/', ' ', and a stray '%' must survive.
  auto r = parse_property_bag("%24.ct=application/json&%24.ce=utf-8&%24.ctime=2024-01-02T03:04:05.678Z"
                              "&%24.diagid=abc&%24.diagctx=creationtimeutc=1&pct=50%&+plus=a+b");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(sys(*r, sysprop::content_type), "application/json");
  EXPECT_EQ(sys(*r, sysprop::creation_time_utc), "2024-01-02T03:04:05.678Z");
  EXPECT_EQ(sys(*r, sysprop::diag_id), "abc");
  EXPECT_EQ(sys(*r, sysprop::diag_context), "creationtimeutc=1");  // split on the first '=' only
  EXPECT_EQ(r->app_properties, (property_list{{"pct", "50%"}, {"+plus", "a+b"}}));
}

TEST(PropertyBag, LiteralDollarAndModuleKeys) {
  auto r = parse_property_bag("$.ct=text%2Fplain&$.on=output1&$.ifid=urn%3Aazureiot%3ASecurity%3A1&$.sub=therm1&$.to=x");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(sys(*r, sysprop::content_type), "text/plain");
  EXPECT_EQ(sys(*r, sysprop::output_name), "output1");
  EXPECT_EQ(sys(*r, sysprop::interface_id), "urn:azureiot:Security:1");
  EXPECT_EQ(sys(*r, sysprop::component_name), "therm1");
  EXPECT_EQ(sys(*r, sysprop::to), "x");
  EXPECT_TRUE(r->app_properties.empty());
}

TEST(PropertyBag, CreationTimeAsPlainKeyStaysAppProperty) {
  auto r = parse_property_bag("iothub-creation-time-utc=2024-01-02T03%3A04%3A05Z");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->system_properties.empty());
  EXPECT_EQ(r->app_properties, (property_list{{"iothub-creation-time-utc", "2024-01-02T03:04:05Z"}}));
}

TEST(PropertyBag, BareKeysEmptySegmentsAndOrder) {
  auto r = parse_property_bag("&a&b=&c=3&&z=last&");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->app_properties, (property_list{{"a", ""}, {"b", ""}, {"c", "3"}, {"z", "last"}}));
}

TEST(PropertyBag, UnknownSystemKeyKeptAsAppProperty) {
  auto r = parse_property_bag("%24.newthing=1&%24.mid=m&$.other=2&%24.=3");
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(sys(*r, sysprop::message_id), "m");
  EXPECT_EQ(r->app_properties, (property_list{{"$.newthing", "1"}, {"$.other", "2"}, {"$.", "3"}}));
}

TEST(PropertyBag, SystemKeysAreCaseSensitive) {
  auto r = parse_property_bag("%24.MID=1");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->system_properties.empty());
  EXPECT_EQ(r->app_properties, (property_list{{"$.MID", "1"}}));
}

TEST(PropertyBag, ConnectionPropertiesCannotBeSpoofed) {
  auto r = parse_property_bag("%24.cdid=other&%24.cmid=m");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->system_properties.empty());
  EXPECT_EQ(r->app_properties.size(), 2u);
}

TEST(PropertyBag, DuplicateAppKeysKeptInOrder) {
  auto r = parse_property_bag("k=1&k=2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->app_properties, (property_list{{"k", "1"}, {"k", "2"}}));
}

TEST(PropertyBag, Errors) {
  auto dup = parse_property_bag("%24.mid=1&$.mid=2");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.err().code, errc::invalid_argument);
  auto empty_key = parse_property_bag("a=1&=2");
  ASSERT_FALSE(empty_key);
  EXPECT_EQ(empty_key.err().code, errc::invalid_argument);
}

TEST(PropertyBag, Limits) {
  bag_limits lim;
  lim.max_properties = 2;
  lim.max_key_length = 4;
  lim.max_value_length = 5;
  EXPECT_TRUE(parse_property_bag("a=1&b=2", lim));
  auto many = parse_property_bag("a=1&b=2&c=3", lim);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.err().code, errc::too_large);
  auto key = parse_property_bag("abcde=1", lim);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.err().code, errc::too_large);
  EXPECT_TRUE(parse_property_bag("k=%41%41%41%41%41", lim));  // limits apply to decoded lengths
  auto value = parse_property_bag("k=abcdef", lim);
  ASSERT_FALSE(value);
  EXPECT_EQ(value.err().code, errc::too_large);
}

TEST(PropertyBag, ShortKeyTable) {
  EXPECT_EQ(system_property_from_short_key("mid"), sysprop::message_id);
  EXPECT_EQ(system_property_from_short_key("ctime"), sysprop::creation_time_utc);
  EXPECT_EQ(system_property_from_short_key("diagctx"), sysprop::diag_context);
  EXPECT_FALSE(system_property_from_short_key("nope"));
  EXPECT_FALSE(system_property_from_short_key("$.mid"));
}

TEST(PropertyBag, EncodeC2dLikeCsdkFixture) {
  property_list sys{{std::string(sysprop::message_id), "6b82"},
                    {std::string(sysprop::to), "/devices/dev1/messages/deviceBound"},
                    {std::string(sysprop::content_type), "application/json"}};
  property_list app{{"iothub-ack", "full"}, {"prop1", "val1"}, {"sp ace", "a&b=c"}, {"empty", ""}};
  EXPECT_EQ(encode_property_bag(sys, app),
            "%24.mid=6b82&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson"
            "&iothub-ack=full&prop1=val1&sp%20ace=a%26b%3Dc&empty=");
}

TEST(PropertyBag, EncodeShortNamesAndUnknownSystemProperties) {
  property_list sys{{std::string(sysprop::correlation_id), "c"}, {std::string(sysprop::user_id), "u"},
                    {std::string(sysprop::content_encoding), "utf-8"},
                    {std::string(sysprop::absolute_expiry_time), "2030-01-01T00:00:00Z"},
                    {std::string(sysprop::connection_device_id), "d"},
                    {std::string(sysprop::connection_module_id), "m"},
                    {std::string(sysprop::enqueued_time), "x"}};
  EXPECT_EQ(encode_property_bag(sys, {}),
            "%24.cid=c&%24.uid=u&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00Z&%24.cdid=d&%24.cmid=m"
            "&iothub-enqueuedtime=x");
  EXPECT_EQ(encode_property_bag({}, {}), "");
}

TEST(PropertyBag, EncodeThenParseRoundTrip) {
  property_list sys{{std::string(sysprop::message_id), "id with spaces & stuff"},
                    {std::string(sysprop::content_type), "application/json; charset=utf-8"}};
  property_list app{{"k%1", "100%"}, {"$.custom", "x"}, {"caf\xC3\xA9", "\xE2\x82\xAC"}, {"e", ""}};
  auto r = parse_property_bag(encode_property_bag(sys, app));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->system_properties, sys);
  EXPECT_EQ(r->app_properties, app);
}

}  // namespace
}  // namespace fleethub::proto::mqtt
