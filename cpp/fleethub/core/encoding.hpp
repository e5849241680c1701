// Text encodings used on the wire: base64, percent-encoding, ISO-8601 UTC timestamps.
// Pure functions; thread-safe.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fleethub/core/bytes.hpp"

namespace fleethub {

// ASCII case-insensitive equality (header names, URL segments, SAS fields, query names); locale-free.
bool iequals(std::string_view a, std::string_view b);

std::string base64_encode(bytes_view data);
// Standard alphabet, padding optional; nullopt on any invalid character.
std::optional<bytes> base64_decode(std::string_view text);

// Lenient percent-decoding: a '%' not followed by two hex digits is kept literally (csdk sends raw values).
// '+' is NOT decoded to space (IoT Hub property bags use %20).
std::string percent_decode(std::string_view text);
// Encodes every byte except unreserved characters [A-Za-z0-9-._~]; `upper_hex` picks %2F vs %2f.
std::string percent_encode(std::string_view text, bool upper_hex = true);

// "2024-01-02T03:04:05.678Z" (millisecond precision, always UTC, always 'Z').
std::string format_iso8601(std::int64_t unix_ms);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)"; nullopt when malformed.
std::optional<std::int64_t> parse_iso8601(std::string_view text);

}  // namespace fleethub
