// MQTT 3.1.1 codec. Decoding works on a contiguous view of one complete packet; the incremental part is
// only the fixed header (type, flags, remaining length), which is validated before the body arrives.
#include "fleethub/proto/mqtt/codec.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace fleethub::proto::mqtt {
namespace {

enum packet_type : std::uint8_t {
  t_connect = 1,
  t_connack = 2,
  t_publish = 3,
  t_puback = 4,
  t_pubrec = 5,
  t_pubrel = 6,
  t_pubcomp = 7,
  t_subscribe = 8,
  t_suback = 9,
  t_unsubscribe = 10,
  t_unsuback = 11,
  t_pingreq = 12,
  t_pingresp = 13,
  t_disconnect = 14,
};

constexpr std::size_t max_remaining_length = 268'435'455;  // 4-byte varint ceiling

// Well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF) without U+0000 (§1.5.3).
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned cc = p[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Bounds-checked reader over one packet body. Every read reports failure instead of throwing.
class reader {
 public:
  explicit reader(bytes_view b) : b_(b) {}
  std::size_t left() const { return b_.size() - i_; }
  bool done() const { return i_ == b_.size(); }
  bool u8(std::uint8_t& v) {
    if (left() < 1) return false;
    v = b_[i_++];
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<std::uint16_t>((b_[i_] << 8) | b_[i_ + 1]);
    i_ += 2;
    return true;
  }
  bool raw(bytes_view& v) {
    std::uint16_t len;
    if (!u16(len) || left() < len) return false;
    v = b_.subspan(i_, len);
    i_ += len;
    return true;
  }
  bool binary(bytes& v) {
    bytes_view r;
    if (!raw(r)) return false;
    v.assign(r.begin(), r.end());
    return true;
  }
  bytes_view rest() {
    auto r = b_.subspan(i_);
    i_ = b_.size();
    return r;
  }

 private:
  bytes_view b_;
  std::size_t i_ = 0;
};

// Body decoding; each returns a status describing the first violation found.
struct body_result {
  decode_error error = decode_error::none;
  std::string detail;
};
body_result malformed(std::string detail) { return {decode_error::malformed, std::move(detail)}; }

// A length-prefixed UTF-8 string; `what` names the field for the error message.
bool read_string(reader& r, std::string& out, const char* what, body_result& err) {
  bytes_view v;
  if (!r.raw(v)) {
    err = malformed(std::string("truncated ") + what);
    return false;
  }
  std::string_view s = as_string_view(v);
  if (!valid_utf8(s)) {
    err = malformed(std::string(what) + " is not well-formed UTF-8");
    return false;
  }
  out.assign(s);
  return true;
}

body_result decode_connect(reader& r, packet& out) {
  body_result err;
  bytes_view name;
  std::uint8_t level = 0;
  if (!r.raw(name) || !r.u8(level)) return malformed("truncated CONNECT variable header");
  const auto n = as_string_view(name);
  if (n == "MQIsdp") return {decode_error::unsupported_protocol, "MQIsdp (MQTT 3.1) is not supported"};
  if (n != "MQTT") return malformed("unknown protocol name");
  if (level != 4)
    return {decode_error::unsupported_protocol, "protocol level " + std::to_string(level) + " is not supported"};

  std::uint8_t flags = 0;
  connect_packet c;
  c.protocol_level = level;
  if (!r.u8(flags) || !r.u16(c.keep_alive)) return malformed("truncated CONNECT variable header");
  if (flags & 0x01) return malformed("CONNECT reserved flag set");
  c.clean_session = (flags & 0x02) != 0;
  const bool will = (flags & 0x04) != 0;
  const std::uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = (flags & 0x20) != 0;
  const bool has_password = (flags & 0x40) != 0;
  const bool has_username = (flags & 0x80) != 0;
  if (!will && (will_qos != 0 || will_retain)) return malformed("will QoS/retain set without will flag");
  if (will_qos == 3) return malformed("will QoS 3");
  if (has_password && !has_username) return malformed("password flag without username flag");

  if (!read_string(r, c.client_id, "client id", err)) return err;
  if (will) {
    will_message w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (!read_string(r, w.topic, "will topic", err)) return err;
    if (!valid_topic_name(w.topic)) return malformed("invalid will topic");
    if (!r.binary(w.payload)) return malformed("truncated will message");
    c.will = std::move(w);
  }
  if (has_username) {
    std::string u;
    if (!read_string(r, u, "username", err)) return err;
    c.username = std::move(u);
  }
  if (has_password) {
    bytes pw;
    if (!r.binary(pw)) return malformed("truncated password");
    c.password = std::move(pw);
  }
  if (!r.done()) return malformed("trailing bytes after CONNECT payload");
  out = std::move(c);
  return {};
}

body_result decode_publish(std::uint8_t flags, reader& r, packet& out) {
  body_result err;
  publish_packet p;
  p.retain = (flags & 0x01) != 0;
  p.qos = (flags >> 1) & 0x03;
  p.dup = (flags & 0x08) != 0;
  if (!read_string(r, p.topic, "topic name", err)) return err;
  if (!valid_topic_name(p.topic)) return malformed("invalid PUBLISH topic name");
  if (p.qos > 0) {
    if (!r.u16(p.packet_id)) return malformed("truncated packet id");
    if (p.packet_id == 0) return malformed("packet id 0");
  }
  auto payload = r.rest();
  p.payload.assign(payload.begin(), payload.end());
  out = std::move(p);
  return {};
}

body_result decode_subscribe(reader& r, packet& out) {
  body_result err;
  subscribe_packet s;
  if (!r.u16(s.packet_id)) return malformed("truncated packet id");
  if (s.packet_id == 0) return malformed("packet id 0");
  while (!r.done()) {
    subscription sub;
    if (!read_string(r, sub.filter, "topic filter", err)) return err;
    if (!valid_topic_filter(sub.filter)) return malformed("invalid topic filter");
    if (!r.u8(sub.qos)) return malformed("truncated requested QoS");
    if (sub.qos > 2) return malformed("requested QoS above 2 or reserved bits set");
    s.subscriptions.push_back(std::move(sub));
  }
  if (s.subscriptions.empty()) return malformed("SUBSCRIBE without topic filters");
  out = std::move(s);
  return {};
}

body_result decode_suback(reader& r, packet& out) {
  suback_packet s;
  if (!r.u16(s.packet_id)) return malformed("truncated packet id");
  if (s.packet_id == 0) return malformed("packet id 0");
  auto codes = r.rest();
  if (codes.empty()) return malformed("SUBACK without return codes");
  for (auto c : codes)
    if (c > 2 && c != suback_failure) return malformed("invalid SUBACK return code");
  s.return_codes.assign(codes.begin(), codes.end());
  out = std::move(s);
  return {};
}

body_result decode_unsubscribe(reader& r, packet& out) {
  body_result err;
  unsubscribe_packet u;
  if (!r.u16(u.packet_id)) return malformed("truncated packet id");
  if (u.packet_id == 0) return malformed("packet id 0");
  while (!r.done()) {
    std::string f;
    if (!read_string(r, f, "topic filter", err)) return err;
    if (!valid_topic_filter(f)) return malformed("invalid topic filter");
    u.filters.push_back(std::move(f));
  }
  if (u.filters.empty()) return malformed("UNSUBSCRIBE without topic filters");
  out = std::move(u);
  return {};
}

// Packets whose body is exactly a non-zero packet id.
template <class P>
body_result decode_id_only(reader& r, packet& out) {
  P p;
  if (r.left() != 2) return malformed("remaining length must be 2");
  r.u16(p.packet_id);
  if (p.packet_id == 0) return malformed("packet id 0");
  out = p;
  return {};
}

body_result decode_body(std::uint8_t type, std::uint8_t flags, bytes_view body, packet& out) {
  reader r(body);
  switch (type) {
    case t_connect: return decode_connect(r, out);
    case t_connack: {
      std::uint8_t ack = 0, code = 0;
      if (r.left() != 2) return malformed("remaining length must be 2");
      r.u8(ack);
      r.u8(code);
      if (ack & 0xFE) return malformed("CONNACK reserved flags set");
      if (code > 5) return malformed("invalid CONNACK return code");
      out = connack_packet{(ack & 1) != 0, static_cast<connack_code>(code)};
      return {};
    }
    case t_publish: return decode_publish(flags, r, out);
    case t_puback: return decode_id_only<puback_packet>(r, out);
    case t_pubrec: return decode_id_only<pubrec_packet>(r, out);
    case t_pubrel: return decode_id_only<pubrel_packet>(r, out);
    case t_pubcomp: return decode_id_only<pubcomp_packet>(r, out);
    case t_subscribe: return decode_subscribe(r, out);
    case t_suback: return decode_suback(r, out);
    case t_unsubscribe: return decode_unsubscribe(r, out);
    case t_unsuback: return decode_id_only<unsuback_packet>(r, out);
    case t_pingreq:
    case t_pingresp:
    case t_disconnect:
      if (!r.done()) return malformed("remaining length must be 0");
      if (type == t_pingreq)
        out = pingreq_packet{};
      else if (type == t_pingresp)
        out = pingresp_packet{};
      else
        out = disconnect_packet{};
      return {};
    default: return malformed("reserved packet type");
  }
}

// Checks the fixed header's first byte (§2.2.2) so a bad packet fails before its body arrives.
const char* check_fixed_flags(std::uint8_t type, std::uint8_t flags) {
  switch (type) {
    case t_publish:
      if (((flags >> 1) & 0x03) == 3) return "PUBLISH with QoS 3";
      if ((flags & 0x08) && ((flags >> 1) & 0x03) == 0) return "PUBLISH QoS 0 with DUP set";
      return nullptr;
    case t_pubrel:
    case t_subscribe:
    case t_unsubscribe: return flags == 0x02 ? nullptr : "invalid fixed header flags";
    case 0:
    case 15: return "reserved packet type";
    default: return flags == 0 ? nullptr : "invalid fixed header flags";
  }
}

// ---- encoding ----

void put_u16(bytes& out, std::size_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xFF));
}
void put_data(bytes& out, bytes_view v) {
  if (v.size() > 0xFFFF) throw std::length_error("mqtt: string or binary field longer than 65535 bytes");
  put_u16(out, v.size());
  out.insert(out.end(), v.begin(), v.end());
}
void put_str(bytes& out, std::string_view s) { put_data(out, as_bytes(s)); }
void put_header(bytes& out, std::uint8_t first, std::size_t remaining) {
  if (remaining > max_remaining_length) throw std::length_error("mqtt: packet larger than 256 MB");
  out.push_back(first);
  do {
    auto b = static_cast<std::uint8_t>(remaining % 128);
    remaining /= 128;
    if (remaining > 0) b |= 0x80;
    out.push_back(b);
  } while (remaining > 0);
}

