#include "fleethub/hub/twin.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {
namespace {

using json::array;
using json::object;
using json::value;

constexpr std::int64_t t0 = 1700000000000;  // 2023-11-14T22:13:20.000Z
constexpr std::int64_t t1 = t0 + 1000;
constexpr std::int64_t t2 = t0 + 2000;
const std::string ts0 = "2023-11-14T22:13:20.000Z";
const std::string ts1 = "2023-11-14T22:13:21.000Z";
const std::string ts2 = "2023-11-14T22:13:22.000Z";

value J(std::string_view text) {
  auto r = json::parse(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : value();
}
std::string S(const value& v) { return json::serialize(v); }

// Applies and expects success.
value patch_ok(twin_document& t, twin_section s, std::string_view patch, std::int64_t now = t1,
               const twin_limits& lim = {}) {
  auto r = apply_patch(t, s, J(patch), now, lim);
  EXPECT_TRUE(r.ok()) << patch << ": " << (r.ok() ? "" : r.err().message);
  return r.ok() ? *r : value();
}

// Applies, expects invalid_argument with `fragment` in the message, and checks the document is untouched.
void patch_refused_v(twin_document& t, twin_section s, const value& patch, std::string_view fragment,
                     const twin_limits& lim = {}) {
  twin_document before = t;
  auto r = apply_patch(t, s, patch, t2, lim);
  ASSERT_FALSE(r.ok()) << S(patch);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_NE(r.err().message.find(fragment), std::string::npos) << r.err().message;
  EXPECT_EQ(t, before) << "document changed by a refused patch: " << S(patch);
}
void patch_refused(twin_document& t, twin_section s, std::string_view patch, std::string_view fragment,
                   const twin_limits& lim = {}) {
  patch_refused_v(t, s, J(patch), fragment, lim);
}

// A patch with `levels` object levels under the section root: {"l0":{"l1":...{"property":1}}}.
std::string nested(int levels) {
  std::string s;
  for (int i = 0; i < levels; ++i) s += "{\"l" + std::to_string(i) + "\":";
  s += "{\"property\":1}";
  for (int i = 0; i < levels; ++i) s += "}";
  return s;
}

// ---- document basics ------------------------------------------------------------------------------------

TEST(Twin, NewTwin) {
  twin_document t = new_twin("dev1", "", t0);
  EXPECT_EQ(t.device_id, "dev1");
  EXPECT_EQ(t.module_id, "");
  EXPECT_EQ(t.version, 1);
  EXPECT_EQ(t.desired_version, 1);
  EXPECT_EQ(t.reported_version, 1);
  EXPECT_EQ(S(t.tags), "{}");
  EXPECT_EQ(S(t.desired), "{}");
  EXPECT_EQ(S(t.reported), "{}");
  EXPECT_EQ(S(t.desired_meta), R"({"$lastUpdated":")" + ts0 + R"(","$lastUpdatedVersion":1})");
  EXPECT_EQ(S(t.reported_meta), R"({"$lastUpdated":")" + ts0 + R"("})");
}

TEST(Twin, EtagIsBase64OfBigEndianVersion) {
  twin_document t = new_twin("d", "", t0);
  EXPECT_EQ(twin_etag(t), "AAAAAAAAAAE=");
  t.version = 7;
  EXPECT_EQ(twin_etag(t), "AAAAAAAAAAc=");
  t.version = 256;
  EXPECT_EQ(twin_etag(t), "AAAAAAAAAQA=");
  t.version = 0x0102030405060708;
  EXPECT_EQ(twin_etag(t), base64_encode(as_bytes("\x01\x02\x03\x04\x05\x06\x07\x08")));
}

// ---- merge semantics (§1.4) -----------------------------------------------------------------------------

TEST(TwinMerge, DeepMergeKeepsOrderAndSiblings) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"a":{"b":1,"c":2},"z":true})");
  patch_ok(t, twin_section::desired, R"({"a":{"b":10,"d":{"e":"x"}},"n":null})");
  EXPECT_EQ(S(t.desired), R"({"a":{"b":10,"c":2,"d":{"e":"x"}},"z":true})");
}

TEST(TwinMerge, NullDeletesAndMissingNullIsNoOp) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::reported, R"({"a":1,"b":{"c":1,"d":2},"e":3})");
  patch_ok(t, twin_section::reported, R"({"a":null,"b":{"c":null},"missing":null})");
  EXPECT_EQ(S(t.reported), R"({"b":{"d":2},"e":3})");
}

