// HTTP/1.1 message helpers: case-insensitive header lookup, the WebSocket-upgrade test and response
// serialization. Pure functions over the plain structs in message.hpp.
#include "fleethub/proto/http/message.hpp"

#include <string>
#include <string_view>
#include <utility>

namespace fleethub::proto::http {
namespace {

const std::string* find_in(const std::vector<header>& hs, std::string_view name) {
  for (const auto& h : hs)
    if (iequals(h.name, name)) return &h.value;
  return nullptr;
}

// True when any header `name` (there may be several) holds `token` in its comma-separated list.
bool has_token(const std::vector<header>& hs, std::string_view name, std::string_view token) {
  for (const auto& h : hs) {
    if (!iequals(h.name, name)) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      const std::size_t comma = v.find(',');
      std::string_view item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (iequals(item, token)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

// Header names and values come from the router, which may echo client data (a decoded device id can hold
// "%0D%0A"): a CR or LF must never reach the wire, or a client could inject headers (response splitting).
void append_clean(std::string& out, std::string_view s) {
  for (char c : s) out.push_back((c == '\r' || c == '\n' || c == '\0') ? ' ' : c);
}

}  // namespace


const std::string* request::find(std::string_view name) const { return find_in(headers, name); }

bool request::is_websocket_upgrade() const {
  return method == "GET" && has_token(headers, "Connection", "upgrade") &&
         has_token(headers, "Upgrade", "websocket");
}

void response::set(std::string name, std::string value) {
  for (auto& h : headers) {
    if (iequals(h.name, name)) {
      h.value = std::move(value);
      return;
    }
  }
  headers.push_back({std::move(name), std::move(value)});
}

const std::string* response::find(std::string_view name) const { return find_in(headers, name); }

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize(const response& r, bool keep_alive, bool head_request) {
  // RFC 9110 §6.4.1 / §8.6: 1xx, 204 and 304 have no content and 1xx/204 no Content-Length.
  const bool no_content = (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304;
  std::string out;
  out.reserve(64 + r.headers.size() * 48 + (no_content || head_request ? 0 : r.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\n";
  for (const auto& h : r.headers) {
    // serialize() owns framing: a stray Content-Length would contradict the body, and a Connection header
    // other than ours would contradict "close".
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Transfer-Encoding")) continue;
    if (!keep_alive && iequals(h.name, "Connection")) continue;
    append_clean(out, h.name);
    out += ": ";
    append_clean(out, h.value);
    out += "\r\n";
  }
  if (!no_content) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (!no_content && !head_request) out += r.body;
  return out;
}

}  // namespace fleethub::proto::http