// The remaining length is computed up front so large payloads are copied exactly once.
struct encoder_visitor {
  bytes& out;

  void operator()(const connect_packet& c) const {
    std::size_t len = 2 + 4 + 1 + 1 + 2 + 2 + c.client_id.size();
    std::uint8_t flags = c.clean_session ? 0x02 : 0x00;
    if (c.will) {
      len += 2 + c.will->topic.size() + 2 + c.will->payload.size();
      flags |= 0x04 | static_cast<std::uint8_t>((c.will->qos & 0x03) << 3) | (c.will->retain ? 0x20 : 0);
    }
    if (c.username) {
      len += 2 + c.username->size();
      flags |= 0x80;
    }
    if (c.password) {
      len += 2 + c.password->size();
      flags |= 0x40;
    }
    put_header(out, t_connect << 4, len);
    put_str(out, "MQTT");
    out.push_back(c.protocol_level);
    out.push_back(flags);
    put_u16(out, c.keep_alive);
    put_str(out, c.client_id);
    if (c.will) {
      put_str(out, c.will->topic);
      put_data(out, c.will->payload);
    }
    if (c.username) put_str(out, *c.username);
    if (c.password) put_data(out, *c.password);
  }
  void operator()(const connack_packet& c) const {
    put_header(out, t_connack << 4, 2);
    out.push_back(c.session_present ? 1 : 0);
    out.push_back(static_cast<std::uint8_t>(c.code));
  }
  void operator()(const publish_packet& p) const {
    const std::size_t len = 2 + p.topic.size() + (p.qos > 0 ? 2 : 0) + p.payload.size();
    const auto first = static_cast<std::uint8_t>((t_publish << 4) | (p.dup ? 0x08 : 0) | ((p.qos & 0x03) << 1) |
                                                 (p.retain ? 0x01 : 0));
    put_header(out, first, len);
    put_str(out, p.topic);
    if (p.qos > 0) put_u16(out, p.packet_id);
    out.insert(out.end(), p.payload.begin(), p.payload.end());
  }
  void operator()(const puback_packet& p) const { id_only(t_puback << 4, p.packet_id); }
  void operator()(const pubrec_packet& p) const { id_only(t_pubrec << 4, p.packet_id); }
  void operator()(const pubrel_packet& p) const { id_only((t_pubrel << 4) | 0x02, p.packet_id); }
  void operator()(const pubcomp_packet& p) const { id_only(t_pubcomp << 4, p.packet_id); }
  void operator()(const subscribe_packet& s) const {
    std::size_t len = 2;
    for (const auto& sub : s.subscriptions) len += 2 + sub.filter.size() + 1;
    put_header(out, (t_subscribe << 4) | 0x02, len);
    put_u16(out, s.packet_id);
    for (const auto& sub : s.subscriptions) {
      put_str(out, sub.filter);
      out.push_back(sub.qos);
    }
  }
  void operator()(const suback_packet& s) const {
    put_header(out, t_suback << 4, 2 + s.return_codes.size());
    put_u16(out, s.packet_id);
    out.insert(out.end(), s.return_codes.begin(), s.return_codes.end());
  }
  void operator()(const unsubscribe_packet& u) const {
    std::size_t len = 2;
    for (const auto& f : u.filters) len += 2 + f.size();
    put_header(out, (t_unsubscribe << 4) | 0x02, len);
    put_u16(out, u.packet_id);
    for (const auto& f : u.filters) put_str(out, f);
  }
  void operator()(const unsuback_packet& p) const { id_only(t_unsuback << 4, p.packet_id); }
  void operator()(const pingreq_packet&) const { put_header(out, t_pingreq << 4, 0); }
  void operator()(const pingresp_packet&) const { put_header(out, t_pingresp << 4, 0); }
  void operator()(const disconnect_packet&) const { put_header(out, t_disconnect << 4, 0); }

