// The benchmark payload format and the few MQTT 3.1.1 packets the generator writes.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace).
#pragma once

// ---------------------------------------------------------------------------
// Payload format (fixed offsets, valid JSON; numbers right-aligned with spaces):
//   {"pub":PPPPPPPPPP,"seq":SSSSSSSSSSSSSSSSSSSS,"ts":TTTTTTTTTTTTTTTTTTT,"pad":"xxx...x"}
//   pub  = body[7:17]   (u32, width 10)
//   seq  = body[24:44]  (u64, width 20, per publisher, starts at 0, +1 per message sent)
//   ts   = body[50:69]  (scheduled send time, ns since epoch, CLOCK_REALTIME, width 19)
// ---------------------------------------------------------------------------
constexpr size_t kPubOff = 7, kPubW = 10;
constexpr size_t kSeqOff = 24, kSeqW = 20;
constexpr size_t kTsOff = 50, kTsW = 19;
constexpr size_t kPadOff = 77;  // first pad byte
constexpr size_t kMinPayload = 79;

inline void put_num(char* p, size_t w, uint64_t v) {
  char* e = p + w;
  do { *--e = char('0' + v % 10); v /= 10; } while (v && e > p);
  while (e > p) *--e = ' ';
}

inline bool get_num(const char* p, size_t w, uint64_t& out) {
  size_t i = 0;
  while (i < w && p[i] == ' ') ++i;
  if (i == w) return false;
  uint64_t v = 0;
  for (; i < w; ++i) {
    unsigned d = unsigned(uint8_t(p[i])) - '0';
    if (d > 9) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

std::string make_payload(uint32_t pub, size_t size) {
  std::string s(size, 'x');
  std::memcpy(&s[0], "{\"pub\":", 7);
  put_num(&s[kPubOff], kPubW, pub);
  std::memcpy(&s[17], ",\"seq\":", 7);
  put_num(&s[kSeqOff], kSeqW, 0);
  std::memcpy(&s[44], ",\"ts\":", 6);
  put_num(&s[kTsOff], kTsW, 0);
  std::memcpy(&s[69], ",\"pad\":\"", 8);
  s[size - 2] = '"';
  s[size - 1] = '}';
  return s;
}

// ---------------------------------------------------------------------------
// MQTT 3.1.1 encoding
// ---------------------------------------------------------------------------
void put_remlen(std::string& s, size_t len) {
  do {
    uint8_t b = len % 128;
    len /= 128;
    if (len) b |= 0x80;
    s += char(b);
  } while (len);
}
void put_u16(std::string& s, unsigned v) { s += char((v >> 8) & 0xff); s += char(v & 0xff); }
void put_str(std::string& s, std::string_view v) { put_u16(s, unsigned(v.size())); s.append(v); }

std::string connect_packet(const std::string& id, const std::string& user, const std::string& pass,
                           bool clean, int keepalive) {
  std::string body;
  put_str(body, "MQTT");
  body += char(4);
  uint8_t flags = clean ? 0x02 : 0;
  if (!user.empty()) flags |= 0x80;
  if (!pass.empty()) flags |= 0x40;
  body += char(flags);
  put_u16(body, unsigned(keepalive));
  put_str(body, id);
  if (!user.empty()) put_str(body, user);
  if (!pass.empty()) put_str(body, pass);
  std::string p;
  p += char(0x10);
  put_remlen(p, body.size());
  return p + body;
}

std::string subscribe_packet(uint16_t pid, const std::string& filter, int qos) {
  std::string body;
  put_u16(body, pid);
  put_str(body, filter);
  body += char(qos);
  std::string p;
  p += char(0x82);
  put_remlen(p, body.size());
  return p + body;
}

// A QoS 0 PUBLISH (no packet id), appended to `out`.
inline void append_publish_qos0(std::string& out, std::string_view topic, std::string_view body) {
  out += char(0x30);
  put_remlen(out, 2 + topic.size() + body.size());
  put_str(out, topic);
  out.append(body);
}

// Leading decimal digits of s as u64; `used` receives how many characters were consumed (0 = none).
inline uint64_t parse_u64_prefix(std::string_view s, size_t& used) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < s.size() && i < 19 && s[i] >= '0' && s[i] <= '9') { v = v * 10 + uint64_t(s[i] - '0'); ++i; }
  used = i;
  return v;
}
