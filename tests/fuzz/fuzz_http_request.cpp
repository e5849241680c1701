// Fuzzes the HTTP request path the way the net driver uses it: the request parser (fed whole, byte by byte
// and in data-chosen pieces), then parse_target, the WebSocket handshake and serialize() on every request.
// Checks, besides memory safety and Beast's own debug assertions:
//  - consumed <= size always, and need_more consumed everything;
//  - every chunking yields the same requests; where one chunking ends in an error and another does not,
//    the other is waiting in the middle of a request (Beast may notice a bad start line only once the
//    header is complete, so a truncated bad request can still be "in progress" in small pieces);
//  - refusals use the documented statuses, and a serialized response is framed as promised.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/proto/http/request_parser.hpp"
#include "fleethub/proto/http/target.hpp"
#include "fleethub/proto/http/websocket.hpp"

using namespace fleethub;
using namespace fleethub::proto::http;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// Small limits, so the fuzzer reaches every refusal.
parser_limits small_limits() {
  parser_limits lim;
  lim.max_header_bytes = 1024;
  lim.max_headers = 16;
  lim.max_target_bytes = 256;
  lim.max_body_bytes = 2048;
  return lim;
}

struct run_result {
  std::vector<request> requests;
  int status = 0;  // 0: no error
  bool in_progress = false;
};

run_result parse_in_chunks(bytes_view data, std::size_t chunk) {
  request_parser p(small_limits());
  run_result r;
  for (std::size_t off = 0; off < data.size() && r.status == 0; off += chunk) {
    bytes_view in = data.subspan(off, std::min(chunk, data.size() - off));
    for (;;) {
      const auto o = p.feed(in);
      check(o.consumed <= in.size());
      if (o.what == request_parser::outcome::kind::complete) {
        r.requests.push_back(p.take());
        in = in.subspan(o.consumed);
        if (in.empty()) break;
      } else if (o.what == request_parser::outcome::kind::need_more) {
        check(o.consumed == in.size());
        const auto empty = p.feed({});  // an empty feed changes nothing
        check(empty.what == request_parser::outcome::kind::need_more && empty.consumed == 0);
        break;
      } else {
        check(!o.message.empty());
        r.status = o.status;
        break;
      }
    }
  }
  if (r.status == 0) r.in_progress = p.in_progress();
  return r;
}

bool same(const request& a, const request& b) {
  if (a.method != b.method || a.target != b.target || a.version != b.version || a.body != b.body ||
      a.keep_alive != b.keep_alive || a.headers.size() != b.headers.size())
    return false;
  for (std::size_t i = 0; i < a.headers.size(); ++i)
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) return false;
  return true;
}

void check_equivalent(const run_result& a, const run_result& b) {
  check(a.requests.size() == b.requests.size());
  for (std::size_t i = 0; i < a.requests.size(); ++i) check(same(a.requests[i], b.requests[i]));
  if ((a.status == 0) != (b.status == 0)) check(a.status == 0 ? a.in_progress : b.in_progress);
}

void use_request(const request& req) {
  check(req.version == 10 || req.version == 11);
  check(req.body.size() <= small_limits().max_body_bytes);
  check(req.target.size() <= small_limits().max_target_bytes);
  auto t = parse_target(req.target);
  if (t) {
    for (const auto& s : t->segments) check(!s.empty() && s.find('\0') == std::string::npos);
    for (const auto& [k, v] : t->query) (void)t->query_value(k);
  }
  response resp;
  resp.status = t ? 200 : 400;
  if (req.is_websocket_upgrade()) {
    auto hs = websocket_handshake(req, "mqtt");
    if (hs) {
      resp = *hs;
      check(resp.status == 101);
    }
  }
  // Echo request data into a header and the body, as a careless router might: framing must hold.
  resp.set("X-Echo", req.target);
  if (const auto* ct = req.find("content-type")) resp.set("Content-Type", *ct);
  resp.body = req.body;
  const bool head = req.method == "HEAD";
  const std::string wire = serialize(resp, req.keep_alive, head);
  check(wire.rfind("HTTP/1.1 ", 0) == 0);
  const std::size_t end = wire.find("\r\n\r\n");
  check(end != std::string::npos);
  const std::string_view header(wire.data(), end + 2);
  // Every header line is "name: value"; no line break was smuggled in.
  std::size_t lines = 0;
  for (std::size_t pos = header.find("\r\n"); pos != std::string_view::npos; pos = header.find("\r\n", pos + 2))
    ++lines;
  std::size_t kept = 0;  // serialize() replaces the caller's Connection header when it closes
  for (const auto& h : resp.headers) kept += req.keep_alive || !iequals(h.name, "Connection");
  check(lines == 1 + kept + (resp.status == 101 ? 0 : 1) + (req.keep_alive ? 0 : 1));
  const bool bodyless = resp.status == 101 || head;
  check(wire.size() == end + 4 + (bodyless ? 0 : resp.body.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bytes_view in(data, size);
  const auto whole = parse_in_chunks(in, size == 0 ? 1 : size);
  const auto bytewise = parse_in_chunks(in, 1);
  const auto pieces = parse_in_chunks(in, 1 + (size > 0 ? data[size / 2] % 61 : 0));
  check_equivalent(whole, bytewise);
  check_equivalent(whole, pieces);
  for (const auto* r : {&whole, &bytewise, &pieces}) {
    const int s = r->status;
    check(s == 0 || s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505);
  }
  for (const auto& req : whole.requests) use_request(req);
  return 0;
}