TEST(TwinMerge, NestedNullOnMissingTargetIsDropped) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"x":{"y":null,"z":1},"w":{"v":null},"p":{"q":{"r":null}}})");
  EXPECT_EQ(S(t.desired), R"({"x":{"z":1},"w":{},"p":{"q":{}}})");
  // Same when the target is a primitive that the patch object replaces.
  patch_ok(t, twin_section::desired, R"({"prim":5})");
  patch_ok(t, twin_section::desired, R"({"prim":{"gone":null,"kept":2}})");
  EXPECT_EQ(S(*t.desired.find("prim")), R"({"kept":2})");
}

TEST(TwinMerge, ArraysReplaceWholeAndKeepTheirNulls) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"a":[1,2,3],"o":{"arr":[{"k":1}]}})");
  patch_ok(t, twin_section::desired, R"({"a":[4],"o":{"arr":[null,{"k":null}]}})");
  EXPECT_EQ(S(t.desired), R"({"a":[4],"o":{"arr":[null,{"k":null}]}})");
  patch_ok(t, twin_section::desired, R"({"a":{"now":"object"}})");  // array -> object
  EXPECT_EQ(S(*t.desired.find("a")), R"({"now":"object"})");
  patch_ok(t, twin_section::desired, R"({"a":[]})");                 // object -> array
  EXPECT_EQ(S(*t.desired.find("a")), "[]");
}

TEST(TwinMerge, ObjectAndPrimitiveReplaceEachOther) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::reported, R"({"a":{"b":{"c":1}}})");
  patch_ok(t, twin_section::reported, R"({"a":"flat"})");
  EXPECT_EQ(S(t.reported), R"({"a":"flat"})");
  EXPECT_EQ(S(*t.reported_meta.find("a")), R"({"$lastUpdated":")" + ts1 + R"("})");  // child metadata gone
  patch_ok(t, twin_section::reported, R"({"a":{"x":{"y":2}}})", t2);
  EXPECT_EQ(S(t.reported), R"({"a":{"x":{"y":2}}})");
  EXPECT_EQ(S(*t.reported_meta.find("a")), R"({"$lastUpdated":")" + ts2 + R"(","x":{"$lastUpdated":")" + ts2 +
                                                R"(","y":{"$lastUpdated":")" + ts2 + R"("}}})");
}

TEST(TwinMerge, ReturnsThePatchWithNullsKept) {
  twin_document t = new_twin("d", "", t0);
  value applied = patch_ok(t, twin_section::desired, R"({"a":{"b":null,"c":1},"d":null})");
  EXPECT_EQ(S(applied), R"({"a":{"b":null,"c":1},"d":null})");
}

TEST(TwinMerge, TagsMergeTheSameWayWithoutMetadata) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::tags, R"({"loc":{"city":"Oslo","floor":3},"x":1})");
  patch_ok(t, twin_section::tags, R"({"loc":{"floor":null},"x":[1]})");
  EXPECT_EQ(S(t.tags), R"({"loc":{"city":"Oslo"},"x":[1]})");
  EXPECT_EQ(S(t.desired_meta), R"({"$lastUpdated":")" + ts0 + R"(","$lastUpdatedVersion":1})");
  EXPECT_EQ(S(t.reported_meta), R"({"$lastUpdated":")" + ts0 + R"("})");
}

TEST(TwinMerge, LargePatchesStayLinear) {
  // 20k keys against a 20k-key section: quadratic lookups would take seconds here.
  twin_limits lim;
  lim.max_section_bytes = 1 << 30;
  twin_document t = new_twin("d", "", t0);
  object p1, p2;
  for (int i = 0; i < 20000; ++i) p1.emplace_back("k" + std::to_string(i), i);
  for (int i = 0; i < 20000; i += 2) p2.emplace_back("k" + std::to_string(i), nullptr);
  for (int i = 20000; i < 30000; ++i) p2.emplace_back("k" + std::to_string(i), i);
  ASSERT_TRUE(apply_patch(t, twin_section::desired, p1, t1, lim).ok());
  ASSERT_TRUE(apply_patch(t, twin_section::desired, p2, t2, lim).ok());
  EXPECT_EQ(t.desired.as_object().size(), 20000u);
  EXPECT_EQ(t.desired.as_object()[0].first, "k1");
  EXPECT_EQ(t.desired_meta.as_object().size(), 20002u);  // + $lastUpdated, $lastUpdatedVersion
}

