// Binary record codec for `message`, used by the store (event log, queues). Records start with a version
// byte so that later versions can read old data; decode rejects unknown versions and truncated input.
#pragma once
#include <optional>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/message.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub {

// 2: adds the connection's auth kind and generation id. Version 1 records still decode (auth none).
// 3: adds the message source (telemetry or a system event kind) right after the version byte, so a reader
// can filter by source without decoding the record. Versions 1 and 2 decode as telemetry.
inline constexpr std::uint8_t message_record_version = 3;

bytes encode_message(const message& m);
void encode_message_into(const message& m, bytes& out);  // appends
result<message> decode_message(bytes_view record);
// Everything but the properties (left empty): for consumers that only need ids, times and bodies.
result<message> decode_message_without_properties(bytes_view record);
// The record's source from its first bytes; nullopt when the record is not a message record.
std::optional<message_source> peek_message_source(bytes_view record);

}  // namespace fleethub
