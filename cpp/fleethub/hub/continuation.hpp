// Query continuation tokens (semantics.md §2.4): an opaque, URL-safe base64 cursor that says where the next
// page of a query starts, bound to the query text and signed with HMAC-SHA256 under a random secret that
// lives only in this process. A client can hand a token back but cannot forge, alter or reuse it for another
// query; a token from an earlier process (other secret) or past its expiry is refused.
// Thread safety: a codec is immutable after construction; encode/decode may run on any thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::hub {

// Where a query stopped.
struct query_cursor {
  std::uint64_t query_hash = 0;  // query_hash() of the text the token belongs to
  std::int64_t expiry_s = 0;     // unix seconds
  std::uint64_t emitted = 0;     // results (rows) returned by the earlier pages
  std::string last_key;          // store key of the last document returned (scans); empty for aggregates
};

// First 8 bytes of SHA-256 of the query text, as an integer.
std::uint64_t query_hash(std::string_view text);

class continuation_codec {
 public:
  continuation_codec();  // random 32-byte secret

  std::string encode(const query_cursor& c) const;
  // Errors: invalid_argument for a malformed, tampered or foreign token, one for another query
  // (hash mismatch), or an expired one; the message says which and what to do.
  result<query_cursor> decode(std::string_view token, std::uint64_t expected_hash, std::int64_t now_s) const;

 private:
  bytes secret_;
};

}  // namespace fleethub::hub
