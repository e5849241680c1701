// Known-answer vectors were computed with Python's hmac/hashlib/urllib (see each comment), using
// key  = base64(bytes(range(32)))       = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
// key2 = base64(bytes(range(100, 132))) = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
#include "fleethub/hub/sas.hpp"

#include <gtest/gtest.h>

namespace fleethub::hub {
namespace {

const std::string key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const std::string key2 = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";
const std::string other_key = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoQ=";
constexpr std::int64_t se = 1700000000;
constexpr std::int64_t before = se - 100;

// pydev: sr = quote("hub.local/devices/dev1", safe=''), sig over sr + "\n" + se, sig quoted with safe=''.
const std::string pydev_token =
    "SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
    "&se=1700000000";
// csdk: raw sr with literal slashes, signature over the raw sr.
const std::string csdk_token =
    "SharedAccessSignature sr=hub.local/devices/dev1&sig=llo1Ey8s4SawUximWn%2BdaaWc20s%2Brdac%2FsgSCZxIYhg%3D"
    "&se=1700000000";
// pysvc REST: sr = quote_plus(host), sig = quote(sig) (keeps '/'), skn=iothubowner.
const std::string pysvc_token =
    "SharedAccessSignature sr=hub.local&sig=ITRlhccVu5G8y2i8q/EjQ/hM8R01cdRUwMSSd9Vv%2B1M%3D&se=1700000000"
    "&skn=iothubowner";

result<void> verify(const std::string& token, const std::vector<std::string>& keys, std::int64_t now = before) {
  auto t = parse_sas_token(token);
  if (!t) return t.err();
  return verify_sas_token(*t, keys, now);
}

TEST(SasParse, PydevToken) {
  auto t = parse_sas_token(pydev_token);
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->sr, "hub.local%2Fdevices%2Fdev1");
  EXPECT_EQ(t->resource, "hub.local/devices/dev1");
  EXPECT_EQ(t->signature, "l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA+jtgz4=");
  EXPECT_EQ(t->expiry, se);
  EXPECT_EQ(t->expiry_text, "1700000000");
  EXPECT_EQ(t->key_name, "");
}

TEST(SasParse, FieldOrderSpacesUnknownFieldsAndEmptySkn) {
  auto t = parse_sas_token(
      "  SharedAccessSignature se=1700000000&skn=&foo=bar&sig=abc%3D&&sr=hub.local%2Fdevices%2Fdev1&flag  ");
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->resource, "hub.local/devices/dev1");
  EXPECT_EQ(t->signature, "abc=");
  EXPECT_EQ(t->key_name, "");  // empty skn == absent
  auto p = parse_sas_token(pysvc_token);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->key_name, "iothubowner");
  EXPECT_EQ(p->signature, "ITRlhccVu5G8y2i8q/EjQ/hM8R01cdRUwMSSd9Vv+1M=");
}

TEST(SasParse, Errors) {
  auto expect_invalid = [](std::string_view token, std::string_view mentions) {
    auto t = parse_sas_token(token);
    ASSERT_FALSE(t) << token;
    EXPECT_EQ(t.err().code, errc::invalid_argument);
    EXPECT_NE(t.err().message.find(mentions), std::string::npos) << t.err().message;
  };
  expect_invalid("", "SharedAccessSignature");
  expect_invalid("sr=a&sig=b&se=1", "SharedAccessSignature");
  expect_invalid("sharedaccesssignature sr=a&sig=b&se=1", "SharedAccessSignature");
  expect_invalid("SharedAccessSignaturesr=a&sig=b&se=1", "SharedAccessSignature");
  expect_invalid("SharedAccessSignature  sr=a&sig=b&se=1", "one space");
  expect_invalid("SharedAccessSignature sig=b&se=1", "'sr'");
  expect_invalid("SharedAccessSignature sr=&sig=b&se=1", "'sr'");
  expect_invalid("SharedAccessSignature sr=a&se=1", "'sig'");
  expect_invalid("SharedAccessSignature sr=a&sig=b", "'se'");
  expect_invalid("SharedAccessSignature sr=a&sig=b&se=", "'se'");
  expect_invalid("SharedAccessSignature sr=a&sig=b&se=12x", "'se'");
  expect_invalid("SharedAccessSignature sr=a&sig=b&se=-5", "'se'");
  expect_invalid("SharedAccessSignature sr=a&sig=b&se=99999999999999999999", "'se'");
  expect_invalid("SharedAccessSignature sr=a&sig=b&se=1&sr=c", "more than one 'sr'");
}