TEST(TwinMerge, HandBuiltDuplicateKeysLastWins) {
  twin_document t = new_twin("d", "", t0);
  object p;
  p.emplace_back("a", 1);
  p.emplace_back("a", 2);
  ASSERT_TRUE(apply_patch(t, twin_section::reported, p, t1).ok());
  EXPECT_EQ(S(t.reported), R"({"a":2})");
}

// ---- versions (§1.6) ------------------------------------------------------------------------------------

TEST(TwinVersions, EachSectionBumpsItsOwnAndTheTwinVersion) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"a":1})");
  EXPECT_EQ(t.desired_version, 2);
  EXPECT_EQ(t.reported_version, 1);
  EXPECT_EQ(t.version, 2);
  patch_ok(t, twin_section::reported, R"({"a":1})");
  patch_ok(t, twin_section::reported, R"({"a":2})");
  EXPECT_EQ(t.desired_version, 2);
  EXPECT_EQ(t.reported_version, 3);
  EXPECT_EQ(t.version, 4);
  patch_ok(t, twin_section::tags, R"({"a":1})");
  EXPECT_EQ(t.desired_version, 2);
  EXPECT_EQ(t.reported_version, 3);
  EXPECT_EQ(t.version, 5);
  EXPECT_EQ(twin_etag(t), "AAAAAAAAAAU=");
}

TEST(TwinVersions, NoOpPatchStillBumps) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, "{}");
  patch_ok(t, twin_section::desired, R"({"nothing":null})");
  EXPECT_EQ(t.desired_version, 3);
  EXPECT_EQ(t.version, 3);
  EXPECT_EQ(S(t.desired), "{}");
  EXPECT_EQ(S(t.desired_meta), R"({"$lastUpdated":")" + ts1 + R"(","$lastUpdatedVersion":3})");
}

// ---- metadata (§1.5) ------------------------------------------------------------------------------------

TEST(TwinMetadata, EveryLevelAndLeafHasANode) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"cfg":{"freq":"5m","arr":[1,{"x":1}]},"on":true})");
  std::string n = R"("$lastUpdated":")" + ts1 + R"(","$lastUpdatedVersion":2)";
  EXPECT_EQ(S(t.desired_meta), "{" + n + R"(,"cfg":{)" + n + R"(,"freq":{)" + n + R"(},"arr":{)" + n +
                                   R"(}},"on":{)" + n + "}}");
}

TEST(TwinMetadata, ReportedHasNoLastUpdatedVersion) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::reported, R"({"a":{"b":1}})");
  std::string n = R"("$lastUpdated":")" + ts1 + R"(")";
  EXPECT_EQ(S(t.reported_meta), "{" + n + R"(,"a":{)" + n + R"(,"b":{)" + n + "}}}");
}

TEST(TwinMetadata, AncestorsRefreshedSiblingsKept) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"a":{"b":{"c":1},"s":1},"other":1})", t1);  // desired $version 2
  patch_ok(t, twin_section::desired, R"({"a":{"b":{"d":2}}})", t2);                  // desired $version 3
  const value& m = t.desired_meta;
  auto at = [](const value& node, std::string_view key) { return S(*node.find(key)); };
  EXPECT_EQ(at(m, "$lastUpdated"), "\"" + ts2 + "\"");
  EXPECT_EQ(at(m, "$lastUpdatedVersion"), "3");
  const value& a = *m.find("a");
  EXPECT_EQ(at(a, "$lastUpdated"), "\"" + ts2 + "\"");
  EXPECT_EQ(at(a, "$lastUpdatedVersion"), "3");
  EXPECT_EQ(at(*a.find("b"), "$lastUpdated"), "\"" + ts2 + "\"");
  EXPECT_EQ(at(*a.find("b")->find("c"), "$lastUpdated"), "\"" + ts1 + "\"");  // untouched leaf
  EXPECT_EQ(at(*a.find("b")->find("c"), "$lastUpdatedVersion"), "2");
  EXPECT_EQ(at(*a.find("b")->find("d"), "$lastUpdatedVersion"), "3");
  EXPECT_EQ(at(*a.find("s"), "$lastUpdated"), "\"" + ts1 + "\"");             // untouched sibling
  EXPECT_EQ(at(*m.find("other"), "$lastUpdatedVersion"), "2");
}

