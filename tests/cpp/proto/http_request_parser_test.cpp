// Sans-I/O HTTP request parser: framing (Content-Length, chunked, none), incremental feeding at every split
// point, pipelining, every limit with its refusal status, request smuggling, keep-alive rules.
#include "fleethub/proto/http/request_parser.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fleethub::proto::http {
namespace {

using kind = request_parser::outcome::kind;

struct run_result {
  std::vector<request> requests;
  bool failed = false;
  int status = 0;
  std::string message;
  bool in_progress = false;
};

// Feeds `chunk` the way the net driver does: after `complete`, take() and feed the rest; need_more means
// every byte was consumed. Returns false once the parser reported an error.
bool drive(request_parser& p, std::string_view chunk, run_result& r) {
  bytes_view in = as_bytes(chunk);
  for (;;) {
    const auto o = p.feed(in);
    EXPECT_LE(o.consumed, in.size());
    if (o.what == kind::complete) {
      r.requests.push_back(p.take());
      in = in.subspan(o.consumed);
      if (in.empty()) return true;
      continue;
    }
    if (o.what == kind::need_more) {
      EXPECT_EQ(o.consumed, in.size());
      return true;
    }
    r.failed = true;
    r.status = o.status;
    r.message = o.message;
    return false;
  }
}

// Feeds `wire` cut at the given offsets.
run_result parse_split(std::string_view wire, const std::vector<std::size_t>& cuts, parser_limits lim = {}) {
  request_parser p(lim);
  run_result r;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    if (!drive(p, wire.substr(from, cut - from), r)) return r;
    from = cut;
  }
  if (drive(p, wire.substr(from), r)) r.in_progress = p.in_progress();
  return r;
}

run_result parse_whole(std::string_view wire, parser_limits lim = {}) { return parse_split(wire, {}, lim); }

run_result parse_bytewise(std::string_view wire, parser_limits lim = {}) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < wire.size(); ++i) cuts.push_back(i);
  return parse_split(wire, cuts, lim);
}

void expect_same(const request& a, const request& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
  ASSERT_EQ(a.headers.size(), b.headers.size());
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    EXPECT_EQ(a.headers[i].name, b.headers[i].name);
    EXPECT_EQ(a.headers[i].value, b.headers[i].value);
  }
}

request parse_one(std::string_view wire, parser_limits lim = {}) {
  auto r = parse_whole(wire, lim);
  EXPECT_FALSE(r.failed) << r.status << " " << r.message;
  EXPECT_EQ(r.requests.size(), 1u);
  return r.requests.empty() ? request{} : r.requests.front();
}

// Expects the refusal status both when the bytes come at once and one at a time.
void expect_refused(std::string_view wire, int status, parser_limits lim = {}) {
  for (const auto& r : {parse_whole(wire, lim), parse_bytewise(wire, lim)}) {
    EXPECT_TRUE(r.failed) << "no error for status " << status;
    EXPECT_EQ(r.status, status) << r.message;
    EXPECT_FALSE(r.message.empty());
  }
}

const std::string get_req = "GET /devices/dev1?api-version=2021-04-12 HTTP/1.1\r\nHost: hub.local\r\n\r\n";
const std::string post_req =
    "POST /devices/dev1/messages/events?api-version=2019-10-01 HTTP/1.1\r\n"
    "Host: hub.local\r\n"
    "Authorization: SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=abc%3D&se=1700000000\r\n"
    "Content-Type: application/octet-stream\r\n"
    "iothub-app-color: red\r\n"
    "Content-Length: 11\r\n\r\n"
    "hello world";
const std::string chunked_req =
    "POST /twins/dev1/methods HTTP/1.1\r\n"
    "Host: hub.local\r\n"
    "Transfer-Encoding: chunked\r\n\r\n"
    "5;name=value\r\nhello\r\n"
    "6;a=\"quoted;str\";b\r\n world\r\n"
    "0\r\n"
    "X-Trailer: t\r\n"
    "\r\n";

TEST(HttpRequestParser, SimpleGet) {
  request_parser p;
  const auto o = p.feed(as_bytes(get_req));
  ASSERT_EQ(o.what, kind::complete);
  EXPECT_EQ(o.consumed, get_req.size());
  const request r = p.take();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/devices/dev1?api-version=2021-04-12");
  EXPECT_EQ(r.version, 11u);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].name, "Host");
  EXPECT_EQ(r.headers[0].value, "hub.local");
  EXPECT_TRUE(r.body.empty());
  EXPECT_TRUE(r.keep_alive);
  EXPECT_FALSE(p.in_progress());
}

