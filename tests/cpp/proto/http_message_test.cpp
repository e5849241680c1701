// Response serialization and the header helpers of message.hpp.
#include "fleethub/proto/http/message.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace fleethub::proto::http {
namespace {

TEST(HttpMessage, SerializeOk) {
  response r;
  r.status = 200;
  r.headers.push_back({"Content-Type", "application/json; charset=utf-8"});
  r.body = R"({"a":1})";
  EXPECT_EQ(serialize(r, true),
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            "Content-Length: 7\r\n"
            "\r\n"
            R"({"a":1})");
}

TEST(HttpMessage, SerializeClose) {
  response r;
  r.status = 404;
  r.body = "nope";
  EXPECT_EQ(serialize(r, false), "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
  // Our own Connection header wins over one the caller set.
  r.headers.push_back({"connection", "keep-alive"});
  EXPECT_EQ(serialize(r, false), "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
}

TEST(HttpMessage, SerializeEmptyBody) {
  response r;
  r.status = 200;
  EXPECT_EQ(serialize(r, true), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

TEST(HttpMessage, NoContentStatuses) {
  response r;
  r.status = 204;
  r.body = "ignored";
  r.headers.push_back({"ETag", "\"lock\""});
  EXPECT_EQ(serialize(r, true), "HTTP/1.1 204 No Content\r\nETag: \"lock\"\r\n\r\n");
  r.status = 304;
  EXPECT_EQ(serialize(r, true), "HTTP/1.1 304 Not Modified\r\nETag: \"lock\"\r\n\r\n");
  response up;
  up.status = 101;
  up.headers = {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}};
  EXPECT_EQ(serialize(up, true),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  response cont;
  cont.status = 100;
  EXPECT_EQ(serialize(cont, true), "HTTP/1.1 100 Continue\r\n\r\n");
}

TEST(HttpMessage, HeadRequest) {
  response r;
  r.status = 200;
  r.body = "0123456789";
  EXPECT_EQ(serialize(r, true, true), "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
      << "length of the GET body, no body";
}

TEST(HttpMessage, FramingHeadersAreOurs) {
  response r;
  r.status = 200;
  r.body = "abc";
  r.headers.push_back({"content-length", "999"});
  r.headers.push_back({"Transfer-Encoding", "chunked"});
  EXPECT_EQ(serialize(r, true), "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
}

TEST(HttpMessage, NoHeaderInjection) {
  response r;
  r.status = 201;
  r.headers.push_back({"Location", "/devices/a\r\nSet-Cookie: x=1"});
  const std::string wire = serialize(r, true);
  EXPECT_EQ(wire, "HTTP/1.1 201 Created\r\nLocation: /devices/a  Set-Cookie: x=1\r\nContent-Length: 0\r\n\r\n");
}

TEST(HttpMessage, ReasonPhrases) {
  const std::pair<int, const char*> known[] = {
      {100, "Continue"}, {101, "Switching Protocols"}, {200, "OK"}, {201, "Created"}, {202, "Accepted"},
      {204, "No Content"}, {304, "Not Modified"}, {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
      {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"}, {409, "Conflict"},
      {412, "Precondition Failed"}, {413, "Payload Too Large"}, {414, "URI Too Long"},
      {415, "Unsupported Media Type"}, {426, "Upgrade Required"}, {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"}, {501, "Not Implemented"},
      {503, "Service Unavailable"}, {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"}};
  for (const auto& [code, text] : known) EXPECT_STREQ(reason_phrase(code), text) << code;
  EXPECT_STREQ(reason_phrase(299), "Unknown");
  response r;
  r.status = 299;
  EXPECT_EQ(serialize(r, true).substr(0, 25), "HTTP/1.1 299 Unknown\r\nCon");
}

TEST(HttpMessage, ResponseSetAndFind) {
  response r;
  r.set("Content-Type", "text/plain");
  r.set("ETag", "\"1\"");
  r.set("content-type", "application/json");
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0].name, "Content-Type") << "replaced in place, first spelling kept";
  EXPECT_EQ(*r.find("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(*r.find("etag"), "\"1\"");
  EXPECT_EQ(r.find("x"), nullptr);
}

TEST(HttpMessage, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("abc", "abd"));
  EXPECT_FALSE(iequals("abc", "ab"));
  EXPECT_FALSE(iequals("\xc3\xa9", "\xc3\x89")) << "ASCII only";
}

TEST(HttpMessage, RequestFind) {
  request q;
  q.headers = {{"Host", "a"}, {"host", "b"}};
  EXPECT_EQ(*q.find("HOST"), "a");
  EXPECT_EQ(q.find("Hos"), nullptr);
}

}  // namespace
}  // namespace fleethub::proto::http