TEST(SasResource, Parts) {
  auto d = parse_sas_resource("Hub.Local:8883/devices/Dev1");
  ASSERT_TRUE(d) << d.err().message;
  EXPECT_EQ(d->host, "hub.local");
  EXPECT_EQ(d->device_id, "Dev1");  // ids stay case-sensitive
  EXPECT_EQ(d->module_id, "");
  auto m = parse_sas_resource("hub.local/devices/dev1/modules/$edgeAgent");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->device_id, "dev1");
  EXPECT_EQ(m->module_id, "$edgeAgent");
  auto h = parse_sas_resource("hub.local");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->host, "hub.local");
  EXPECT_EQ(h->device_id, "");
  auto v6 = parse_sas_resource("[::1]:8883/devices/d");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "[::1]");
  auto pct = parse_sas_resource("hub.local/devices/a%b#c");  // already decoded: no second decode
  ASSERT_TRUE(pct);
  EXPECT_EQ(pct->device_id, "a%b#c");
}

TEST(SasResource, Rejects) {
  for (const char* bad : {"", "/devices/d", "hub.local/", "hub.local/devices", "hub.local/devices/",
                          "hub.local/devicesx/d", "hub.local/twins/d", "hub.local/devices/d/", "hub.local/devices/d/x",
                          "hub.local/devices/d/modules", "hub.local/devices/d/modules/", "hub.local/devices/d/modules/m/x",
                          "hub.local:/devices/d", "hub.local:abc/devices/d", "hub.local:123456", "[::1/devices/d"}) {
    auto r = parse_sas_resource(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.err().code, errc::invalid_argument);
    }
  }
}

TEST(SasResource, Covers) {
  EXPECT_TRUE(resource_covers("hub.local", "hub.local/devices/a"));
  EXPECT_TRUE(resource_covers("HUB.local", "hub.LOCAL/devices/a"));
  EXPECT_TRUE(resource_covers("hub.local:8883", "hub.local/devices/a"));
  EXPECT_TRUE(resource_covers("hub.local/devices/a", "hub.local/devices/a"));
  EXPECT_TRUE(resource_covers("hub.local/devices/a", "hub.local/devices/a/modules/m"));
  EXPECT_TRUE(resource_covers("hub.local/devices/a/", "hub.local/devices/a/modules/m"));
  EXPECT_FALSE(resource_covers("hub.local/devices/a", "hub.local/devices/ab"));
  EXPECT_FALSE(resource_covers("hub.local/devices/a", "hub.local/devices/A"));
  EXPECT_FALSE(resource_covers("hub.local/devices/a/modules/m", "hub.local/devices/a"));
  EXPECT_FALSE(resource_covers("hub.local", "other.local/devices/a"));
  EXPECT_FALSE(resource_covers("hub.loc", "hub.local"));
}

TEST(SasVerify, PydevDeviceToken) { EXPECT_TRUE(verify(pydev_token, {key})); }

TEST(SasVerify, CsdkRawSr) { EXPECT_TRUE(verify(csdk_token, {key})); }

TEST(SasVerify, PysvcPolicyToken) { EXPECT_TRUE(verify(pysvc_token, {key})); }

TEST(SasVerify, PysvcHostWithPort) {
  // sr = quote_plus("hub.local:8443") = "hub.local%3A8443"
  EXPECT_TRUE(verify("SharedAccessSignature sr=hub.local%3A8443&sig=QUu25IPmPGpSVGDM41HcxsAQS8OdzKpufms2m4CElOk%3D"
                     "&se=1700000000&skn=iothubowner",
                     {key}));
}

TEST(SasVerify, SecondaryKeyMatchesModuleToken) {
  // Module resource signed with key2 (pydev form).
  const std::string t =
      "SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1%2Fmodules%2Fmod1"
      "&sig=WfvA81Ch9dTufJmtbXictHeBKVO0nZsRB2XsJaY1qsE%3D&se=1700000000";
  EXPECT_TRUE(verify(t, {key, key2}));
  EXPECT_FALSE(verify(t, {key}));
  auto parsed = parse_sas_token(t);
  ASSERT_TRUE(parsed);
  auto res = parse_sas_resource(parsed->resource);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->module_id, "mod1");
}