TEST(HttpRequestParser, PostWithBody) {
  const request r = parse_one(post_req);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.body, "hello world");
  ASSERT_NE(r.find("iothub-app-color"), nullptr);
  EXPECT_EQ(*r.find("iothub-app-color"), "red");
  EXPECT_EQ(*r.find("content-length"), "11");
}

TEST(HttpRequestParser, AzureServiceSdkPut) {
  const std::string body = R"({"deviceId":"dev1","status":"enabled","authentication":{"type":"sas"}})";
  const std::string wire =
      "PUT /devices/dev1?api-version=2021-04-12 HTTP/1.1\r\n"
      "Host: hub.local\r\n"
      "User-Agent: azsdk-python-iothubgatewayserviceapis/2021-04-12\r\n"
      "Accept-Encoding: gzip, deflate\r\n"
      "Accept: application/json\r\n"
      "Connection: keep-alive\r\n"
      "Authorization: SharedAccessSignature sr=hub.local&sig=x%2By%3D&se=1700000000&skn=iothubowner\r\n"
      "Content-Type: application/json; charset=utf-8\r\n"
      "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  const request r = parse_one(wire);
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(*r.find("CONTENT-TYPE"), "application/json; charset=utf-8");
  EXPECT_TRUE(r.keep_alive);
}

TEST(HttpRequestParser, EverySplitPoint) {
  // The last one is an empty chunked body: Beast 1.74 asserts when it resumes "0\r\n" with under 5 bytes.
  const std::string empty_chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  for (const std::string& wire : {get_req, post_req, chunked_req, empty_chunked}) {
    const auto whole = parse_whole(wire);
    ASSERT_EQ(whole.requests.size(), 1u) << whole.message;
    for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
      const auto r = parse_split(wire, {cut});
      ASSERT_FALSE(r.failed) << "cut " << cut << ": " << r.message;
      ASSERT_EQ(r.requests.size(), 1u) << "cut " << cut;
      expect_same(r.requests[0], whole.requests[0]);
      EXPECT_FALSE(r.in_progress);
    }
    const auto bytewise = parse_bytewise(wire);
    ASSERT_EQ(bytewise.requests.size(), 1u);
    expect_same(bytewise.requests[0], whole.requests[0]);
  }
}

TEST(HttpRequestParser, PipelinedThreeRequests) {
  const std::string wire = get_req + post_req + chunked_req;
  {
    request_parser p;
    bytes_view in = as_bytes(wire);
    auto o = p.feed(in);
    ASSERT_EQ(o.what, kind::complete);
    EXPECT_EQ(o.consumed, get_req.size());
    EXPECT_EQ(o.what, p.feed(in).what) << "feeding again before take() repeats complete";
    EXPECT_EQ(p.take().method, "GET");
    in = in.subspan(o.consumed);
    o = p.feed(in);
    ASSERT_EQ(o.what, kind::complete);
    EXPECT_EQ(o.consumed, post_req.size());
    EXPECT_EQ(p.take().body, "hello world");
    in = in.subspan(o.consumed);
    o = p.feed(in);
    ASSERT_EQ(o.what, kind::complete);
    EXPECT_EQ(o.consumed, chunked_req.size());
    EXPECT_EQ(p.take().body, "hello world");
    EXPECT_FALSE(p.in_progress());
  }
  const auto whole = parse_whole(wire);
  ASSERT_EQ(whole.requests.size(), 3u);
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
    const auto r = parse_split(wire, {cut});
    ASSERT_EQ(r.requests.size(), 3u) << "cut " << cut << ": " << r.message;
    for (std::size_t i = 0; i < 3; ++i) expect_same(r.requests[i], whole.requests[i]);
  }
  for (std::size_t a = 0; a <= wire.size(); a += 7) {
    for (std::size_t b = a; b <= wire.size(); b += 13) {
      const auto r = parse_split(wire, {a, b});
      ASSERT_EQ(r.requests.size(), 3u) << "cuts " << a << "," << b;
      for (std::size_t i = 0; i < 3; ++i) expect_same(r.requests[i], whole.requests[i]);
    }
  }
  const auto bytewise = parse_bytewise(wire);
  ASSERT_EQ(bytewise.requests.size(), 3u);
}