  void id_only(int first, std::uint16_t id) const {
    put_header(out, static_cast<std::uint8_t>(first), 2);
    put_u16(out, id);
  }
};

}  // namespace

// ---- decoder ----

decoder::decoder(std::size_t max_packet_size) : max_packet_size_(max_packet_size) {}

void decoder::feed(bytes_view data) {
  if (failed() || data.empty()) return;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 0 && pos_ >= buf_.size() - pos_) {
    // Compact only when the consumed prefix is at least as large as what remains: amortized O(n).
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), data.begin(), data.end());
}

std::optional<packet> decoder::next() {
  if (failed()) return std::nullopt;
  const std::size_t avail = buf_.size() - pos_;
  if (avail == 0) return std::nullopt;

  const std::uint8_t* p = buf_.data() + pos_;
  const std::uint8_t type = p[0] >> 4;
  const std::uint8_t flags = p[0] & 0x0F;
  auto fail = [this](decode_error e, std::string detail) -> std::optional<packet> {
    status_ = {e, std::move(detail)};
    bytes().swap(buf_);  // nothing more will be parsed; free the memory
    pos_ = 0;
    return std::nullopt;
  };
  if (const char* why = check_fixed_flags(type, flags)) return fail(decode_error::malformed, why);

  std::size_t remaining = 0;
  std::size_t header = 1;
  for (std::size_t shift = 0;; shift += 7) {
    if (header == 5) return fail(decode_error::malformed, "remaining length longer than 4 bytes");
    if (header >= avail) return std::nullopt;  // fixed header incomplete
    const std::uint8_t b = p[header++];
    remaining |= static_cast<std::size_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) break;
  }
  if (remaining > max_packet_size_)
    return fail(decode_error::packet_too_large,
                "remaining length " + std::to_string(remaining) + " exceeds " + std::to_string(max_packet_size_));
  if (avail - header < remaining) return std::nullopt;

  packet out;
  auto r = decode_body(type, flags, bytes_view(p + header, remaining), out);
  if (r.error != decode_error::none) return fail(r.error, std::move(r.detail));
  pos_ += header + remaining;
  if (pos_ == buf_.size()) {
    bytes().swap(buf_);  // idle connections should hold no buffer
    pos_ = 0;
  }
  return out;
}

