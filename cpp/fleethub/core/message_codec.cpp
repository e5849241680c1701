// Record layout (version 3), all integers little-endian, lengths as LEB128 varints:
//   u8 version | u8 source (version 3+) | str device_id | str module_id | i64 enqueued_time_ms (8 bytes LE)
//   | u8 connection_auth | str auth_generation_id      (absent in version 1)
//   | varint n_sys | n_sys * (str key, str value) | varint n_app | n_app * (str key, str value) | str body
// where str = varint length + raw bytes.
#include "fleethub/core/message_codec.hpp"

#include <cstring>

namespace fleethub {
namespace {

void put_varint(bytes& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

void put_str(bytes& out, std::string_view s) {
  put_varint(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_props(bytes& out, const property_list& props) {
  put_varint(out, props.size());
  for (const auto& p : props) {
    put_str(out, p.key);
    put_str(out, p.value);
  }
}

class reader {
 public:
  explicit reader(bytes_view in) : in_(in) {}
  std::size_t remaining() const { return in_.size() - pos_; }

  bool u8(std::uint8_t& v) {
    if (remaining() < 1) return false;
    v = in_[pos_++];
    return true;
  }
  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t b;
      if (!u8(b)) return false;
      if (shift == 63 && b > 1) return false;  // would overflow 64 bits
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return b != 0 || shift == 0;  // canonical only: no trailing zero groups
    }
    return false;  // over-long varint
  }
  bool i64(std::int64_t& v) {
    if (remaining() < 8) return false;
    std::uint64_t u = 0;
    for (int i = 0; i < 8; ++i) u |= static_cast<std::uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += 8;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  // Validates the length against what is left before touching memory.
  bool str(std::string& s) {
    std::uint64_t n;
    if (!varint(n) || n > remaining()) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool raw(bytes& b) {
    std::uint64_t n;
    if (!varint(n) || n > remaining()) return false;
    b.assign(in_.begin() + static_cast<std::ptrdiff_t>(pos_), in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool skip_str() {
    std::uint64_t n;
    if (!varint(n) || n > remaining()) return false;
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool skip_props() {
    std::uint64_t n;
    if (!varint(n) || n > remaining() / 2) return false;
    for (std::uint64_t i = 0; i < n; ++i)
      if (!skip_str() || !skip_str()) return false;
    return true;
  }
  bool props(property_list& out) {
    std::uint64_t n;
    if (!varint(n)) return false;
    // Each property needs at least 2 bytes, so a count above that is garbage (and would over-reserve).
    if (n > remaining() / 2) return false;
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      property p;
      if (!str(p.key) || !str(p.value)) return false;
      out.push_back(std::move(p));
    }
    return true;
  }

 private:
  bytes_view in_;
  std::size_t pos_ = 0;
};

error truncated() { return make_error(errc::invalid_argument, "message record is truncated or corrupt"); }

std::size_t props_size(const property_list& props) {
  std::size_t n = 10;
  for (const auto& p : props) n += p.key.size() + p.value.size() + 20;
  return n;
}

}  // namespace

void encode_message_into(const message& m, bytes& out) {
  // One allocation: an upper bound of the encoded size (varints take at most 10 bytes).
  out.reserve(out.size() + 64 + m.device_id.size() + m.module_id.size() + m.auth_generation_id.size() +
              props_size(m.system_properties) + props_size(m.app_properties) + m.body.size());
  out.push_back(message_record_version);
  out.push_back(static_cast<std::uint8_t>(m.source));
  put_str(out, m.device_id);
  put_str(out, m.module_id);
  auto t = static_cast<std::uint64_t>(m.enqueued_time_ms);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(t >> (8 * i)));
  out.push_back(static_cast<std::uint8_t>(m.auth));
  put_str(out, m.auth_generation_id);
  put_props(out, m.system_properties);
  put_props(out, m.app_properties);
  put_str(out, as_string_view(m.body));
}

bytes encode_message(const message& m) {
  bytes out;
  encode_message_into(m, out);
  return out;
}

namespace {

result<message> decode(bytes_view record, bool with_properties) {
  reader r(record);
  std::uint8_t version;
  if (!r.u8(version)) return make_error(errc::invalid_argument, "message record is empty");
  if (version < 1 || version > message_record_version) {
    return make_error(errc::schema_mismatch, "message record version " + std::to_string(version) +
                                                 " is not supported (expected 1 to " +
                                                 std::to_string(message_record_version) + ")");
  }
  message m;
  if (version >= 3) {
    std::uint8_t src;
    if (!r.u8(src) || src >= message_source_count) return truncated();
    m.source = static_cast<message_source>(src);
  }
  if (!r.str(m.device_id) || !r.str(m.module_id) || !r.i64(m.enqueued_time_ms)) return truncated();
  if (version >= 2) {
    std::uint8_t auth;
    if (!r.u8(auth) || auth > static_cast<std::uint8_t>(connection_auth::x509) || !r.str(m.auth_generation_id))
      return truncated();
    m.auth = static_cast<connection_auth>(auth);
  }
  if (with_properties) {
    if (!r.props(m.system_properties) || !r.props(m.app_properties)) return truncated();
  } else {
    if (!r.skip_props() || !r.skip_props()) return truncated();
  }
  if (!r.raw(m.body)) return truncated();
  if (r.remaining() != 0) return make_error(errc::invalid_argument, "message record has trailing bytes");
  return m;
}

}  // namespace

result<message> decode_message(bytes_view record) { return decode(record, true); }

std::optional<message_source> peek_message_source(bytes_view record) {
  if (record.empty() || record[0] < 1 || record[0] > message_record_version) return std::nullopt;
  if (record[0] < 3) return message_source::telemetry;
  if (record.size() < 2 || record[1] >= message_source_count) return std::nullopt;
  return static_cast<message_source>(record[1]);
}
result<message> decode_message_without_properties(bytes_view record) { return decode(record, false); }

}  // namespace fleethub