TEST(HttpRequestParser, ChunkedExtensionsAndTrailers) {
  const request r = parse_one(chunked_req);
  EXPECT_EQ(r.body, "hello world");
  EXPECT_EQ(r.find("X-Trailer"), nullptr) << "trailer fields are dropped";
  EXPECT_NE(r.find("transfer-encoding"), nullptr);
  // Upper-case hex sizes and an empty trailer section.
  const request r2 =
      parse_one("PUT /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n");
  EXPECT_EQ(r2.body, "0123456789");
}

TEST(HttpRequestParser, HeaderBytesLimit) {
  parser_limits lim;
  lim.max_header_bytes = 200;
  // Find the largest header that fits: it must fit the same way whole and byte by byte.
  auto wire_of = [](std::size_t filler) {
    return "GET / HTTP/1.1\r\nX-Fill: " + std::string(filler, 'a') + "\r\n\r\n";
  };
  const std::size_t fixed = wire_of(0).size();
  const std::string fits = wire_of(200 - fixed);
  ASSERT_EQ(fits.size(), 200u);
  EXPECT_FALSE(parse_whole(fits, lim).failed) << parse_whole(fits, lim).message;
  EXPECT_FALSE(parse_bytewise(fits, lim).failed);
  for (std::size_t cut = 0; cut <= fits.size(); ++cut) EXPECT_FALSE(parse_split(fits, {cut}, lim).failed) << cut;
  expect_refused(wire_of(201 - fixed), 431, lim);
  for (std::size_t cut = 0; cut <= 201; ++cut)
    EXPECT_EQ(parse_split(wire_of(201 - fixed), {cut}, lim).status, 431) << cut;
  // Many small fields count together, however they arrive.
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 40; ++i) many += "A: b\r\n";
  many += "\r\n";
  expect_refused(many, 431, lim);
  // A header that never ends is refused once it passes the limit, without waiting for more.
  request_parser p(lim);
  const std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(300, 'a');
  EXPECT_EQ(p.feed(as_bytes(endless)).status, 431);
}

TEST(HttpRequestParser, HeaderCountLimit) {
  parser_limits lim;
  lim.max_headers = 5;
  auto wire_of = [](int n) {
    std::string w = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < n; ++i) w += "H" + std::to_string(i) + ": v\r\n";
    return w + "\r\n";
  };
  EXPECT_EQ(parse_one(wire_of(5), lim).headers.size(), 5u);
  expect_refused(wire_of(6), 431, lim);
}

TEST(HttpRequestParser, TargetLimit) {
  parser_limits lim;
  lim.max_target_bytes = 100;
  lim.max_header_bytes = 1000;
  auto wire_of = [](std::size_t n) { return "GET /" + std::string(n - 1, 'x') + " HTTP/1.1\r\n\r\n"; };
  EXPECT_EQ(parse_one(wire_of(100), lim).target.size(), 100u);
  expect_refused(wire_of(101), 414, lim);
  // Longer than the whole header budget: still 414, and found before the line ends.
  expect_refused(wire_of(5000), 414, lim);
  request_parser p(lim);
  EXPECT_EQ(p.feed(as_bytes("GET /" + std::string(2000, 'x'))).status, 414);
}

TEST(HttpRequestParser, BodyLimitFromContentLength) {
  parser_limits lim;
  lim.max_body_bytes = 10;
  EXPECT_EQ(parse_one("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", lim).body, "0123456789");
  // Refused from the header alone: the body is never buffered.
  request_parser p(lim);
  const auto o = p.feed(as_bytes("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"));
  EXPECT_EQ(o.what, kind::error);
  EXPECT_EQ(o.status, 413);
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", 413, lim);
}

TEST(HttpRequestParser, BodyLimitChunked) {
  parser_limits lim;
  lim.max_body_bytes = 10;
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse_one(head + "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", lim).body, "0123456789");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n", 413, lim);
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n", 413, lim);
}

