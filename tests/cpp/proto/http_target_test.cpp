// Request-target splitting: segments, percent-decoding of device ids, query parameters, and refusals.
#include "fleethub/proto/http/target.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace fleethub::proto::http {
namespace {

using segs = std::vector<std::string>;
using params = std::vector<std::pair<std::string, std::string>>;

target ok(std::string_view raw) {
  auto t = parse_target(raw);
  EXPECT_TRUE(t.ok()) << raw << ": " << (t.ok() ? "" : t.err().message);
  return t.ok() ? *t : target{};
}

void refused(std::string_view raw) {
  auto t = parse_target(raw);
  ASSERT_FALSE(t.ok()) << raw;
  EXPECT_EQ(t.err().code, errc::invalid_argument);
  EXPECT_FALSE(t.err().message.empty());
}

TEST(HttpTarget, PathAndQuery) {
  const target t = ok("/devices/dev1/messages/events?api-version=2019-10-01");
  EXPECT_EQ(t.segments, (segs{"devices", "dev1", "messages", "events"}));
  EXPECT_EQ(t.query, (params{{"api-version", "2019-10-01"}}));
  ASSERT_NE(t.query_value("api-version"), nullptr);
  EXPECT_EQ(*t.query_value("API-Version"), "2019-10-01");
  EXPECT_TRUE(t.has_query("api-version"));
  EXPECT_FALSE(t.has_query("top"));
}

TEST(HttpTarget, Root) {
  EXPECT_TRUE(ok("/").segments.empty());
  EXPECT_TRUE(ok("/").query.empty());
  EXPECT_TRUE(ok("/?").query.empty());
}

TEST(HttpTarget, EmptySegmentsDropped) {
  EXPECT_EQ(ok("/devices/dev1/files/").segments, (segs{"devices", "dev1", "files"}));  // csdk's trailing '/'
  EXPECT_EQ(ok("//devices///dev1").segments, (segs{"devices", "dev1"}));
  EXPECT_EQ(ok("/devices/dev1/?api-version=1").segments, (segs{"devices", "dev1"}));
}

TEST(HttpTarget, PercentDecodedDeviceIds) {
  EXPECT_EQ(ok("/devices/a%23b%3F").segments, (segs{"devices", "a#b?"}));
  EXPECT_EQ(ok("/devices/d%2F1/twin").segments, (segs{"devices", "d/1", "twin"}))
      << "an encoded '/' stays in its segment";
  // Every punctuation character a device id may contain, percent-encoded as msrest does (safe='').
  const std::string id = "-:.+%_#*?!(),=@;$'";
  std::string enc;
  for (unsigned char c : id) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%%%02X", c);
    enc += buf;
  }
  EXPECT_EQ(ok("/devices/" + enc).segments, (segs{"devices", id}));
  // Unencoded characters that are legal in a path pass through; '+' is not a space.
  EXPECT_EQ(ok("/devices/a+b:c@d!e$f'g(h)i*j,k;l=m").segments, (segs{"devices", "a+b:c@d!e$f'g(h)i*j,k;l=m"}));
  EXPECT_EQ(ok("/devices/caf%C3%A9").segments[1], "caf\xc3\xa9");
  EXPECT_EQ(ok("/devices/%7e%7E").segments[1], "~~") << "lower- and upper-case hex";
  EXPECT_EQ(ok("/a/../b/.").segments, (segs{"a", "..", "b", "."})) << "dot-segments are literal";
}

TEST(HttpTarget, QueryForms) {
  const target t = ok("/devices/d/messages/devicebound/lock1?api-version=2016-11-14&reject");
  EXPECT_EQ(t.query, (params{{"api-version", "2016-11-14"}, {"reject", ""}}));
  EXPECT_TRUE(t.has_query("REJECT"));
  EXPECT_EQ(*t.query_value("reject"), "");
  EXPECT_EQ(ok("/x?a=1&&b=2&").query, (params{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(ok("/x?a=b=c").query, (params{{"a", "b=c"}})) << "split on the first '='";
  EXPECT_EQ(ok("/x?k%20ey=v%26al+ue").query, (params{{"k ey", "v&al+ue"}}));
  EXPECT_EQ(ok("/x?a=").query, (params{{"a", ""}}));
  EXPECT_EQ(ok("/x?a=1&a=2").query, (params{{"a", "1"}, {"a", "2"}}));
  EXPECT_EQ(*ok("/x?a=1&a=2").query_value("a"), "1") << "first wins";
  EXPECT_EQ(ok("/jobs/v2/query?jobType=scheduleUpdateTwin&jobStatus=").query.size(), 2u);
  EXPECT_EQ(ok("/x?a=%3F%23").query, (params{{"a", "?#"}}));
  EXPECT_EQ(ok("/x?q=a/b?c").query, (params{{"q", "a/b?c"}})) << "only the first '?' starts the query";
}

TEST(HttpTarget, Refusals) {
  refused("");
  refused("*");
  refused("devices/d");
  refused("http://hub.local/devices/d");
  refused("/devices/bad%");
  refused("/devices/bad%2");
  refused("/devices/bad%zz");
  refused("/devices/bad%2g");
  refused("/devices/nul%00");
  refused("/x?a=%");
  refused("/x?a%G1=1");
  refused("/x?a=%00");
  refused("/x?%00=1");
}

TEST(HttpTarget, ErrorMessagesAreShort) {
  auto t = parse_target("/" + std::string(5000, 'a') + "%zz");
  ASSERT_FALSE(t.ok());
  EXPECT_LT(t.err().message.size(), 300u);
}

}  // namespace
}  // namespace fleethub::proto::http
