// Binary record codec for `message`, used by the store (event log, queues). Records start with a version
// byte so that later versions can read old data; decode rejects unknown versions and truncated input.
#pragma once
#include "fleethub/core/bytes.hpp"
#include "fleethub/core/message.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub {

inline constexpr std::uint8_t message_record_version = 1;

bytes encode_message(const message& m);
void encode_message_into(const message& m, bytes& out);  // appends
result<message> decode_message(bytes_view record);

}  // namespace fleethub
