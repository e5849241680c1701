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

// --- record version 3: the message source ---------------------------------------------------------------------

constexpr message_source all_sources[] = {message_source::telemetry, message_source::twin_change_events,
                                          message_source::device_lifecycle_events,
                                          message_source::device_connection_state_events};

// The same message as a version-2 record (no source byte), as a store written before version 3 holds it.
bytes as_version2(const message& m) {
  bytes rec = encode_message(m);
  rec.erase(rec.begin() + 1);
  rec[0] = 2;
  return rec;
}

TEST(MessageCodec, Version3RoundTripForEachSource) {
  for (auto src : all_sources) {
    message m = sample();
    m.source = src;
    m.auth = connection_auth::sas;
    m.auth_generation_id = "g";
    bytes rec = encode_message(m);
    ASSERT_GE(rec.size(), 2u);
    EXPECT_EQ(rec[0], 3);
    EXPECT_EQ(rec[1], static_cast<std::uint8_t>(src));
    auto back = decode_message(rec);
    ASSERT_TRUE(back) << back.err().message;
    EXPECT_EQ(back->source, src);
    EXPECT_EQ(*back, m);
    auto light = decode_message_without_properties(rec);
    ASSERT_TRUE(light) << light.err().message;
    EXPECT_EQ(light->source, src);
    EXPECT_EQ(light->body, m.body);
    auto peeked = peek_message_source(rec);
    ASSERT_TRUE(peeked.has_value());
    EXPECT_EQ(*peeked, src);
  }
  EXPECT_EQ(message_record_version, 3);
  EXPECT_EQ(message_source_count, 4);
}

TEST(MessageCodec, SourceNames) {
  EXPECT_EQ(message_source_name(message_source::telemetry), "Telemetry");
  EXPECT_EQ(message_source_name(message_source::twin_change_events), "twinChangeEvents");
  EXPECT_EQ(message_source_name(message_source::device_lifecycle_events), "deviceLifecycleEvents");
  EXPECT_EQ(message_source_name(message_source::device_connection_state_events), "deviceConnectionStateEvents");
  for (auto src : all_sources) EXPECT_EQ(message_source_from_string(message_source_name(src)), src);
  EXPECT_EQ(message_source_from_string("DeviceMessages"), message_source::telemetry);
  EXPECT_EQ(message_source_from_string("TWINCHANGEEVENTS"), message_source::twin_change_events);
  EXPECT_EQ(message_source_from_string("DeviceConnectionStateEvents"), message_source::device_connection_state_events);
  EXPECT_FALSE(message_source_from_string("telemetryx").has_value());
  EXPECT_FALSE(message_source_from_string("").has_value());
}

TEST(MessageCodec, Version2RecordsDecodeAsTelemetry) {
  message m = sample();
  m.auth = connection_auth::x509;
  m.auth_generation_id = "gen";
  for (auto src : all_sources) {
    m.source = src;
    bytes v2 = as_version2(m);
    ASSERT_EQ(v2[0], 2);
    auto r = decode_message(v2);
    ASSERT_TRUE(r) << r.err().message;
    EXPECT_EQ(r->source, message_source::telemetry) << "version 2 had no source: all of it was telemetry";
    message expect = m;
    expect.source = message_source::telemetry;
    EXPECT_EQ(*r, expect);
    EXPECT_EQ(r->auth, connection_auth::x509);
    EXPECT_EQ(r->auth_generation_id, "gen");
    auto peeked = peek_message_source(v2);
    ASSERT_TRUE(peeked.has_value());
    EXPECT_EQ(*peeked, message_source::telemetry);
  }
}

TEST(MessageCodec, PeekSourceOfVersion1AndBadRecords) {
  bytes v1{1, 1, 'd', 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'};
  ASSERT_TRUE(decode_message(v1));
  EXPECT_EQ(decode_message(v1)->source, message_source::telemetry);
  EXPECT_EQ(peek_message_source(v1), message_source::telemetry);
  EXPECT_EQ(peek_message_source(bytes{}), std::nullopt) << "empty";
  EXPECT_EQ(peek_message_source(bytes{0, 0}), std::nullopt) << "version 0";
  EXPECT_EQ(peek_message_source(bytes{4, 0}), std::nullopt) << "a future version";
  EXPECT_EQ(peek_message_source(bytes{3}), std::nullopt) << "version 3 without its source byte";
  EXPECT_EQ(peek_message_source(bytes{3, message_source_count}), std::nullopt) << "unknown source";
  EXPECT_EQ(peek_message_source(bytes{3, 0xFF}), std::nullopt);
  EXPECT_EQ(peek_message_source(bytes{3, 2}), message_source::device_lifecycle_events)
      << "peek reads only the first two bytes";
}

TEST(MessageCodec, InvalidSourceByteIsADecodeError) {
  for (std::uint8_t bad : {message_source_count, std::uint8_t{5}, std::uint8_t{0x7F}, std::uint8_t{0xFF}}) {
    bytes rec = encode_message(sample());
    rec[1] = bad;
    auto r = decode_message(rec);
    ASSERT_FALSE(r) << int(bad);
    EXPECT_EQ(r.err().code, errc::invalid_argument);
    auto light = decode_message_without_properties(rec);
    ASSERT_FALSE(light) << int(bad);
    EXPECT_EQ(light.err().code, errc::invalid_argument);
  }
}

TEST(MessageCodec, FullSystemPropertiesNameTheSource) {
  message m = sample();
  auto full = full_system_properties(m);
  ASSERT_NE(find_property(full, sysprop::message_source), nullptr);
  EXPECT_EQ(*find_property(full, sysprop::message_source), "Telemetry");
  EXPECT_EQ(std::count_if(full.begin(), full.end(), [](const property& p) { return p.key == sysprop::message_source; }),
            1);
  EXPECT_EQ(find_property(m.system_properties, sysprop::message_source), nullptr) << "derived, not stored";
  for (auto src : all_sources) {
    m.source = src;
    EXPECT_EQ(*find_property(full_system_properties(m), sysprop::message_source), message_source_name(src));
  }
  // The rest of the derived properties are still there.
  m.source = message_source::telemetry;
  EXPECT_NE(find_property(full_system_properties(m), sysprop::enqueued_time), nullptr);
  EXPECT_EQ(*find_property(full_system_properties(decode_message(as_version2(m)).value()), sysprop::message_source),
            "Telemetry");
}

}  // namespace
}  // namespace fleethub
