#include "fleethub/hub/sas.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {
namespace {

constexpr std::string_view sas_prefix = "SharedAccessSignature ";

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}


std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> parse_unsigned(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    if (v > (std::numeric_limits<std::int64_t>::max() - (c - '0')) / 10) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// "host[:port]" -> host; brackets kept for an IPv6 literal. nullopt when the port is not numeric.
std::optional<std::string_view> strip_port(std::string_view host) {
  std::size_t colon;
  if (!host.empty() && host.front() == '[') {
    std::size_t close = host.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    if (close + 1 == host.size()) return host;
    if (host[close + 1] != ':') return std::nullopt;
    colon = close + 1;
  } else {
    colon = host.find(':');
    if (colon == std::string_view::npos) return host;
  }
  std::string_view port = host.substr(colon + 1);
  if (port.empty() || !parse_unsigned(port) || port.size() > 5) return std::nullopt;
  return host.substr(0, colon);
}

error unauthorized(std::string msg) { return make_error(errc::unauthorized, std::move(msg)); }

}  // namespace

result<sas_token> parse_sas_token(std::string_view token) {
  token = trim_spaces(token);
  if (token.substr(0, sas_prefix.size()) != sas_prefix) {
    return make_error(errc::invalid_argument, "SAS token must start with 'SharedAccessSignature '");
  }
  token.remove_prefix(sas_prefix.size());
  if (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
    return make_error(errc::invalid_argument, "SAS token must have exactly one space after 'SharedAccessSignature'");
  }

  sas_token out;
  bool have_sr = false, have_sig = false, have_se = false, have_skn = false;
  while (!token.empty()) {
    std::size_t amp = token.find('&');
    std::string_view field = token.substr(0, amp);
    token = amp == std::string_view::npos ? std::string_view{} : token.substr(amp + 1);
    if (field.empty()) continue;
    std::size_t eq = field.find('=');
    std::string_view name = field.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view{} : field.substr(eq + 1);

    auto once = [&](bool& seen) -> bool {
      if (seen) return false;
      seen = true;
      return true;
    };
    // A repeated field is ambiguous (which one was signed?), so it is rejected rather than last-wins.
    auto duplicate = [&] {
      return make_error(errc::invalid_argument, "SAS token has more than one '" + std::string(name) + "' field");
    };
    if (name == "sr") {
      if (!once(have_sr)) return duplicate();
      out.sr = std::string(value);
    } else if (name == "sig") {
      if (!once(have_sig)) return duplicate();
      out.signature = percent_decode(value);
    } else if (name == "se") {
      if (!once(have_se)) return duplicate();
      auto se = parse_unsigned(value);
      if (!se) {
        return make_error(errc::invalid_argument,
                          "SAS token field 'se' must be a decimal unix time in seconds (got '" +
                              std::string(value.substr(0, 32)) + "')");
      }
      out.expiry = *se;
      out.expiry_text = std::string(value);
    } else if (name == "skn") {
      if (!once(have_skn)) return duplicate();
      out.key_name = percent_decode(value);  // an empty skn (old cutil, csdk HTTP) means "no policy"
    }
    // Unknown fields are ignored, as the SDK parsers do.
  }
  if (!have_sr || out.sr.empty()) return make_error(errc::invalid_argument, "SAS token is missing field 'sr'");
  if (!have_sig || out.signature.empty())
    return make_error(errc::invalid_argument, "SAS token is missing field 'sig'");
  if (!have_se) return make_error(errc::invalid_argument, "SAS token is missing field 'se'");
  out.resource = percent_decode(out.sr);
  return out;
}