// ---- encoder ----

void encode(const packet& p, bytes& out) { std::visit(encoder_visitor{out}, p); }

bytes encode(const packet& p) {
  bytes out;
  encode(p, out);
  return out;
}

// ---- topics ----

bool valid_topic_name(std::string_view topic) {
  if (topic.empty() || topic.size() > 0xFFFF) return false;
  if (topic.find_first_of("+#") != std::string_view::npos) return false;
  return valid_utf8(topic);
}

bool valid_topic_filter(std::string_view filter) {
  if (filter.empty() || filter.size() > 0xFFFF) return false;
  for (std::size_t i = 0; i < filter.size(); ++i) {
    const char c = filter[i];
    if (c != '+' && c != '#') continue;
    const bool starts_level = i == 0 || filter[i - 1] == '/';
    const bool ends_level = i + 1 == filter.size() || filter[i + 1] == '/';
    if (!starts_level || !ends_level) return false;
    if (c == '#' && i + 1 != filter.size()) return false;
  }
  return valid_utf8(filter);
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  if (filter.empty() || topic.empty()) return false;
  // §4.7.2: wildcards at the first level never match topics beginning with '$'.
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  std::size_t f = 0, t = 0;
  bool topic_done = false;
  for (;;) {
    std::size_t fe = filter.find('/', f);
    if (fe == std::string_view::npos) fe = filter.size();
    const auto fl = filter.substr(f, fe - f);
    if (fl == "#") return true;  // also matches the parent level ("a/#" matches "a")
    if (topic_done) return false;
    std::size_t te = topic.find('/', t);
    if (te == std::string_view::npos) te = topic.size();
    const auto tl = topic.substr(t, te - t);
    if (fl != "+" && fl != tl) return false;
    const bool f_last = fe == filter.size();
    const bool t_last = te == topic.size();
    if (f_last) return t_last;
    if (t_last)
      topic_done = true;
    else
      t = te + 1;
    f = fe + 1;
  }
}

}  // namespace fleethub::proto::mqtt
