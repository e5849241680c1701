#include "fleethub/core/message_codec.hpp"

#include <gtest/gtest.h>

namespace fleethub {
namespace {

message sample() {
  message m;
  m.device_id = "dev1";
  m.module_id = "mod1";
  m.body = to_bytes(std::string("{\"temp\":21.5}\0tail", 18));
  m.system_properties = {{std::string(sysprop::message_id), "m-1"},
                         {std::string(sysprop::content_type), "application/json"},
                         {std::string(sysprop::connection_device_id), "dev1"}};
  m.app_properties = {{"alert", "true"}, {"empty", ""}, {"utf8", "caf\xC3\xA9"}};
  m.enqueued_time_ms = 1700000000123;
  return m;
}

TEST(MessageProperties, FindAndSet) {
  property_list props;
  EXPECT_EQ(find_property(props, "a"), nullptr);
  set_property(props, "a", "1");
  set_property(props, "b", "2");
  set_property(props, "a", "3");  // replaces in place
  ASSERT_EQ(props.size(), 2u);
  EXPECT_EQ(props[0], (property{"a", "3"}));
  ASSERT_NE(find_property(props, "b"), nullptr);
  EXPECT_EQ(*find_property(props, "b"), "2");
  EXPECT_EQ(find_property(props, "A"), nullptr);  // exact match
}

TEST(MessageCodec, RoundTrip) {
  message m = sample();
  bytes rec = encode_message(m);
  EXPECT_EQ(rec[0], message_record_version);
  auto back = decode_message(rec);
  ASSERT_TRUE(back) << back.err().message;
  EXPECT_EQ(*back, m);
}

TEST(MessageCodec, RoundTripEmptyAndNegative) {
  message m;
  m.enqueued_time_ms = -5;
  auto back = decode_message(encode_message(m));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, m);
}

TEST(MessageCodec, RoundTripLargeBody) {
  message m = sample();
  m.body.assign(200000, 0xAB);
  auto back = decode_message(encode_message(m));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, m);
}

TEST(MessageCodec, EncodeIntoAppends) {
  bytes out{0xFF};
  encode_message_into(sample(), out);
  EXPECT_EQ(out[0], 0xFF);
  auto back = decode_message(bytes_view(out).subspan(1));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sample());
}

TEST(MessageCodec, TruncationAtEveryOffsetIsAnError) {
  bytes rec = encode_message(sample());
  for (std::size_t n = 0; n < rec.size(); ++n) {
    auto r = decode_message(bytes_view(rec.data(), n));
    ASSERT_FALSE(r) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(r.err().code, errc::invalid_argument) << n;
  }
}

TEST(MessageCodec, TrailingBytesRejected) {
  bytes rec = encode_message(sample());
  rec.push_back(0);
  auto r = decode_message(rec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
}

TEST(MessageCodec, UnknownVersion) {
  bytes rec = encode_message(sample());
  rec[0] = message_record_version + 1;
  auto r = decode_message(rec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::schema_mismatch);
}

TEST(MessageCodec, ConnectionFactsRoundTripAndDeriveSystemProperties) {
  message m = sample();
  m.auth = connection_auth::sas_token;
  m.auth_generation_id = "637556611958535962";
  m.module_id = "mod";
  auto r = decode_message(encode_message(m));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, m);
  auto full = full_system_properties(*r);
  EXPECT_EQ(*find_property(full, sysprop::connection_device_id), m.device_id);
  EXPECT_EQ(*find_property(full, sysprop::connection_module_id), "mod");
  EXPECT_EQ(*find_property(full, sysprop::connection_auth_generation_id), "637556611958535962");
  EXPECT_EQ(*find_property(full, sysprop::connection_auth_method),
            "{\"scope\":\"module\",\"type\":\"sasToken\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}");
  auto light = decode_message_without_properties(encode_message(m));
  ASSERT_TRUE(light);
  EXPECT_TRUE(light->system_properties.empty());
  EXPECT_TRUE(light->app_properties.empty());
  EXPECT_EQ(light->body, m.body);
}

TEST(MessageCodec, Version1RecordsStillDecode) {
  // A version-1 record: no connection fields between the enqueued time and the properties.
  message m;
  m.device_id = "d";
  m.enqueued_time_ms = 5;
  m.body = to_bytes("hi");
  bytes v1{1, 1, 'd', 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'};
  auto r = decode_message(v1);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(*r, m);
  EXPECT_EQ(r->auth, connection_auth::none);
}

TEST(MessageCodec, GarbageNeverCrashes) {
  // Huge varint lengths and counts must be caught before any allocation or read.
  bytes huge_len{1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
  EXPECT_FALSE(decode_message(huge_len));
  bytes overlong_varint{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  EXPECT_FALSE(decode_message(overlong_varint));
  bytes noncanonical{1, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // device id length 0 in two bytes
  EXPECT_FALSE(decode_message(noncanonical));
  bytes canonical{1, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_TRUE(decode_message(canonical));
  bytes rec = encode_message(sample());
  std::uint32_t x = 12345;
  for (int round = 0; round < 2000; ++round) {
    bytes mutated = rec;
    for (int k = 0; k < 3; ++k) {
      x = x * 1103515245 + 12345;
      mutated[1 + (x >> 8) % (mutated.size() - 1)] = static_cast<std::uint8_t>(x >> 24);
    }
    auto r = decode_message(mutated);
    if (!r) {
      EXPECT_EQ(r.err().code, errc::invalid_argument);
    }
  }
}

}  // namespace
}  // namespace fleethub