result<sas_resource> parse_sas_resource(std::string_view resource) {
  auto bad = [&](std::string_view why) {
    return make_error(errc::invalid_argument, "SAS resource '" + std::string(resource.substr(0, 300)) + "' " +
                                                  std::string(why) +
                                                  " (expected host[/devices/{id}[/modules/{id}]])");
  };
  std::size_t slash = resource.find('/');
  std::string_view host_port = resource.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : resource.substr(slash);
  auto host = strip_port(host_port);
  if (!host) return bad("has a malformed port");
  if (host->empty()) return bad("has no host name");

  sas_resource out;
  out.host = lowercase(*host);
  if (path.empty()) return out;

  // Takes "/<literal>/<segment>" off the front of `path`.
  auto take = [&path](std::string_view literal, std::string& seg) -> bool {
    if (path.size() < literal.size() + 2 || path[0] != '/' || path.substr(1, literal.size()) != literal ||
        path[literal.size() + 1] != '/')
      return false;
    path.remove_prefix(literal.size() + 2);
    std::size_t next = path.find('/');
    seg = std::string(path.substr(0, next));
    path = next == std::string_view::npos ? std::string_view{} : path.substr(next);
    return !seg.empty();
  };
  if (!take("devices", out.device_id)) return bad("does not name a device after the host");
  if (path.empty()) return out;
  if (!take("modules", out.module_id)) return bad("has an unexpected path after the device id");
  if (!path.empty()) return bad("has an unexpected path after the module id");
  return out;
}

bool resource_covers(std::string_view scope, std::string_view target) {
  auto split = [](std::string_view r) {
    std::size_t slash = r.find('/');
    std::string_view host = r.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : r.substr(slash);
    if (auto h = strip_port(host)) host = *h;
    return std::pair{host, path};
  };
  auto [scope_host, scope_path] = split(scope);
  auto [target_host, target_path] = split(target);
  if (!iequals(scope_host, target_host)) return false;
  while (!scope_path.empty() && scope_path.back() == '/') scope_path.remove_suffix(1);
  if (scope_path.empty()) return true;  // hub-level scope covers everything on that host
  if (target_path.substr(0, scope_path.size()) != scope_path) return false;
  // Segment boundary: "/devices/a" covers "/devices/a/modules/m" but not "/devices/ab".
  return target_path.size() == scope_path.size() || target_path[scope_path.size()] == '/';
}

result<void> verify_sas_token(const sas_token& token, const std::vector<std::string>& keys, std::int64_t now_unix_s) {
  if (token.expiry <= now_unix_s) {
    constexpr std::int64_t max_s = std::numeric_limits<std::int64_t>::max() / 1000;
    std::int64_t ms = token.expiry > max_s ? max_s * 1000 : token.expiry * 1000;
    return unauthorized("SAS token expired at " + format_iso8601(ms));
  }
  auto sig = base64_decode(token.signature);
  if (!sig || sig->size() != 32) return unauthorized("SAS signature is not a base64 HMAC-SHA256 value");

  // Each SDK signs its own literal sr; the encoded variants are a safety net (wire-protocol.md §2.2).
  const std::string se = token.expiry_text.empty() ? std::to_string(token.expiry) : token.expiry_text;
  std::vector<std::string> candidates;
  auto add = [&](std::string sr) {
    sr += '\n';
    sr += se;
    if (std::find(candidates.begin(), candidates.end(), sr) == candidates.end()) candidates.push_back(std::move(sr));
  };
  add(token.sr);
  add(percent_encode(token.resource, true));
  add(percent_encode(token.resource, false));
  add(percent_encode(lowercase(token.resource), true));

  for (const auto& key_b64 : keys) {
    auto key = base64_decode(key_b64);
    if (!key || key->empty()) continue;  // a malformed stored key can never match
    for (const auto& c : candidates) {
      auto mac = hmac_sha256(*key, as_bytes(c));
      if (constant_time_equal(mac, *sig)) return {};
    }
  }
  return unauthorized("SAS signature does not match the device or policy key");
}

std::string make_sas_token(std::string_view resource, std::string_view key_base64, std::int64_t expiry_unix_s,
                           std::string_view key_name) {
  auto key = base64_decode(key_base64);
  if (!key) throw std::invalid_argument("make_sas_token: key is not valid base64");
  std::string sr = percent_encode(resource);
  std::string se = std::to_string(expiry_unix_s);
  std::string to_sign = sr + "\n" + se;
  auto mac = hmac_sha256(*key, as_bytes(to_sign));
  std::string token = std::string(sas_prefix) + "sr=" + sr + "&sig=" + percent_encode(base64_encode(mac)) + "&se=" + se;
  if (!key_name.empty()) token += "&skn=" + percent_encode(key_name);
  return token;
}

}  // namespace fleethub::hub
