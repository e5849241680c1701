// Shared access signature tokens (wire-protocol.md §2). Parsing and verification are pure: the caller
// passes `now` and the candidate keys. Thread-safe.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/result.hpp"

namespace fleethub::hub {

struct sas_token {
  std::string sr;          // exactly as received (still percent-encoded if the SDK encoded it)
  std::string resource;    // percent-decoded sr
  std::string signature;   // percent-decoded base64 signature
  std::int64_t expiry = 0; // unix seconds
  std::string expiry_text; // se exactly as received (signed verbatim); empty means std::to_string(expiry)
  std::string key_name;    // skn; empty when absent or empty
};

// Parses "SharedAccessSignature sr=..&sig=..&se=..[&skn=..]" (any field order). Errors: invalid_argument
// with a message naming the missing or malformed field.
result<sas_token> parse_sas_token(std::string_view token);

// Splits a decoded resource "host[:port]/devices/d[/modules/m]" into parts.
struct sas_resource {
  std::string host;        // without port, lowercased
  std::string device_id;   // empty for a hub-level resource
  std::string module_id;
};
result<sas_resource> parse_sas_resource(std::string_view resource);

// True when `scope` (a token resource) covers `target` segment by segment, case-insensitively on the host:
// "h/devices/a" covers "h/devices/a/modules/m" but not "h/devices/ab".
bool resource_covers(std::string_view scope, std::string_view target);

// Verifies the signature against each base64 key in `keys` using every accepted candidate string-to-sign
// (literal sr, encodeURIComponent upper/lower hex, lowercased). Checks expiry against `now_unix_s`.
// Errors: unauthorized with a message that says which check failed ("token expired at ...", "signature mismatch").
result<void> verify_sas_token(const sas_token& token, const std::vector<std::string>& keys, std::int64_t now_unix_s);

// Builds a token the way pydev does (sr = percent-encoded resource), for the CLI, tests and benchmarks.
std::string make_sas_token(std::string_view resource, std::string_view key_base64, std::int64_t expiry_unix_s,
                           std::string_view key_name = {});

}  // namespace fleethub::hub