TEST(TwinMetadata, DeletionRemovesTheSubtreeAndTouchesTheParent) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::reported, R"({"a":{"b":{"c":1},"k":1}})", t1);
  patch_ok(t, twin_section::reported, R"({"a":{"b":null}})", t2);
  EXPECT_EQ(t.reported_meta.find("a")->find("b"), nullptr);
  EXPECT_NE(t.reported_meta.find("a")->find("k"), nullptr);
  EXPECT_EQ(S(*t.reported_meta.find("a")->find("$lastUpdated")), "\"" + ts2 + "\"");
  patch_ok(t, twin_section::reported, R"({"a":null})", t2);
  EXPECT_EQ(S(t.reported_meta), R"({"$lastUpdated":")" + ts2 + R"("})");
}

// ---- validation (§1.7) ----------------------------------------------------------------------------------

TEST(TwinLimits, DepthTenIsValidElevenIsNot) {
  twin_document t = new_twin("d", "", t0);
  // tags.one...ten.property: ten nested objects, property a leaf.
  patch_ok(t, twin_section::tags, nested(10));  // l0..l9: ten object levels
  patch_refused(t, twin_section::tags, nested(11), "nests deeper than 10 levels");
  patch_refused(t, twin_section::desired, nested(11), "property 'l0.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10' nests");
  // The doc's own example, spelled out.
  patch_ok(t, twin_section::reported, R"({"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":
           {"nine":{"ten":{"property":"v"}}}}}}}}}}})");
  patch_refused(t, twin_section::reported, R"({"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":
           {"nine":{"ten":{"eleven":{}}}}}}}}}}}})", "'one.two.three.four.five.six.seven.eight.nine.ten.eleven'");
  // Arrays are levels too; scalars inside the tenth level are fine.
  patch_ok(t, twin_section::desired, R"({"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"9":{"10":[1,2]}}}}}}}}}})");
  patch_refused(t, twin_section::desired, R"({"1":{"2":{"3":{"4":{"5":{"6":{"7":{"8":{"9":{"10":[[1]]}}}}}}}}}})",
                "'1.2.3.4.5.6.7.8.9.10[0]' nests deeper");
  // Legacy mode (5 levels).
  twin_limits legacy;
  legacy.max_depth = 5;
  patch_ok(t, twin_section::tags, nested(5), t1, legacy);
  patch_refused(t, twin_section::tags, nested(6), "deeper than 5 levels", legacy);
}

TEST(TwinLimits, KeyCharacterClasses) {
  twin_document t = new_twin("d", "", t0);
  patch_refused(t, twin_section::desired, R"({"a.b":1})", "key 'a.b' contains '.'");
  patch_refused(t, twin_section::desired, R"({"a$b":1})", "contains '$'");
  patch_refused(t, twin_section::desired, R"({"$version":1})", "reserved");
  patch_refused(t, twin_section::desired, R"({"$metadata":{}})", "reserved");
  patch_refused(t, twin_section::desired, R"({"x y":1})",
                "key 'x y' contains a space; twin keys may not contain '.', '$', spaces or control characters");
  patch_refused(t, twin_section::desired, R"({"a\u0001":1})", "control character");
  patch_refused(t, twin_section::desired, R"({"\u0000":1})", "control character");
  patch_refused(t, twin_section::desired, R"({"a\u001f":1})", "control character");
  patch_refused(t, twin_section::desired, R"({"a\u007f":1})", "control character");
  patch_refused(t, twin_section::desired, R"({"a\u0080":1})", "control character");  // C1
  patch_refused(t, twin_section::desired, R"({"a\u009f":1})", "control character");
  patch_refused(t, twin_section::desired, R"({"":1})", "empty key");
  patch_refused(t, twin_section::desired, R"({"ok":{"in ner":null}})", "key 'ok.in ner' contains a space");
  patch_refused(t, twin_section::tags, R"({"a":[{"b.c":1}]})", "key 'a[0].b.c'");
  // Neighbours of the banned ranges are fine: U+00A0, é, other punctuation.
  patch_ok(t, twin_section::desired, R"j({"a\u00a0":1,"\u00e9t\u00e9":2,"a-b_c:d/e@f#g()":3,"\ud83d\ude00":4})j");
  // Control characters are escaped in messages, not copied raw.
  auto r = apply_patch(t, twin_section::desired, J(R"({"a\u0001":1})"), t1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("'a\\x01'"), std::string::npos) << r.err().message;
}

TEST(TwinLimits, KeyLength) {
  twin_document t = new_twin("d", "", t0);
  object ok, bad;
  ok.emplace_back(std::string(1024, 'k'), 1);
  bad.emplace_back(std::string(1025, 'k'), 1);
  EXPECT_TRUE(apply_patch(t, twin_section::desired, ok, t1).ok());
  patch_refused_v(t, twin_section::desired, bad, "1025 bytes");
  object utf8;  // 512 two-byte characters = 1024 bytes: fine; one more byte is not
  std::string k;
  for (int i = 0; i < 512; ++i) k += "\xC3\xA9";
  utf8.emplace_back(k, 1);
  EXPECT_TRUE(apply_patch(t, twin_section::reported, utf8, t1).ok());
  object utf8_bad;
  utf8_bad.emplace_back(k + "x", 1);
  patch_refused_v(t, twin_section::reported, utf8_bad, "limited to 1024 bytes");
}

TEST(TwinLimits, StringLength) {
  twin_document t = new_twin("d", "", t0);
  EXPECT_TRUE(apply_patch(t, twin_section::desired, object{{"s", std::string(4096, 'x')}}, t1).ok());
  patch_refused_v(t, twin_section::desired, object{{"s", std::string(4097, 'x')}}, "property 's' is a string of 4097");
  patch_refused_v(t, twin_section::desired, object{{"a", array{std::string(4097, 'x')}}}, "'a[0]'");
}

TEST(TwinLimits, IntegerRange) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"max":4503599627370495,"min":-4503599627370496})");
  patch_refused(t, twin_section::desired, R"({"x":4503599627370496})", "outside the twin integer range");
  patch_refused(t, twin_section::desired, R"({"o":{"x":-4503599627370497}})", "property 'o.x'");
  patch_refused(t, twin_section::desired, R"({"x":9223372036854775807})", "integer range");
  // Doubles of any finite magnitude are fine.
  patch_ok(t, twin_section::desired, R"({"d":1e300,"e":-1.5e20,"u":18446744073709551615})");
  patch_refused_v(t, twin_section::desired, object{{"nan", std::nan("")}}, "not a finite number");
}

