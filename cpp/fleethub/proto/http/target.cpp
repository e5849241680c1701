// Origin-form request-target splitting. Strict percent-decoding (unlike core's lenient percent_decode, which
// serves MQTT property bags): a REST path is routed on its decoded segments, so an ambiguous escape is refused
// rather than guessed. Dot-segments ("." and "..") are kept as literal segments: nothing maps them to files.
#include "fleethub/proto/http/target.hpp"

#include <string>
#include <string_view>

#include "fleethub/proto/http/message.hpp"

namespace fleethub::proto::http {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A piece of the target for an error message, cut short: targets may be kilobytes long.
std::string excerpt(std::string_view s) {
  return "\"" + std::string(s.substr(0, 64)) + (s.size() > 64 ? "...\"" : "\"");
}

// Decodes %XX escapes; '+' stays '+'. `what` names the part for the error message.
result<std::string> decode(std::string_view s, std::string_view what) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (s.size() - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
      return make_error(errc::invalid_argument, "bad percent-escape in request-target " + std::string(what) + " " +
                                                    excerpt(s) + ": '%' must be followed by two hex digits");
    out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
    i += 2;
  }
  if (out.find('\0') != std::string::npos)
    return make_error(errc::invalid_argument,
                      "request-target " + std::string(what) + " " + excerpt(s) + " decodes to a NUL byte");
  return out;
}

}  // namespace

const std::string* target::query_value(std::string_view key) const {
  for (const auto& [k, v] : query)
    if (iequals(k, key)) return &v;
  return nullptr;
}

result<target> parse_target(std::string_view raw) {
  if (raw.empty() || raw.front() != '/')
    return make_error(errc::invalid_argument,
                      "request-target " + excerpt(raw) + " is not origin-form (must start with '/')");
  target t;
  const std::size_t qmark = raw.find('?');
  std::string_view path = raw.substr(0, qmark);
  std::string_view query = qmark == std::string_view::npos ? std::string_view{} : raw.substr(qmark + 1);

  while (!path.empty()) {
    const std::size_t slash = path.find('/');
    const std::string_view seg = path.substr(0, slash);
    if (!seg.empty()) {
      auto d = decode(seg, "segment");
      if (!d) return d.err();
      t.segments.push_back(std::move(*d));
    }
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }

  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    if (!item.empty()) {  // "a=1&&b=2" and a trailing '&' carry no parameter
      const std::size_t eq = item.find('=');
      auto k = decode(item.substr(0, eq), "query key");
      if (!k) return k.err();
      auto v = decode(eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1), "query value");
      if (!v) return v.err();
      t.query.emplace_back(std::move(*k), std::move(*v));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return t;
}

}  // namespace fleethub::proto::http
