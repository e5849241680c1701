// HTTP/1.1 request and response values shared by the Sans-I/O parser, the REST API and the net driver.
// Plain data; header names keep the case they were sent in and compare case-insensitively.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/encoding.hpp"

namespace fleethub::proto::http {

struct header {
  std::string name;
  std::string value;
};

struct request {
  std::string method;          // as sent, e.g. "GET" (methods are case-sensitive in HTTP)
  std::string target;          // the raw request-target, e.g. "/devices/d%231?api-version=2021-04-12"
  unsigned version = 11;       // 10 or 11
  std::vector<header> headers;
  std::string body;            // de-chunked
  bool keep_alive = true;      // from the version and the Connection header

  // First header with this name (case-insensitive), or nullptr.
  const std::string* find(std::string_view name) const;
  // A WebSocket upgrade request (GET, Connection: upgrade, Upgrade: websocket).
  bool is_websocket_upgrade() const;
};

struct response {
  int status = 200;
  std::vector<header> headers;  // Content-Length is added by serialize(); do not set it here
  std::string body;

  // Replaces a header of the same name (case-insensitive) or appends.
  void set(std::string name, std::string value);
  const std::string* find(std::string_view name) const;
};

// Standard reason phrase ("OK", "No Content", ...); "Unknown" for codes it does not know.
const char* reason_phrase(int status);

// Serializes a response: status line, headers, Content-Length (omitted for 1xx, 204 and 304), a
// "Connection: close" header when !keep_alive, then the body (not for HEAD requests or 204/304).
std::string serialize(const response& r, bool keep_alive, bool head_request = false);

using fleethub::iequals;  // ASCII case-insensitive (core/encoding.hpp)

}  // namespace fleethub::proto::http