TEST(TwinLimits, SectionSizeBoundaries) {
  twin_document t = new_twin("d", "", t0);
  // tags: 2 x ("k" + 4095 bytes) = 8192 exactly.
  patch_ok(t, twin_section::tags, S(object{{"a", std::string(4095, 'x')}, {"b", std::string(4095, 'x')}}));
  patch_refused_v(t, twin_section::tags, object{{"b", std::string(4096, 'x')}}, "tags would be 8193 bytes");
  patch_refused_v(t, twin_section::tags, object{{"c", true}}, "limit is 8192");
  patch_ok(t, twin_section::tags, R"({"a":null,"c":true})");  // size is computed after the patch
  // desired and reported: 8 x ("k" + 4095) = 32768 exactly.
  for (auto s : {twin_section::desired, twin_section::reported}) {
    object full;
    for (char c = 'a'; c < 'i'; ++c) full.emplace_back(std::string(1, c), std::string(4095, 'x'));
    ASSERT_TRUE(apply_patch(t, s, full, t1).ok());
    patch_refused_v(t, s, object{{"h", std::string(4096, 'x')}}, "would be 32769 bytes");
    patch_refused_v(t, s, object{{"z", nullptr}, {"i", 0}}, "limit is 32768");
  }
}

TEST(TwinLimits, SizeCountsKeysStringsNumbersBooleansArrays) {
  twin_limits lim;
  lim.max_tags_bytes = 9;
  auto fits = [&](std::string_view patch) {
    twin_document t = new_twin("d", "", t0);
    return apply_patch(t, twin_section::tags, J(patch), t1, lim).ok();
  };
  EXPECT_TRUE(fits(R"({"n":1})"));          // 1 + 8
  EXPECT_TRUE(fits(R"({"n":1.5})"));
  EXPECT_FALSE(fits(R"({"nn":1})"));        // 10
  EXPECT_TRUE(fits(R"({"abcd":true})"));    // 4 + 4
  EXPECT_FALSE(fits(R"({"abcdef":true})")); // 10
  EXPECT_TRUE(fits(R"({"o":{"p":"1234567"}})"));   // 1 + 1 + 7
  EXPECT_FALSE(fits(R"({"o":{"p":"12345678"}})"));
}

