#include "fleethub/hub/continuation.hpp"

#include <algorithm>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"
#include "fleethub/core/record_io.hpp"

namespace fleethub::hub {

namespace {

constexpr std::uint8_t token_version = 1;
constexpr std::size_t mac_size = 16;  // truncated HMAC-SHA256: 128 bits is plenty against forgery

// URL-safe base64 without padding: tokens travel in a header and some clients put them in URLs.
std::string to_url_safe(std::string s) {
  for (char& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::string from_url_safe(std::string_view in) {
  std::string s(in);
  for (char& c : s) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
  }
  while (s.size() % 4 != 0) s.push_back('=');
  return s;
}

error bad_token(std::string why) {
  return make_error(errc::invalid_argument, "invalid continuation token: " + why +
                                                "; run the query again without a continuation token");
}

}  // namespace

std::uint64_t query_hash(std::string_view text) {
  auto h = sha256(as_bytes(text));
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | h[static_cast<std::size_t>(i)];
  return v;
}

continuation_codec::continuation_codec() : secret_(random_bytes(32)) {}

std::string continuation_codec::encode(const query_cursor& c) const {
  bytes payload = record_writer(token_version).u64(c.query_hash).i64(c.expiry_s).u64(c.emitted).str(c.last_key).take();
  auto mac = hmac_sha256(secret_, payload);
  payload.insert(payload.end(), mac.begin(), mac.begin() + mac_size);
  return to_url_safe(base64_encode(payload));
}

result<query_cursor> continuation_codec::decode(std::string_view token, std::uint64_t expected_hash,
                                                std::int64_t now_s) const {
  // Clients sometimes quote header values; tolerate it.
  if (token.size() >= 2 && token.front() == '"' && token.back() == '"') token = token.substr(1, token.size() - 2);
  if (token.size() > 4096) return bad_token("it is too long");
  auto raw = base64_decode(from_url_safe(token));
  if (!raw || raw->size() <= mac_size) return bad_token("it is not one this hub issued");
  bytes_view body(raw->data(), raw->size() - mac_size);
  bytes_view mac(raw->data() + body.size(), mac_size);
  auto want = hmac_sha256(secret_, body);
  if (!constant_time_equal(mac, bytes_view(want.data(), mac_size)))
    return bad_token("its signature does not match (altered, or issued before the hub restarted)");
  record_reader r(body);
  query_cursor c;
  c.query_hash = r.u64();
  c.expiry_s = r.i64();
  c.emitted = r.u64();
  c.last_key = r.str();
  if (!r.ok() || !r.at_end() || r.version() != token_version) return bad_token("it is malformed");
  if (c.query_hash != expected_hash) return bad_token("it belongs to a different query text");
  if (c.expiry_s <= now_s) return bad_token("it has expired");
  return c;
}

}  // namespace fleethub::hub