TEST(HttpRequestParser, TrailerAndChunkLineBounded) {
  parser_limits lim;
  lim.max_header_bytes = 100;
  request_parser p(lim);
  EXPECT_EQ(p.feed(as_bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")).what, kind::need_more);
  request_parser::outcome o;
  for (int i = 0; i < 100 && o.what != kind::error; ++i) o = p.feed(as_bytes("X-T: " + std::string(35, 'a')));
  EXPECT_EQ(o.what, kind::error);
  EXPECT_EQ(o.status, 431);
  // The same whether the long part arrives at once or in pieces (Beast alone would scan it unbounded).
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  expect_refused(head + "0\r\nX-T: " + std::string(200, 'a') + "\r\n\r\n", 431, lim);
  expect_refused(head + "3;ext=" + std::string(200, 'e') + "\r\nabc\r\n0\r\n\r\n", 431, lim);
  expect_refused(head + "3\r\nabc\r\n3;ext=" + std::string(200, 'e') + "\r\nabc\r\n0\r\n\r\n", 431, lim);
  // Just under the bound is fine.
  const std::string fits =
      head + "3;ext=" + std::string(80, 'e') + "\r\nabc\r\n0\r\nX-T: " + std::string(80, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_one(fits, lim).body, "abc");
}

TEST(HttpRequestParser, Malformed) {
  for (const char* wire : {"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n",
                           "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "G@T / HTTP/1.1\r\n\r\n",
                           "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                           "GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/x.y\r\n\r\n",
                           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"}) {
    const auto r = parse_whole(wire);
    EXPECT_TRUE(r.failed) << wire;
    EXPECT_EQ(r.status, 400) << wire << ": " << r.message;
    EXPECT_NE(r.message.find("malformed"), std::string::npos) << r.message;
  }
  expect_refused("GET / HTTP/1.1\r\nbad header\r\n\r\n", 400);
}

TEST(HttpRequestParser, UnsupportedVersion) {
  expect_refused("GET / HTTP/2.0\r\n\r\n", 505);
  expect_refused("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505);
  expect_refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
  expect_refused("GET / HTTP/0.9\r\n\r\n", 505);
  expect_refused("GET / FTP/1.1\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1x\r\n\r\n", 400);
  expect_refused("GET / HTTP/11.1\r\n\r\n", 400);
  expect_refused("GET / HTTP/2.0x\r\n\r\n", 505);  // Beast stops at the version number, and so do we
  EXPECT_EQ(parse_one("GET / HTTP/1.0\r\n\r\n").version, 10u);
}

TEST(HttpRequestParser, Methods) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
    EXPECT_EQ(parse_one(std::string(m) + " / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").method, m);
  expect_refused("BREW /pot HTTP/1.1\r\n\r\n", 501);
  expect_refused("CONNECT hub:443 HTTP/1.1\r\n\r\n", 501);
  expect_refused("TRACE / HTTP/1.1\r\n\r\n", 501);
  expect_refused("get / HTTP/1.1\r\n\r\n", 501);  // methods are case-sensitive
}

TEST(HttpRequestParser, TransferEncodingOtherThanChunked) {
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501);
}

TEST(HttpRequestParser, SmugglingContentLengthAndTransferEncoding) {
  for (const char* wire : {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n"}) {
    for (const auto& r : {parse_whole(wire), parse_bytewise(wire)}) {
      EXPECT_TRUE(r.failed) << wire;
      EXPECT_EQ(r.status, 400) << wire << r.message;
      EXPECT_TRUE(r.requests.empty());
    }
  }
  const auto both = parse_whole("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_NE(both.message.find("smuggling"), std::string::npos);
}

TEST(HttpRequestParser, KeepAliveRules) {
  EXPECT_FALSE(parse_one("GET / HTTP/1.0\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.1\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n").keep_alive);
}

TEST(HttpRequestParser, HeaderNamesCaseInsensitive) {
  const request r = parse_one("GET / HTTP/1.1\r\nX-Ms-Continuation: abc\r\nHOST: h\r\nhost: second\r\n\r\n");
  ASSERT_NE(r.find("x-ms-continuation"), nullptr);
  EXPECT_EQ(*r.find("X-MS-CONTINUATION"), "abc");
  EXPECT_EQ(*r.find("Host"), "h") << "first of several";
  EXPECT_EQ(r.headers[0].name, "X-Ms-Continuation") << "names keep their case";
  EXPECT_EQ(r.find("X-Missing"), nullptr);
  // Content-Length works in any case, too.
  EXPECT_EQ(parse_one("POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc").body, "abc");
}

TEST(HttpRequestParser, EmptyBodyPost) {
  request_parser p;
  const std::string wire = "POST /devices/dev1/messages/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
  const auto o = p.feed(as_bytes(wire));
  ASSERT_EQ(o.what, kind::complete);
  EXPECT_EQ(o.consumed, wire.size());
  EXPECT_TRUE(p.take().body.empty());
  // A POST without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3).
  EXPECT_TRUE(parse_one("POST / HTTP/1.1\r\n\r\n").body.empty());
}

TEST(HttpRequestParser, LargeBodyUnderLimit) {
  parser_limits lim;
  lim.max_body_bytes = 512 * 1024;
  std::string body(300 * 1024, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  const std::string wire =
      "POST /devices/d/messages/events HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
      body;
  EXPECT_EQ(parse_one(wire, lim).body, body);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 4096; i < wire.size(); i += 4096) cuts.push_back(i);
  const auto r = parse_split(wire, cuts, lim);
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].body, body);
  // The same body chunked.
  std::string chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::size_t i = 0; i < body.size(); i += 10000) {
    const std::string piece = body.substr(i, 10000);
    char size[16];
    std::snprintf(size, sizeof size, "%zx", piece.size());
    chunked += std::string(size) + "\r\n" + piece + "\r\n";
  }
  chunked += "0\r\n\r\n";
  EXPECT_EQ(parse_one(chunked, lim).body, body);
}

TEST(HttpRequestParser, InProgress) {
  request_parser p;
  EXPECT_FALSE(p.in_progress());
  EXPECT_EQ(p.feed(as_bytes("\r\n")).what, kind::need_more);
  EXPECT_FALSE(p.in_progress()) << "empty lines between requests are not a request";
  EXPECT_EQ(p.feed(as_bytes("G")).what, kind::need_more);
  EXPECT_TRUE(p.in_progress());
  EXPECT_EQ(p.feed(as_bytes("ET / HTTP/1.1\r\n")).what, kind::need_more);
  EXPECT_TRUE(p.in_progress());
  EXPECT_EQ(p.feed(as_bytes("\r\n")).what, kind::complete);
  EXPECT_FALSE(p.in_progress());
  p.take();
  EXPECT_FALSE(p.in_progress());
  EXPECT_EQ(p.feed(as_bytes("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")).what, kind::need_more);
  EXPECT_TRUE(p.in_progress()) << "body cut short";
  EXPECT_EQ(p.feed(as_bytes("cd")).what, kind::complete);
  EXPECT_FALSE(p.in_progress());
}

TEST(HttpRequestParser, EmptyFeeds) {
  request_parser p;
  auto o = p.feed({});
  EXPECT_EQ(o.what, kind::need_more);
  EXPECT_EQ(o.consumed, 0u);
  EXPECT_FALSE(p.in_progress());
  EXPECT_EQ(p.feed(as_bytes("GET / HT")).what, kind::need_more);
  EXPECT_EQ(p.feed({}).what, kind::need_more);
  EXPECT_EQ(p.feed({}).what, kind::need_more);
  EXPECT_EQ(p.feed(as_bytes("TP/1.1\r\n\r\n")).what, kind::complete);
  EXPECT_EQ(p.feed({}).what, kind::complete) << "until take()";
  p.take();
  EXPECT_EQ(p.feed(as_bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")).what, kind::need_more);
  EXPECT_EQ(p.feed({}).what, kind::need_more);
  EXPECT_EQ(p.feed(as_bytes("X: 1\r\n")).what, kind::need_more);
  EXPECT_EQ(p.feed({}).what, kind::need_more);
  o = p.feed(as_bytes("\r\nGET"));
  EXPECT_EQ(o.what, kind::complete);
  EXPECT_EQ(o.consumed, 2u);
}

TEST(HttpRequestParser, LeadingEmptyLinesIgnored) {
  const auto r = parse_whole("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(r.requests.size(), 1u);
  // A client that sends CRLF after a POST body (old browsers did) does not break the next request.
  const auto r2 = parse_whole("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET /b HTTP/1.1\r\n\r\n");
  ASSERT_EQ(r2.requests.size(), 2u) << r2.message;
  EXPECT_EQ(r2.requests[1].target, "/b");
}

TEST(HttpRequestParser, DeadAfterError) {
  request_parser p;
  const auto o = p.feed(as_bytes("BREW / HTTP/1.1\r\n\r\n"));
  ASSERT_EQ(o.what, kind::error);
  EXPECT_EQ(o.status, 501);
  const auto again = p.feed(as_bytes(get_req));
  EXPECT_EQ(again.what, kind::error);
  EXPECT_EQ(again.status, 501);
  EXPECT_EQ(again.consumed, 0u);
  EXPECT_FALSE(p.in_progress());
  EXPECT_THROW(p.take(), std::logic_error);
}

TEST(HttpRequestParser, TakeWithoutRequestThrows) {
  request_parser p;
  EXPECT_THROW(p.take(), std::logic_error);
  p.feed(as_bytes("GET / HT"));
  EXPECT_THROW(p.take(), std::logic_error);
}

TEST(HttpRequestParser, WebSocketUpgradeLeavesFrameBytes) {
  const std::string upgrade =
      "GET /$iothub/websocket HTTP/1.1\r\n"
      "Host: hub.local:443\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Origin: https://hub.local:443\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-Websocket-Version: 13\r\n"
      "Sec-Websocket-Protocol: mqtt\r\n\r\n";
  const std::string frame = "\x82\x82\x01\x02\x03\x04\xc1\x02";  // whatever the client sent right after
  request_parser p;
  const std::string wire = upgrade + frame;
  const auto o = p.feed(as_bytes(wire));
  ASSERT_EQ(o.what, kind::complete);
  EXPECT_EQ(o.consumed, upgrade.size()) << "bytes after the upgrade request belong to the WebSocket decoder";
  const request r = p.take();
  EXPECT_TRUE(r.is_websocket_upgrade());
  EXPECT_EQ(r.target, "/$iothub/websocket");
}

TEST(HttpRequestParser, IsWebSocketUpgrade) {
  auto upgrade = [](std::string_view method, std::string_view headers) {
    const std::string wire = std::string(method) + " /ws HTTP/1.1\r\n" + std::string(headers) + "\r\n";
    return parse_one(wire).is_websocket_upgrade();
  };
  EXPECT_TRUE(upgrade("GET", "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"));
  EXPECT_TRUE(upgrade("GET", "upgrade: websocket\r\nconnection: upgrade\r\n"));
  EXPECT_FALSE(upgrade("GET", "Upgrade: websocket\r\n"));
  EXPECT_FALSE(upgrade("GET", "Connection: Upgrade\r\n"));
  EXPECT_FALSE(upgrade("GET", "Upgrade: h2c\r\nConnection: Upgrade\r\n"));
  EXPECT_FALSE(upgrade("POST", "Upgrade: websocket\r\nConnection: Upgrade\r\n"));
}

TEST(HttpRequestParser, MoveKeepsState) {
  request_parser p;
  EXPECT_EQ(p.feed(as_bytes("POST / HTTP/1.1\r\nContent-Le")).what, kind::need_more);
  request_parser q(std::move(p));
  EXPECT_EQ(q.feed(as_bytes("ngth: 2\r\n\r\nab")).what, kind::complete);
  EXPECT_EQ(q.take().body, "ab");
  request_parser r;
  r = std::move(q);
  EXPECT_EQ(r.feed(as_bytes(get_req)).what, kind::complete);
}

TEST(HttpRequestParser, ObsFoldAndWhitespace) {
  const request r = parse_one("GET / HTTP/1.1\r\nX-A:   padded value  \r\nX-B:\r\n\r\n");
  EXPECT_EQ(*r.find("x-a"), "padded value");
  EXPECT_EQ(*r.find("x-b"), "");
}

}  // namespace
}  // namespace fleethub::proto::http

namespace fleethub::proto::http {
namespace {

// "Expect: 100-continue" is reported once the header is in and the body is not; never for a request
// without it, nor once the request is complete.
TEST(HttpRequestParser, ExpectsContinueBetweenHeaderAndBody) {
  request_parser p;
  const std::string head =
      "POST /devices/d1/messages/events HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
  EXPECT_FALSE(p.expects_continue());
  auto o = p.feed(as_bytes(std::string_view(head).substr(0, 20)));
  EXPECT_EQ(o.what, request_parser::outcome::kind::need_more);
  EXPECT_FALSE(p.expects_continue());  // header not complete yet
  o = p.feed(as_bytes(std::string_view(head).substr(20)));
  EXPECT_EQ(o.what, request_parser::outcome::kind::need_more);
  EXPECT_TRUE(p.expects_continue());
  o = p.feed(as_bytes("hello"));
  ASSERT_EQ(o.what, request_parser::outcome::kind::complete);
  EXPECT_FALSE(p.expects_continue());
  EXPECT_EQ(p.take().body, "hello");

  request_parser q;
  o = q.feed(as_bytes("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"));
  EXPECT_EQ(o.what, request_parser::outcome::kind::need_more);
  EXPECT_FALSE(q.expects_continue());
}

}  // namespace
}  // namespace fleethub::proto::http