TEST(TwinLimits, SizeOfArraysNullsAndControlCharacters) {
  twin_limits lim;
  lim.max_tags_bytes = 12;
  auto size_ok = [&](std::string_view patch) {
    twin_document t = new_twin("d", "", t0);
    return apply_patch(t, twin_section::tags, J(patch), t1, lim).ok();
  };
  EXPECT_TRUE(size_ok(R"({"a":[true,"x",null,{"b":true}]})"));     // 1 + 4 + 1 + 1 + (1 + 4) = 12
  EXPECT_FALSE(size_ok(R"({"a":[true,"xy",null,{"b":true}]})"));   // 13
  EXPECT_TRUE(size_ok(R"({"s":"12345678901\u0001\u0085"})"));        // C0/C1 not counted: 1 + 11
  EXPECT_FALSE(size_ok(R"({"s":"123456789012"})"));
  EXPECT_TRUE(size_ok(R"({"s":"12345678\u00e9\u0007"})"));         // é counts 2 bytes: 1 + 8 + 2 = 11
}

TEST(TwinLimits, NonObjectPatchRefused) {
  twin_document t = new_twin("d", "", t0);
  patch_refused(t, twin_section::desired, "[1]", "must be a JSON object (got an array)");
  patch_refused(t, twin_section::reported, "\"x\"", "must be a JSON object");
  patch_refused(t, twin_section::tags, "null", "must be a JSON object (got null)");
  patch_refused(t, twin_section::tags, "3", "must be a JSON object");
}

TEST(TwinLimits, RefusedPatchLeavesDocumentUnchanged) {
  twin_document t = new_twin("d", "m", t0);
  patch_ok(t, twin_section::desired, R"({"a":{"b":1},"c":[1]})");
  patch_ok(t, twin_section::reported, R"({"r":1})");
  patch_ok(t, twin_section::tags, R"({"t":1})");
  // Valid keys first, the bad one last: nothing of the patch may stick.
  patch_refused(t, twin_section::desired, R"({"a":{"b":2,"new":1},"c":null,"bad key":1})", "space");
  patch_refused(t, twin_section::reported, R"({"r":null,"x":{"y.z":1}})", "'x.y.z'");
  patch_refused(t, twin_section::tags, R"({"t":2,"big":"$"})", "tags would be 13 bytes", {.max_tags_bytes = 12});
}

// ---- replace --------------------------------------------------------------------------------------------

TEST(TwinReplace, ReplacesSectionAndRebuildsMetadata) {
  twin_document t = new_twin("d", "", t0);
  patch_ok(t, twin_section::desired, R"({"old":{"x":1},"keep":1})", t1);
  ASSERT_TRUE(replace_section(t, twin_section::desired, J(R"({"new":{"y":2},"gone":null})"), t2).ok());
  EXPECT_EQ(S(t.desired), R"({"new":{"y":2}})");
  std::string n = R"("$lastUpdated":")" + ts2 + R"(","$lastUpdatedVersion":3)";
  EXPECT_EQ(S(t.desired_meta), "{" + n + R"(,"new":{)" + n + R"(,"y":{)" + n + "}}}");
  EXPECT_EQ(t.desired_version, 3);
  EXPECT_EQ(t.version, 3);

  ASSERT_TRUE(replace_section(t, twin_section::tags, J(R"({"a":1})"), t2).ok());
  EXPECT_EQ(S(t.tags), R"({"a":1})");
  EXPECT_EQ(t.version, 4);
  ASSERT_TRUE(replace_section(t, twin_section::reported, J("{}"), t2).ok());
  EXPECT_EQ(t.reported_version, 2);
  EXPECT_EQ(S(t.reported_meta), R"({"$lastUpdated":")" + ts2 + R"("})");
}

TEST(TwinReplace, ValidatesLikeAPatch) {
  twin_document t = new_twin("d", "", t0);
  twin_document before = t;
  EXPECT_FALSE(replace_section(t, twin_section::desired, J("[]"), t1).ok());
  EXPECT_FALSE(replace_section(t, twin_section::desired, J(R"({"a.b":1})"), t1).ok());
  EXPECT_FALSE(replace_section(t, twin_section::tags, J(nested(11)), t1).ok());
  auto r = replace_section(t, twin_section::tags, object{{"s", std::string(4096, 'x')}, {"t", std::string(4096, 'x')}}, t1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_EQ(t, before);
}

// ---- views ----------------------------------------------------------------------------------------------

twin_document sample() {
  twin_document t = new_twin("dev1", "", t0);
  patch_ok(t, twin_section::tags, R"({"site":"a"})", t1);
  patch_ok(t, twin_section::desired, R"({"fw":"1.2"})", t1);
  patch_ok(t, twin_section::reported, R"({"fw":"1.1","sub":{"x":1}})", t2);
  return t;  // version 4, desired 2, reported 2
}

TEST(TwinViews, DeviceView) {
  twin_document t = sample();
  EXPECT_EQ(S(device_view(t)), R"({"desired":{"fw":"1.2","$version":2},"reported":{"fw":"1.1","sub":{"x":1},"$version":2}})");
}

TEST(TwinViews, SectionWithMeta) {
  twin_document t = sample();
  EXPECT_EQ(S(section_with_meta(t, twin_section::desired)),
            R"({"fw":"1.2","$metadata":{"$lastUpdated":")" + ts1 + R"(","$lastUpdatedVersion":2,"fw":{"$lastUpdated":")" +
                ts1 + R"(","$lastUpdatedVersion":2}},"$version":2})");
  EXPECT_EQ(S(section_with_meta(t, twin_section::tags)), R"({"site":"a"})");
}

