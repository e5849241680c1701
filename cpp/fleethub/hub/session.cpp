#include "fleethub/hub/session.hpp"

#include "fleethub/core/record_io.hpp"

namespace fleethub::hub {

namespace {
constexpr std::uint8_t session_record_version = 1;
constexpr std::uint8_t outbound_record_version = 1;
}  // namespace

bytes encode_session(const session_state& s) {
  record_writer w(session_record_version);
  w.str(s.client_id).str(s.device_id).str(s.module_id).u16(s.next_packet_id).u64(s.next_seq);
  w.u32(static_cast<std::uint32_t>(s.subscriptions.size()));
  for (auto& sub : s.subscriptions) w.str(sub.filter).u8(sub.qos);
  return w.take();
}

result<session_state> decode_session(bytes_view b) {
  record_reader r(b);
  session_state s;
  s.persistent = true;
  s.client_id = r.str();
  s.device_id = r.str();
  s.module_id = r.str();
  s.next_packet_id = r.u16();
  s.next_seq = r.u64();
  auto n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    proto::mqtt::subscription sub;
    sub.filter = r.str();
    sub.qos = r.u8();
    s.subscriptions.push_back(std::move(sub));
  }
  if (!r.ok() || r.version() != session_record_version) return make_error(errc::storage, "corrupt session record");
  if (s.next_packet_id == 0) s.next_packet_id = 1;
  return s;
}

bytes encode_outbound(const outbound_message& m) {
  record_writer w(outbound_record_version);
  w.str(m.topic).str(as_string_view(m.payload)).u8(m.qos).u16(m.packet_id);
  return w.take();
}

result<outbound_message> decode_outbound(bytes_view b) {
  record_reader r(b);
  outbound_message m;
  m.topic = r.str();
  auto p = r.str();
  m.payload.assign(p.begin(), p.end());
  m.qos = r.u8();
  m.packet_id = r.u16();
  if (!r.ok() || r.version() != outbound_record_version) return make_error(errc::storage, "corrupt outbound record");
  return m;
}

std::string outbound_prefix(std::string_view client_id) {
  std::string k(client_id);
  k.push_back('\0');
  return k;
}

std::string outbound_key(std::string_view client_id, std::uint64_t seq) {
  auto k = outbound_prefix(client_id);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  return k;
}

}  // namespace fleethub::hub