TEST(SasVerify, FieldOrderAndEmptySkn) {
  EXPECT_TRUE(verify("SharedAccessSignature se=1700000000&skn=&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
                     "&sr=hub.local%2Fdevices%2Fdev1",
                     {key}));
}

TEST(SasVerify, FallbackCandidates) {
  // Raw sr, signature over the upper-hex encoded resource (pydev's string-to-sign).
  EXPECT_TRUE(verify("SharedAccessSignature sr=hub.local/devices/dev1&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
                     "&se=1700000000",
                     {key}));
  // Raw sr, signature over lower-hex "hub.local%2fdevices%2fdev1\n1700000000".
  EXPECT_TRUE(verify("SharedAccessSignature sr=hub.local/devices/dev1&sig=JljQLEyFyD%2F9UTdj4qdqbu10nW3WTeH9TYNAGaMkKOM%3D"
                     "&se=1700000000",
                     {key}));
  // Mixed-case host, signature over the encoded lowercased resource (the docs' form).
  EXPECT_TRUE(verify("SharedAccessSignature sr=HUB.Local/devices/dev1&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
                     "&se=1700000000",
                     {key}));
}

TEST(SasVerify, SeIsSignedAsItAppeared) {
  // sig over "hub.local%2Fdevices%2Fdev1\n01700000000" (leading zero kept in the signed text).
  EXPECT_TRUE(verify("SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=d0JwbU9%2BgiRuoG3K8%2BXVs3o4faStiWC2bzr2musjXXI%3D"
                     "&se=01700000000",
                     {key}));
}

TEST(SasVerify, WrongKey) {
  auto r = verify(pydev_token, {other_key, "not base64!", ""});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unauthorized);
  EXPECT_EQ(r.err().message, "SAS signature does not match the device or policy key");
  EXPECT_FALSE(verify(pydev_token, {}));
}

TEST(SasVerify, TamperedResourceOrExpiry) {
  EXPECT_FALSE(verify("SharedAccessSignature sr=hub.local%2Fdevices%2Fdev2&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
                      "&se=1700000000",
                      {key}));
  EXPECT_FALSE(verify("SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=l7v199DGrG9te8SgztLdLSrJq0mCK7T9kkXDA%2Bjtgz4%3D"
                      "&se=1700000001",
                      {key}));
}

TEST(SasVerify, Expired) {
  auto r = verify(pydev_token, {key}, se);  // se <= now
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unauthorized);
  EXPECT_EQ(r.err().message, "SAS token expired at 2023-11-14T22:13:20.000Z");
  EXPECT_TRUE(verify(pydev_token, {key}, se - 1));
}

TEST(SasVerify, MalformedSignature) {
  auto r = verify("SharedAccessSignature sr=hub.local&sig=%%%%&se=1700000000", {key});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unauthorized);
}

TEST(SasMake, MatchesPydev) {
  EXPECT_EQ(make_sas_token("hub.local/devices/dev1", key, se), pydev_token);
  EXPECT_EQ(make_sas_token("hub.local", key, se, "iothubowner"),
            "SharedAccessSignature sr=hub.local&sig=ITRlhccVu5G8y2i8q%2FEjQ%2FhM8R01cdRUwMSSd9Vv%2B1M%3D"
            "&se=1700000000&skn=iothubowner");
  EXPECT_THROW(make_sas_token("hub.local", "bad key!", se), std::invalid_argument);
}

TEST(SasMake, RoundTrip) {
  auto token = make_sas_token("hub.local/devices/d#1/modules/m 2", key2, 2000000000, "device");
  auto t = parse_sas_token(token);
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->resource, "hub.local/devices/d#1/modules/m 2");
  EXPECT_EQ(t->key_name, "device");
  EXPECT_TRUE(verify_sas_token(*t, {key2}, 1999999999));
  auto r = parse_sas_resource(t->resource);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->device_id, "d#1");
  EXPECT_EQ(r->module_id, "m 2");
}

}  // namespace
}  // namespace fleethub::hub