TEST(TwinViews, ServiceViewDevice) {
  twin_document t = sample();
  twin_identity id;
  id.device_etag = "MA==";
  value v = service_view(t, id);
  std::vector<std::string> keys;
  for (const auto& [k, _] : v.as_object()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"deviceId", "etag", "deviceEtag", "status", "statusReason",
                                            "statusUpdateTime", "connectionState", "lastActivityTime",
                                            "cloudToDeviceMessageCount", "authenticationType", "x509Thumbprint",
                                            "capabilities", "version", "tags", "properties"}));
  EXPECT_EQ(S(*v.find("etag")), "\"AAAAAAAAAAQ=\"");
  EXPECT_EQ(S(*v.find("status")), "\"enabled\"");
  EXPECT_EQ(S(*v.find("statusReason")), "null");
  EXPECT_EQ(S(*v.find("statusUpdateTime")), "\"0001-01-01T00:00:00Z\"");
  EXPECT_EQ(S(*v.find("connectionState")), "\"Disconnected\"");
  EXPECT_EQ(S(*v.find("lastActivityTime")), "\"0001-01-01T00:00:00Z\"");
  EXPECT_EQ(S(*v.find("cloudToDeviceMessageCount")), "0");
  EXPECT_EQ(S(*v.find("authenticationType")), "\"sas\"");
  EXPECT_EQ(S(*v.find("x509Thumbprint")), R"({"primaryThumbprint":null,"secondaryThumbprint":null})");
  EXPECT_EQ(S(*v.find("capabilities")), R"({"iotEdge":false})");
  EXPECT_EQ(S(*v.find("version")), "4");
  EXPECT_EQ(S(*v.find("tags")), R"({"site":"a"})");
  const value& props = *v.find("properties");
  EXPECT_EQ(*props.find("desired"), section_with_meta(t, twin_section::desired));
  EXPECT_EQ(*props.find("reported"), section_with_meta(t, twin_section::reported));
}

TEST(TwinViews, ServiceViewModuleAndIdentityFacts) {
  twin_document t = new_twin("dev1", "mod1", t0);
  twin_identity id;
  id.device_etag = "MQ==";
  id.enabled = false;
  id.status_reason = "stolen";
  id.status_updated_ms = t1;
  id.connected = true;
  id.last_activity_ms = t2;
  id.c2d_message_count = 3;
  id.authentication_type = "selfSigned";
  id.primary_thumbprint = "AB";
  id.iot_edge = true;  // not shown for modules
  value v = service_view(t, id);
  EXPECT_EQ(S(v.as_object()[1].second), "\"mod1\"");
  EXPECT_EQ(v.as_object()[1].first, "moduleId");
  EXPECT_EQ(v.find("capabilities"), nullptr);
  EXPECT_EQ(S(*v.find("status")), "\"disabled\"");
  EXPECT_EQ(S(*v.find("statusReason")), "\"stolen\"");
  EXPECT_EQ(S(*v.find("statusUpdateTime")), "\"" + ts1 + "\"");
  EXPECT_EQ(S(*v.find("connectionState")), "\"Connected\"");
  EXPECT_EQ(S(*v.find("lastActivityTime")), "\"" + ts2 + "\"");
  EXPECT_EQ(S(*v.find("cloudToDeviceMessageCount")), "3");
  EXPECT_EQ(S(*v.find("x509Thumbprint")), R"({"primaryThumbprint":"AB","secondaryThumbprint":null})");
}

TEST(TwinViews, DesiredNotification) {
  EXPECT_EQ(S(desired_notification(J(R"({"a":1,"b":null,"c":{"d":null}})"), 7)),
            R"({"a":1,"b":null,"c":{"d":null},"$version":7})");
  EXPECT_EQ(S(desired_notification(J("{}"), 2)), R"({"$version":2})");
}

TEST(TwinViews, ChangeEventUpdateDesired) {
  twin_document t = new_twin("dev1", "", t0);
  patch_ok(t, twin_section::desired, R"({"keep":{"x":1},"del":1,"obj":{"a":1,"b":2}})", t1);
  value applied = patch_ok(t, twin_section::desired, R"({"new":"v","del":null,"obj":{"a":5}})", t2);
  std::string n2 = R"("$lastUpdated":")" + ts2 + R"(","$lastUpdatedVersion":3)";
  EXPECT_EQ(S(twin_change_update_body(t, twin_section::desired, applied)),
            R"({"version":3,"properties":{"desired":{"new":"v","del":null,"obj":{"a":5},"$metadata":{)" + n2 +
                R"(,"new":{)" + n2 + R"(},"obj":{)" + n2 + R"(,"a":{)" + n2 + R"(}}},"$version":3}}})");
}

TEST(TwinViews, ChangeEventUpdateReportedAndTags) {
  twin_document t = new_twin("dev1", "", t0);
  value applied = patch_ok(t, twin_section::reported, R"({"r":[1,2]})", t1);
  std::string n = R"("$lastUpdated":")" + ts1 + R"(")";
  EXPECT_EQ(S(twin_change_update_body(t, twin_section::reported, applied)),
            R"({"version":2,"properties":{"reported":{"r":[1,2],"$metadata":{)" + n + R"(,"r":{)" + n +
                R"(}},"$version":2}}})");
  value tags = patch_ok(t, twin_section::tags, R"({"t":null,"u":1})", t1);
  EXPECT_EQ(S(twin_change_update_body(t, twin_section::tags, tags)), R"({"version":3,"tags":{"t":null,"u":1}})");
}

TEST(TwinViews, ChangeEventReplace) {
  twin_document t = sample();
  value v = twin_change_replace_body(t);
  std::vector<std::string> keys;
  for (const auto& [k, _] : v.as_object()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"deviceId", "etag", "version", "tags", "properties"}));
  EXPECT_EQ(*v.find("properties")->find("reported"), section_with_meta(t, twin_section::reported));
  twin_document m = new_twin("dev1", "mod1", t0);
  EXPECT_EQ(S(twin_change_replace_body(m)),
            R"({"deviceId":"dev1","moduleId":"mod1","etag":"AAAAAAAAAAE=","version":1,"tags":{},"properties":{"desired":{"$metadata":{"$lastUpdated":")" +
                ts0 + R"(","$lastUpdatedVersion":1},"$version":1},"reported":{"$metadata":{"$lastUpdated":")" + ts0 +
                R"("},"$version":1}}})");
}

// ---- storage --------------------------------------------------------------------------------------------

TEST(TwinStorage, RoundTripIsExact) {
  twin_document t = sample();
  patch_ok(t, twin_section::desired, R"({"z":1.0,"y":-0.0,"x":1e300,"w":[null,{"q":"\u00e9\n"}],"v":{"u":{}}})", t2);
  t.module_id = "m";
  bytes b = encode_twin(t);
  EXPECT_NE(as_string_view(b).find(R"("fmt":1)"), std::string_view::npos);
  auto back = decode_twin(b);
  ASSERT_TRUE(back.ok()) << back.err().message;
  EXPECT_EQ(*back, t);
  EXPECT_EQ(S(back->desired), S(t.desired));  // key order and number kinds, not just equality
  EXPECT_EQ(S(back->desired_meta), S(t.desired_meta));
  EXPECT_EQ(encode_twin(*back), b);
}

TEST(TwinStorage, DecodeErrors) {
  auto code = [](std::string_view text) {
    auto r = decode_twin(as_bytes(text));
    return r.ok() ? errc::ok : r.err().code;
  };
  EXPECT_EQ(code("not json"), errc::storage);
  EXPECT_EQ(code("[]"), errc::storage);
  EXPECT_EQ(code(R"({"deviceId":"d"})"), errc::storage);
  EXPECT_EQ(code(R"({"fmt":2})"), errc::schema_mismatch);
  std::string good = std::string(as_string_view(encode_twin(new_twin("d", "", t0))));
  EXPECT_EQ(code(good), errc::ok);
  std::string bad = good;
  bad.replace(bad.find(R"("tags":{})"), 9, R"("tags":[])");
  EXPECT_EQ(code(bad), errc::storage);
}

}  // namespace
}  // namespace fleethub::hub
