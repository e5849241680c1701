// fleethub_loadgen: open-loop MQTT 3.1.1 load generator for the fan-in benchmark.
//
// Single-threaded epoll loop, non-blocking sockets, optional TLS (OpenSSL).
// Modes:
//   pub   N publishers, open-loop schedule, scheduled send time in the payload
//   sub   one subscriber on a wildcard filter; latency / loss / duplicate accounting
//   idle  N connections kept alive with PINGREQ (memory-per-connection cell)
//   twin        N devices, closed-loop reported-property PATCHes ($iothub/twin/...), latency per op
//   methods     N devices answering direct-method requests at once (hub or mosquitto topic style)
//   rpc-caller  K "service" clients sending method requests through a plain broker (mosquitto reference)
//   c2d-sink    N devices each subscribed to its own C2D topic (hub or mosquitto style), PUBACK at once
//   c2d-sender  1 (or K) clients publishing open-loop to --targets per-device topics (mosquitto fan-out)
// The payload format and the JSON summary schema are documented in bench/README.md.
//
// Build: target `fleethub_loadgen` (bench/CMakeLists.txt), or standalone:
//   g++ -std=c++20 -O2 -o fleethub_loadgen bench/loadgen.cpp -lssl -lcrypto

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

#include "loadgen_support.hpp"
#include "loadgen_options.hpp"
#include "loadgen_wire.hpp"

// ---------------------------------------------------------------------------
// Client connection
// ---------------------------------------------------------------------------
enum class St : uint8_t { Idle, TcpConnecting, TlsHandshake, WaitConnack, WaitSuback, Ready, Closed };

struct Client {
  int fd = -1;
  SSL* ssl = nullptr;
  St st = St::Idle;
  bool epollout = false;
  bool dirty = false;
  uint32_t idx = 0;
  std::string id, user, pass;
  std::string tmpl;  // PUBLISH packet template
  uint32_t pid_off = 0, pay_off = 0;
  std::string out;
  size_t out_off = 0;
  std::string in;
  uint64_t seq = 0;
  uint16_t next_pid = 1;
  int inflight = 0;
  std::vector<uint16_t> inf_pid;
  std::vector<int64_t> inf_t;
  std::vector<uint8_t> inf_w;
  int64_t t_connect_start = 0;
  int64_t last_tx = 0;
  // twin / methods / rpc-caller
  std::string sub_filter;
  std::vector<uint64_t> op_n;  // outstanding request ids (0 = free slot)
  std::vector<int64_t> op_t;   // send (closed loop) or scheduled (rate cap) time, monotonic ns
  std::vector<uint8_t> op_w;   // sent inside the measured window
  uint64_t next_rid = 1;
};

struct Counters {
  // connections
  uint64_t conn_attempted = 0, conn_ok = 0, tcp_fail = 0, tls_fail = 0, connack_fail = 0,
           conn_timeout = 0, disconnects = 0, ping_sent = 0, ping_resp = 0, protocol_errors = 0;
  std::map<int, uint64_t> connack_codes;
  std::map<int, uint64_t> tcp_errnos;
  // pub
  uint64_t offered = 0, offered_w = 0, sent = 0, sent_w = 0, acked = 0, acked_w = 0;
  uint64_t drop_window = 0, drop_window_w = 0, drop_nc = 0, drop_nc_w = 0, drop_bp = 0, drop_bp_w = 0;
  uint64_t bytes_out = 0, bytes_in = 0;
  uint64_t unexpected_puback = 0;
  // sub
  uint64_t received = 0, foreign = 0, received_qos2 = 0;
  // twin / rpc-caller (requesters); *_w = inside the measured window (completion time for completions)
  uint64_t op_sent = 0, op_sent_w = 0, op_done = 0, op_done_w = 0, op_err = 0, op_err_w = 0;
  uint64_t op_timeout = 0, op_timeout_w = 0, op_unexpected = 0, op_malformed = 0;
  uint64_t suback_fail = 0, subscribed = 0;
  std::map<int, uint64_t> op_status;
  // methods (responder)
  uint64_t m_requests = 0, m_answered = 0, m_malformed = 0, m_requests_w = 0;
};

class Engine {
 public:
  explicit Engine(const Options& o)
      : o_(o), c2d_sink_(o.mode == "c2d-sink"), c2d_sender_(o.mode == "c2d-sender"),
        rr_mode_(o.mode == "twin" || o.mode == "rpc-caller" || o.mode == "methods") {}
  ~Engine() {
    for (Client& c : cl_) close_client(c, false);
    if (ctx_) SSL_CTX_free(ctx_);
    if (ep_ >= 0) ::close(ep_);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int run();

 private:
  // setup
  void resolve();
  void init_tls();
  void load_clients();
  // connection lifecycle
  void start_connect(Client& c);
  void on_tcp_connected(Client& c);
  void do_handshake(Client& c);
  void send_connect(Client& c);
  void close_client(Client& c, bool count_disconnect);
  void fail_connect(Client& c);
  // io
  void want_out(Client& c, bool on);
  void mark_dirty(Client& c) { if (!c.dirty) { c.dirty = true; dirty_.push_back(c.idx); } }
  void flush(Client& c);
  void flush_dirty();
  void on_event(Client& c, uint32_t ev);
  void do_read(Client& c);
  void handle_packet(Client& c, uint8_t hdr, const char* p, size_t len);
  void on_publish(Client& c, uint8_t hdr, const char* p, size_t len);
  // pub
  void emit(uint64_t k, int64_t t_sched_mono);
  bool admit(Client& c, int64_t t_sched);
  void emit_into(Client& c, const std::string& tmpl, uint32_t pid_off, uint32_t pay_off, uint64_t& seq,
                 int64_t t_sched);
  // twin / methods / rpc-caller (bench/loadgen_rpc.hpp)
  bool is_requester() const { return o_.mode == "twin" || o_.mode == "rpc-caller"; }
  bool is_rr_mode() const { return rr_mode_; }
  // every client subscribes to its own filter after CONNACK; ready once all have their SUBACK
  bool per_client_sub() const { return rr_mode_ || c2d_sink_; }
  void rr_setup_client(Client& c, int i);
  bool rr_send(Client& c, int64_t t_ref, int64_t now);
  void rr_emit(uint64_t k, int64_t t_sched);
  void rr_fill(Client& c, int64_t now);
  void rr_scan(int64_t now);
  void rr_on_publish(Client& c, std::string_view topic, std::string_view body);
  void rr_on_response(Client& c, std::string_view topic);
  void rr_on_request(Client& c, std::string_view topic);
  void rr_summary(Json& j);
  // c2d-sink / c2d-sender (bench/loadgen_c2d.hpp)
  void c2d_setup_client(Client& c);
  void c2d_build_templates();
  void c2d_emit(uint64_t k, int64_t t_sched);
  void c2d_on_sink_message(Client& c, uint64_t pub, bool dup);
  void c2d_sink_on_ready(int64_t now_rt);
  void c2d_sink_summary(Json& j);
  // misc
  void keepalive_scan(int64_t now);
  void write_ready_file();
  std::string summary();
  bool pending_state(const Client& c) const {
    return c.st == St::TcpConnecting || c.st == St::TlsHandshake || c.st == St::WaitConnack;
  }

  Options o_;  // a copy: c2d-sink may derive its window at run time
  const bool c2d_sink_, c2d_sender_, rr_mode_;
  sockaddr_storage addr_{};
  socklen_t addrlen_ = 0;
  sockaddr_storage bind_addr_{};
  socklen_t bind_addrlen_ = 0;
  SSL_CTX* ctx_ = nullptr;
  int ep_ = -1;
  std::vector<Client> cl_;
  std::vector<uint32_t> dirty_;
  Counters c_;
  Hist h_connect_, h_puback_, h_lag_, h_lat_;
  int64_t rt_off_ = 0;  // realtime - monotonic
  int pending_ = 0;
  size_t next_connect_ = 0;
  int64_t connect_t0_ = 0;
  int64_t connect_done_mono_ = -1;
  bool ready_written_ = false;
  bool shutting_down_ = false;
  // pub schedule (monotonic ns)
  int64_t pub_start_ = -1, ws_ = 0, we_ = 0, pub_end_ = 0;
  uint64_t k_ = 0;
  double period_ns_ = 0;
  bool pub_done_ = false;
  bool late_start_ = false;
  int64_t cpu_ws_ = -1, cpu_we_ = -1;
  // sub
  struct Track {
    std::vector<uint64_t> bits;
    uint64_t min_w = UINT64_MAX, max_w = 0, uniq_w = 0;
  };
  std::vector<Track> tracks_;
  uint64_t uniq_w_ = 0, recv_w_ts_ = 0, recv_w_rt_ = 0, dup_ = 0, dup_w_ = 0;
  int64_t first_rx_rt_ = 0, last_rx_rt_ = 0;
  int64_t rx_batch_rt_ = 0;
  std::vector<uint64_t> per_sec_;
  bool subscribed_ = false;
  int suback_code_ = -1;
  int64_t run_t0_rt_ = 0;
  // twin / methods / rpc-caller
  uint64_t waiting_suback_ = 0;
  uint64_t target_rr_ = 0;
  bool rr_started_ = false;
  Hist h_op_;
  std::vector<uint64_t> op_per_sec_;
  std::string scratch_topic_, scratch_body_;
  // c2d
  std::vector<std::string> c2d_tmpl_;
  std::vector<uint32_t> c2d_pid_off_, c2d_pay_off_;
  std::vector<uint64_t> c2d_seq_;
  std::vector<uint64_t> c2d_per_client_;
  uint64_t c2d_misrouted_ = 0;
  bool c2d_window_derived_ = false;
};

#include "loadgen_emit.hpp"
#include "loadgen_rpc.hpp"
#include "loadgen_c2d.hpp"

void Engine::resolve() {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(o_.host.c_str(), std::to_string(o_.port).c_str(), &hints, &res);
  if (rc != 0 || !res) die("cannot resolve " + o_.host + ": " + gai_strerror(rc));
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  addrlen_ = res->ai_addrlen;
  freeaddrinfo(res);
  if (!o_.bind_addr.empty()) {
    hints.ai_flags = AI_NUMERICHOST;
    rc = getaddrinfo(o_.bind_addr.c_str(), "0", &hints, &res);
    if (rc != 0 || !res) die("bad --bind " + o_.bind_addr);
    std::memcpy(&bind_addr_, res->ai_addr, res->ai_addrlen);
    bind_addrlen_ = res->ai_addrlen;
    freeaddrinfo(res);
  }
}

void Engine::init_tls() {
  if (!o_.tls) return;
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!o_.cafile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, o_.cafile.c_str(), nullptr) != 1) die("cannot load --cafile");
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  if (!o_.certfile.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, o_.certfile.c_str()) != 1) die("cannot load --cert");
    if (SSL_CTX_use_PrivateKey_file(ctx_, (o_.keyfile.empty() ? o_.certfile : o_.keyfile).c_str(),
                                    SSL_FILETYPE_PEM) != 1)
      die("cannot load --key");
  }
}

void Engine::load_clients() {
  int n = o_.mode == "sub" ? 1 : o_.clients;
  cl_.resize(size_t(n));
  std::vector<std::array<std::string, 3>> creds;
  if (!o_.credentials.empty() && o_.mode != "sub") {
    std::ifstream f(o_.credentials);
    if (!f) die("cannot open --credentials " + o_.credentials);
    std::string line;
    while (std::getline(f, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      std::array<std::string, 3> r;
      size_t a = line.find('\t');
      if (a == std::string::npos) { r[0] = line; }
      else {
        r[0] = line.substr(0, a);
        size_t b = line.find('\t', a + 1);
        if (b == std::string::npos) r[1] = line.substr(a + 1);
        else { r[1] = line.substr(a + 1, b - a - 1); r[2] = line.substr(b + 1); }
      }
      creds.push_back(std::move(r));
    }
    if (creds.size() < size_t(n))
      die("--credentials has " + std::to_string(creds.size()) + " lines, need " + std::to_string(n));
  }
  for (int i = 0; i < n; ++i) {
    Client& c = cl_[size_t(i)];
    c.idx = uint32_t(i);
    if (o_.mode == "sub") {
      c.id = o_.client_id.empty() ? "fleethub-bench-sub-" + std::to_string(getpid()) : o_.client_id;
      c.user = o_.username;
      c.pass = o_.password;
      continue;
    }
    if (!creds.empty()) {
      c.id = creds[size_t(i)][0];
      c.user = creds[size_t(i)][1];
      c.pass = creds[size_t(i)][2];
    } else {
      // c2d-sender: never take over a sink's session (sinks are prefix+j)
      c.id = o_.prefix + (c2d_sender_ ? "sender" : "") + std::to_string(i);
    }
    if (is_rr_mode()) rr_setup_client(c, i);
    if (c2d_sink_) c2d_setup_client(c);
    if (c2d_sender_ && o_.qos) {
      c.inf_pid.assign(size_t(o_.inflight), 0);
      c.inf_t.assign(size_t(o_.inflight), 0);
      c.inf_w.assign(size_t(o_.inflight), 0);
    }
    if (o_.mode == "pub") {
      std::string topic = o_.topic_template;
      for (size_t p; (p = topic.find("{id}")) != std::string::npos;) topic.replace(p, 4, c.id);
      for (size_t p; (p = topic.find("{i}")) != std::string::npos;) topic.replace(p, 3, std::to_string(i));
      size_t rem = 2 + topic.size() + (o_.qos ? 2 : 0) + size_t(o_.size);
      std::string& t = c.tmpl;
      t += char(0x30 | (o_.qos << 1));
      put_remlen(t, rem);
      put_str(t, topic);
      c.pid_off = uint32_t(t.size());
      if (o_.qos) put_u16(t, 0);
      c.pay_off = uint32_t(t.size());
      t += make_payload(uint32_t(i), size_t(o_.size));
      if (o_.qos) {
        c.inf_pid.assign(size_t(o_.inflight), 0);
        c.inf_t.assign(size_t(o_.inflight), 0);
        c.inf_w.assign(size_t(o_.inflight), 0);
      }
    }
  }
}

void Engine::want_out(Client& c, bool on) {
  if (c.epollout == on || c.fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? uint32_t(EPOLLOUT) : 0u);
  ev.data.u32 = c.idx;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.epollout = on;
}

void Engine::start_connect(Client& c) {
  ++c_.conn_attempted;
  c.t_connect_start = mono_ns();
  int fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ++c_.tcp_fail;
    ++c_.tcp_errnos[errno];
    c.st = St::Closed;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind_addrlen_) {
    setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&bind_addr_), bind_addrlen_) != 0) {
      ++c_.tcp_fail;
      ++c_.tcp_errnos[errno];
      ::close(fd);
      c.st = St::Closed;
      return;
    }
  }
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr_), addrlen_);
  if (rc != 0 && errno != EINPROGRESS) {
    ++c_.tcp_fail;
    ++c_.tcp_errnos[errno];
    ::close(fd);
    c.st = St::Closed;
    return;
  }
  c.fd = fd;
  c.st = St::TcpConnecting;
  ++pending_;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = c.idx;
  epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  c.epollout = true;
}

void Engine::on_tcp_connected(Client& c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    ++c_.tcp_fail;
    ++c_.tcp_errnos[err];
    fail_connect(c);
    return;
  }
  if (o_.tls) {
    c.ssl = SSL_new(ctx_);
    SSL_set_fd(c.ssl, c.fd);
    if (!o_.sni.empty()) {
      SSL_set_tlsext_host_name(c.ssl, o_.sni.c_str());
      if (o_.verify_host) SSL_set1_host(c.ssl, o_.sni.c_str());
    }
    c.st = St::TlsHandshake;
    do_handshake(c);
  } else {
    want_out(c, false);
    send_connect(c);
  }
}

void Engine::do_handshake(Client& c) {
  ERR_clear_error();
  int r = SSL_connect(c.ssl);
  if (r == 1) {
    want_out(c, false);
    send_connect(c);
    return;
  }
  int e = SSL_get_error(c.ssl, r);
  if (e == SSL_ERROR_WANT_READ) want_out(c, false);
  else if (e == SSL_ERROR_WANT_WRITE) want_out(c, true);
  else {
    ++c_.tls_fail;
    if (c_.tls_fail <= 3) {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      std::fprintf(stderr, "fleethub_loadgen: TLS handshake failed: %s\n", buf);
    }
    fail_connect(c);
  }
}

void Engine::send_connect(Client& c) {
  c.st = St::WaitConnack;
  c.out += connect_packet(c.id, c.user, c.pass, o_.clean_session != 0, o_.keepalive);
  flush(c);
}

void Engine::fail_connect(Client& c) { close_client(c, false); }

void Engine::close_client(Client& c, bool count_disconnect) {
  if (c.st == St::Closed) return;
  if (pending_state(c)) --pending_;
  if (c.st == St::WaitSuback && per_client_sub() && waiting_suback_ > 0) --waiting_suback_;
  if (count_disconnect && !shutting_down_) ++c_.disconnects;
  if (c.ssl) { SSL_free(c.ssl); c.ssl = nullptr; }
  if (c.fd >= 0) { ::close(c.fd); c.fd = -1; }
  c.st = St::Closed;
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
}

void Engine::flush(Client& c) {
  if (c.fd < 0) return;
  if (c.st == St::TcpConnecting || c.st == St::TlsHandshake) return;
  while (c.out_off < c.out.size()) {
    size_t len = c.out.size() - c.out_off;
    ssize_t n;
    if (c.ssl) {
      ERR_clear_error();
      int r = SSL_write(c.ssl, c.out.data() + c.out_off, int(std::min<size_t>(len, INT_MAX)));
      if (r <= 0) {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) { want_out(c, true); return; }
        if (e == SSL_ERROR_WANT_READ) return;
        close_client(c, true);
        return;
      }
      n = r;
    } else {
      n = ::send(c.fd, c.out.data() + c.out_off, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) { want_out(c, true); return; }
        close_client(c, true);
        return;
      }
    }
    c.out_off += size_t(n);
    c_.bytes_out += uint64_t(n);
  }
  c.out.clear();
  c.out_off = 0;
  want_out(c, false);
}

void Engine::flush_dirty() {
  int64_t now = mono_ns();
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Client& c = cl_[dirty_[i]];
    c.dirty = false;
    if (c.st == St::Closed) continue;
    if (c.out_off < c.out.size()) c.last_tx = now;
    flush(c);
  }
  dirty_.clear();
}

void Engine::on_event(Client& c, uint32_t ev) {
  switch (c.st) {
    case St::Closed:
    case St::Idle:
      return;
    case St::TcpConnecting:
      on_tcp_connected(c);
      return;
    case St::TlsHandshake:
      do_handshake(c);
      return;
    default:
      break;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    do_read(c);
    if (c.st == St::Closed) return;
  }
  if ((ev & EPOLLOUT) || c.ssl) flush(c);
}

void Engine::do_read(Client& c) {
  static std::vector<char> buf(256 * 1024);
  for (int iter = 0; iter < 16; ++iter) {
    ssize_t n;
    if (c.ssl) {
      ERR_clear_error();
      int r = SSL_read(c.ssl, buf.data(), int(buf.size()));
      if (r <= 0) {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
        close_client(c, true);
        return;
      }
      n = r;
    } else {
      n = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        close_client(c, true);
        return;
      }
      if (n == 0) { close_client(c, true); return; }
      if (o_.quickack) {
        int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
      }
    }
    c_.bytes_in += uint64_t(n);
    rx_batch_rt_ = real_ns();
    const char* p;
    size_t len;
    if (c.in.empty()) { p = buf.data(); len = size_t(n); }
    else { c.in.append(buf.data(), size_t(n)); p = c.in.data(); len = c.in.size(); }
    size_t pos = 0;
    while (pos < len) {
      if (len - pos < 2) break;
      uint8_t hdr = uint8_t(p[pos]);
      size_t rl = 0, mul = 1, hl = 1;
      bool complete = false;
      for (; hl <= 4 && pos + hl < len; ++hl) {
        uint8_t b = uint8_t(p[pos + hl]);
        rl += size_t(b & 0x7f) * mul;
        mul *= 128;
        if (!(b & 0x80)) { complete = true; break; }
      }
      if (!complete) {
        if (hl > 4) { ++c_.protocol_errors; close_client(c, true); return; }
        break;
      }
      size_t total = 1 + hl + rl;
      if (pos + total > len) break;
      handle_packet(c, hdr, p + pos + 1 + hl, rl);
      if (c.st == St::Closed) return;
      pos += total;
    }
    if (c.in.empty()) { if (pos < len) c.in.assign(p + pos, len - pos); }
    else c.in.erase(0, pos);
    if (size_t(n) < buf.size() && !c.ssl) return;  // drained the socket
  }
}

void Engine::handle_packet(Client& c, uint8_t hdr, const char* p, size_t len) {
  switch (hdr >> 4) {
    case 2: {  // CONNACK
      if (c.st != St::WaitConnack || len < 2) { ++c_.protocol_errors; close_client(c, true); return; }
      int code = uint8_t(p[1]);
      if (code != 0) {
        ++c_.connack_fail;
        ++c_.connack_codes[code];
        close_client(c, false);  // WaitConnack: close_client drops the pending count
        return;
      }
      --pending_;
      ++c_.conn_ok;
      h_connect_.add(mono_ns() - c.t_connect_start);
      if (o_.mode == "sub") {
        c.st = St::WaitSuback;
        c.out += subscribe_packet(1, o_.topic_filter, o_.qos);
        mark_dirty(c);
      } else if (per_client_sub()) {
        c.st = St::WaitSuback;
        ++waiting_suback_;
        c.out += subscribe_packet(1, c.sub_filter, o_.qos);
        mark_dirty(c);
      } else {
        c.st = St::Ready;
      }
      c.last_tx = mono_ns();
      return;
    }
    case 3:
      on_publish(c, hdr, p, len);
      return;
    case 4: {  // PUBACK
      if (len < 2) { ++c_.protocol_errors; return; }
      uint16_t pid = uint16_t((uint8_t(p[0]) << 8) | uint8_t(p[1]));
      for (size_t s = 0; s < c.inf_pid.size(); ++s) {
        if (c.inf_pid[s] == pid) {
          c.inf_pid[s] = 0;
          --c.inflight;
          ++c_.acked;
          if (c.inf_w[s]) {
            ++c_.acked_w;
            h_puback_.add(mono_ns() - c.inf_t[s]);
          }
          return;
        }
      }
      ++c_.unexpected_puback;
      return;
    }
    case 9: {  // SUBACK
      if (per_client_sub()) {
        if (c.st != St::WaitSuback) return;
        --waiting_suback_;
        int code = len >= 3 ? uint8_t(p[2]) : 0x80;
        suback_code_ = code;
        if (code == 0x80) {
          ++c_.suback_fail;
          if (c_.suback_fail <= 3)
            std::fprintf(stderr, "fleethub_loadgen: SUBACK 0x80 for %s (client %s)\n", c.sub_filter.c_str(),
                         c.id.c_str());
          c.st = St::Ready;  // already counted off waiting_suback_
          close_client(c, false);
          return;
        }
        ++c_.subscribed;
        c.st = St::Ready;
        return;
      }
      if (len >= 3) suback_code_ = uint8_t(p[2]);
      if (suback_code_ == 0x80) die("subscription refused (SUBACK 0x80) for " + o_.topic_filter);
      subscribed_ = true;
      c.st = St::Ready;
      write_ready_file();
      return;
    }
    case 13:  // PINGRESP
      ++c_.ping_resp;
      return;
    default:
      return;
  }
}

void Engine::on_publish(Client& c, uint8_t hdr, const char* p, size_t len) {
  int qos = (hdr >> 1) & 3;
  if (len < 2) { ++c_.protocol_errors; return; }
  size_t tl = (size_t(uint8_t(p[0])) << 8) | uint8_t(p[1]);
  size_t off = 2 + tl;
  uint16_t pid = 0;
  if (qos > 0) {
    if (off + 2 > len) { ++c_.protocol_errors; return; }
    pid = uint16_t((uint8_t(p[off]) << 8) | uint8_t(p[off + 1]));
    off += 2;
  }
  if (off > len) { ++c_.protocol_errors; return; }
  if (qos == 1) {
    char ack[4] = {char(0x40), 2, char(pid >> 8), char(pid & 0xff)};
    c.out.append(ack, 4);
    mark_dirty(c);
  } else if (qos == 2) {
    ++c_.received_qos2;
    char rec[4] = {char(0x50), 2, char(pid >> 8), char(pid & 0xff)};
    c.out.append(rec, 4);
    mark_dirty(c);
  }
  ++c_.received;
  const char* b = p + off;
  size_t bl = len - off;
  if (is_rr_mode()) {
    rr_on_publish(c, std::string_view(p + 2, tl), std::string_view(b, bl));
    return;
  }
  int64_t now_rt = rx_batch_rt_;
  if (!first_rx_rt_) first_rx_rt_ = now_rt;
  last_rx_rt_ = now_rt;
  const bool have_window = o_.window_end_ns > o_.window_start_ns;
  bool in_rt = !have_window || (now_rt >= o_.window_start_ns && now_rt < o_.window_end_ns);
  if (in_rt) ++recv_w_rt_;
  if (have_window && in_rt) {
    size_t sec = size_t((now_rt - o_.window_start_ns) / 1000000000LL);
    if (sec >= per_sec_.size()) per_sec_.resize(sec + 1, 0);
    ++per_sec_[sec];
  }
  uint64_t pub, seq, ts;
  if (bl < kMinPayload || std::memcmp(b, "{\"pub\":", 7) != 0 || std::memcmp(b + 17, ",\"seq\":", 7) != 0 ||
      std::memcmp(b + 44, ",\"ts\":", 6) != 0 || !get_num(b + kPubOff, kPubW, pub) ||
      !get_num(b + kSeqOff, kSeqW, seq) || !get_num(b + kTsOff, kTsW, ts) || pub > 10000000) {
    ++c_.foreign;
    return;
  }
  bool in_ts = !have_window || (int64_t(ts) >= o_.window_start_ns && int64_t(ts) < o_.window_end_ns);
  if (pub >= tracks_.size()) tracks_.resize(pub + 1);
  Track& t = tracks_[pub];
  size_t word = size_t(seq >> 6);
  if (word >= t.bits.size()) {
    if (word > (1u << 26)) { ++c_.foreign; return; }  // absurd seq; refuse to allocate
    t.bits.resize(std::max(word + 1, t.bits.size() * 2), 0);
  }
  uint64_t bit = uint64_t(1) << (seq & 63);
  if (t.bits[word] & bit) {
    ++dup_;
    if (in_ts) ++dup_w_;
    if (c2d_sink_) c2d_on_sink_message(c, pub, true);
    return;
  }
  t.bits[word] |= bit;
  if (c2d_sink_) c2d_on_sink_message(c, pub, false);
  if (in_ts) {
    ++recv_w_ts_;
    ++uniq_w_;
    ++t.uniq_w;
    t.min_w = std::min(t.min_w, seq);
    t.max_w = std::max(t.max_w, seq);
    h_lat_.add(now_rt - int64_t(ts));
  }
}

void Engine::keepalive_scan(int64_t now) {
  if (o_.keepalive <= 0) return;
  int64_t limit = int64_t(o_.keepalive) * 1000000000LL / 2;
  for (Client& c : cl_) {
    if ((c.st == St::Ready || c.st == St::WaitSuback) && now - c.last_tx > limit) {
      c.out.append("\xc0\x00", 2);
      ++c_.ping_sent;
      c.last_tx = now;
      mark_dirty(c);
    }
  }
}

void Engine::write_ready_file() {
  if (ready_written_) return;
  ready_written_ = true;
  if (o_.ready_file.empty()) return;
  std::string tmp = o_.ready_file + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  std::fprintf(f, "{\"pid\":%d,\"connected\":%llu,\"realtime_ns\":%lld}\n", getpid(),
               (unsigned long long)c_.conn_ok, (long long)real_ns());
  std::fclose(f);
  std::rename(tmp.c_str(), o_.ready_file.c_str());
}

std::string Engine::summary() {
  Json j;
  j.open();
  j.key("mode").str(o_.mode);
  j.key("host").str(o_.host);
  j.key("port").num(o_.port);
  j.key("tls").boolean(o_.tls);
  j.key("qos").num(o_.qos);
  j.key("clients").num(uint64_t(cl_.size()));
  j.key("connect").open();
  j.key("attempted").num(c_.conn_attempted);
  j.key("connected").num(c_.conn_ok);
  j.key("failures").num(c_.tcp_fail + c_.tls_fail + c_.connack_fail + c_.conn_timeout);
  j.key("tcp_failures").num(c_.tcp_fail);
  j.key("tls_failures").num(c_.tls_fail);
  j.key("connack_failures").num(c_.connack_fail);
  j.key("timeouts").num(c_.conn_timeout);
  j.key("connack_codes").open();
  for (auto& [code, n] : c_.connack_codes) j.key(std::to_string(code).c_str()).num(n);
  j.close();
  j.key("tcp_errnos").open();
  for (auto& [e, n] : c_.tcp_errnos) j.key(strerror(e)).num(n);
  j.close();
  j.hist_ms("connect_ms", h_connect_);
  if (connect_done_mono_ > 0)
    j.key("connect_phase_s").num(double(connect_done_mono_ - connect_t0_) / 1e9);
  j.close();
  j.key("connect_failures").num(c_.tcp_fail + c_.tls_fail + c_.connack_fail + c_.conn_timeout);
  j.key("disconnects").num(c_.disconnects);
  j.key("protocol_errors").num(c_.protocol_errors);
  j.key("pings_sent").num(c_.ping_sent);
  j.key("pings_answered").num(c_.ping_resp);
  j.key("bytes_out").num(c_.bytes_out);
  j.key("bytes_in").num(c_.bytes_in);
  if (o_.mode == "pub" || c2d_sender_) {
    double dur = double(we_ - ws_) / 1e9;
    if (c2d_sender_) {
      j.key("targets").num(o_.targets);
      j.key("target_prefix").str(o_.target_prefix);
    }
    j.key("rate").num(o_.rate);
    j.key("size").num(o_.size);
    j.key("inflight_window").num(o_.inflight);
    j.key("window_start_ns").num(ws_ + rt_off_);
    j.key("window_end_ns").num(we_ + rt_off_);
    j.key("duration_s").num(dur);
    j.key("late_start").boolean(late_start_);
    j.key("offered").num(c_.offered_w);
    j.key("offered_per_s").num(dur > 0 ? double(c_.offered_w) / dur : 0.0);
    j.key("sent").num(c_.sent_w);
    j.key("sent_per_s").num(dur > 0 ? double(c_.sent_w) / dur : 0.0);
    j.key("acked").num(c_.acked_w);
    j.key("dropped_window_full").num(c_.drop_window_w);
    j.key("dropped_not_connected").num(c_.drop_nc_w);
    j.key("dropped_backpressure").num(c_.drop_bp_w);
    j.key("total").open();
    j.key("offered").num(c_.offered);
    j.key("sent").num(c_.sent);
    j.key("acked").num(c_.acked);
    j.key("dropped_window_full").num(c_.drop_window);
    j.key("dropped_not_connected").num(c_.drop_nc);
    j.key("dropped_backpressure").num(c_.drop_bp);
    uint64_t unacked = 0;
    for (auto& c : cl_) unacked += uint64_t(std::max(0, c.inflight));
    j.key("unacked_at_exit").num(unacked);
    j.key("unexpected_puback").num(c_.unexpected_puback);
    j.close();
    j.hist_ms("puback_latency_ms", h_puback_);
    j.hist_ms("send_lag_ms", h_lag_);
    if (cpu_ws_ >= 0 && cpu_we_ >= 0 && dur > 0)
      j.key("gen_cpu_pct").num(100.0 * double(cpu_we_ - cpu_ws_) / 1e9 / dur);
  } else if (o_.mode == "sub" || c2d_sink_) {
    if (c2d_sink_) c2d_sink_summary(j);
    const bool have_window = o_.window_end_ns > o_.window_start_ns;
    double dur = have_window ? double(o_.window_end_ns - o_.window_start_ns) / 1e9
                             : double(last_rx_rt_ - first_rx_rt_) / 1e9;
    uint64_t gap_lost = 0;
    uint64_t pubs = 0;
    for (auto& t : tracks_) {
      if (!t.uniq_w) continue;
      ++pubs;
      gap_lost += (t.max_w - t.min_w + 1) - t.uniq_w;
    }
    j.key("topic").str(!c2d_sink_ ? o_.topic_filter
                                  : o_.topic_style == "hub" ? std::string("devices/{id}/messages/devicebound/#")
                                                            : std::string("bench/{id}/c2d/#"));
    j.key("suback").num(suback_code_);
    j.key("window_start_ns").num(o_.window_start_ns);
    j.key("window_end_ns").num(o_.window_end_ns);
    j.key("duration_s").num(dur);
    j.key("received").num(c_.received);
    j.key("foreign").num(c_.foreign);
    j.key("received_in_window").num(recv_w_ts_ + dup_w_);
    j.key("unique_in_window").num(uniq_w_);
    j.key("delivered_in_window").num(recv_w_rt_);
    j.key("delivered_per_s").num(dur > 0 ? double(recv_w_rt_) / dur : 0.0);
    j.key("dup").num(dup_);
    j.key("dup_in_window").num(dup_w_);
    j.key("gap_lost").num(gap_lost);
    j.key("publishers_seen").num(pubs);
    j.key("first_rx_ns").num(first_rx_rt_);
    j.key("last_rx_ns").num(last_rx_rt_);
    j.hist_ms("latency_ms", h_lat_);
    j.key("per_second").open_arr();
    for (auto v : per_sec_) j.num(v);
    j.close_arr();
    if (c_.received_qos2) j.key("received_qos2_unsupported").num(c_.received_qos2);
    if (cpu_ws_ >= 0 && cpu_we_ >= 0 && have_window && dur > 0)
      j.key("cpu_window_pct").num(100.0 * double(cpu_we_ - cpu_ws_) / 1e9 / dur);
  } else if (is_rr_mode()) {
    rr_summary(j);
  } else {
    j.key("hold_s").num(o_.duration);
  }
  j.key("cpu_s").num(double(cpu_ns_self()) / 1e9);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  j.key("maxrss_kb").num(int64_t(ru.ru_maxrss));
  j.close();
  return j.text();
}

int Engine::run() {
  resolve();
  init_tls();
  load_clients();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) die("epoll_create1 failed");
  rt_off_ = real_ns() - mono_ns();
  run_t0_rt_ = real_ns();
  if (c2d_sender_) c2d_build_templates();
  const bool is_pub = o_.mode == "pub" || c2d_sender_, is_sub = o_.mode == "sub", is_idle = o_.mode == "idle";
  const bool is_req = is_requester(), is_meth = o_.mode == "methods" || c2d_sink_;
  int64_t next_rr_scan = 0;
  period_ns_ = 1e9 / o_.rate;
  connect_t0_ = mono_ns();
  const int64_t tick_ns = int64_t(o_.tick_us * 1000.0);
  const int64_t conn_gap = int64_t(1e9 / o_.connect_rate);
  int64_t hold_end = -1;        // idle
  int64_t sub_end = -1;         // sub
  int64_t drain_end = -1;       // pub
  int64_t next_ka = mono_ns() + 1000000000LL;
  int64_t next_progress = mono_ns() + 1000000000LL;
  if (is_sub || is_meth) {
    if (o_.exit_at_ns) sub_end = o_.exit_at_ns - rt_off_;
    else if (o_.duration > 0 && !(c2d_sink_ && o_.window_end_ns <= o_.window_start_ns))
      sub_end = mono_ns() + int64_t(o_.duration * 1e9);  // c2d-sink without --window: see c2d_sink_on_ready
  }
  std::vector<epoll_event> evs(4096);
  bool finished = false;

  while (!finished) {
    int64_t now = mono_ns();
    if (g_stop) break;

    // --- connection ramp
    while (next_connect_ < cl_.size() && pending_ < o_.max_pending_connects &&
           now >= connect_t0_ + int64_t(next_connect_) * conn_gap) {
      start_connect(cl_[next_connect_++]);
    }
    if (connect_done_mono_ < 0 && next_connect_ == cl_.size() && pending_ == 0) {
      connect_done_mono_ = now;
      if (o_.progress)
        std::fprintf(stderr, "[loadgen] %s: connect phase done in %.2fs: %llu/%zu connected\n",
                     o_.mode.c_str(), double(now - connect_t0_) / 1e9, (unsigned long long)c_.conn_ok,
                     cl_.size());
      if (is_idle) {
        write_ready_file();
        hold_end = now + int64_t(o_.duration * 1e9);
      }
      if (is_pub) {
        write_ready_file();
        if (pub_start_ < 0) {
          pub_start_ = o_.start_at_ns ? std::max(now, o_.start_at_ns - rt_off_) : now + 500000000LL;
          if (o_.start_at_ns && o_.start_at_ns - rt_off_ < now) late_start_ = true;
        }
      }
    }
    // twin / methods / rpc-caller: ready once every connected client has its SUBACK (or after
    // --connect-timeout more seconds, so that a broker that never answers cannot hang the run)
    if (per_client_sub() && connect_done_mono_ > 0 && !ready_written_ &&
        (waiting_suback_ == 0 || now - connect_done_mono_ > int64_t(o_.connect_timeout * 1e9))) {
      if (o_.progress)
        std::fprintf(stderr, "[loadgen] %s: %llu subscribed, %llu SUBACK failures, %llu still waiting\n",
                     o_.mode.c_str(), (unsigned long long)c_.subscribed, (unsigned long long)c_.suback_fail,
                     (unsigned long long)waiting_suback_);
      write_ready_file();
      if (c2d_sink_ && !o_.exit_at_ns) {
        c2d_sink_on_ready(now + rt_off_);
        if (c2d_window_derived_) sub_end = o_.window_end_ns - rt_off_ + int64_t(o_.drain * 1e9);
      }
      if (is_req && pub_start_ < 0) {
        pub_start_ = o_.start_at_ns ? std::max(now, o_.start_at_ns - rt_off_) : now + 500000000LL;
        if (o_.start_at_ns && o_.start_at_ns - rt_off_ < now) late_start_ = true;
      }
    }
    if ((is_pub || is_req) && pub_start_ < 0 && o_.start_at_ns && now >= o_.start_at_ns - rt_off_) {
      pub_start_ = o_.start_at_ns - rt_off_;  // connect phase overran the start time
      late_start_ = true;
    }
    if ((is_pub || is_req) && pub_start_ >= 0 && ws_ == 0) {
      ws_ = pub_start_ + int64_t(o_.warmup * 1e9);
      we_ = ws_ + int64_t(o_.duration * 1e9);
      pub_end_ = we_ + int64_t(o_.cooldown * 1e9);
    }
    // connect timeouts (cheap scan only while connects are pending)
    if (pending_ > 0) {
      int64_t lim = int64_t(o_.connect_timeout * 1e9);
      static int64_t next_scan = 0;
      if (now >= next_scan) {
        next_scan = now + 200000000LL;
        for (Client& c : cl_) {
          if (pending_state(c) && now - c.t_connect_start > lim) {
            ++c_.conn_timeout;
            close_client(c, false);
          }
        }
      }
    }

    // --- publishing schedule
    if (is_pub && pub_start_ >= 0 && !pub_done_) {
      if (cpu_ws_ < 0 && now >= ws_) cpu_ws_ = cpu_ns_self();
      int budget = 50000;
      while (budget-- > 0) {
        int64_t t = pub_start_ + int64_t(double(k_) * period_ns_);
        if (t > now) break;
        if (t >= pub_end_) { pub_done_ = true; break; }
        emit(k_, t);
        ++k_;
      }
      if (cpu_we_ < 0 && now >= we_) cpu_we_ = cpu_ns_self();
      if (pub_done_) drain_end = now + int64_t(o_.drain * 1e9);
    }
    // --- twin / rpc-caller: closed loop (or open loop capped by --rate), window-limited
    if (is_req && pub_start_ >= 0 && !pub_done_ && now >= pub_start_) {
      if (cpu_ws_ < 0 && now >= ws_) cpu_ws_ = cpu_ns_self();
      if (o_.rate_set) {
        int budget = 50000;
        while (budget-- > 0) {
          int64_t t = pub_start_ + int64_t(double(k_) * period_ns_);
          if (t > now) break;
          if (t >= pub_end_) { pub_done_ = true; break; }
          rr_emit(k_, t);
          ++k_;
        }
      } else {
        if (!rr_started_) {
          rr_started_ = true;
          for (Client& c : cl_) rr_fill(c, now);
        }
        if (now >= pub_end_) pub_done_ = true;
      }
      if (cpu_we_ < 0 && now >= we_) cpu_we_ = cpu_ns_self();
      if (pub_done_) drain_end = now + int64_t(o_.drain * 1e9);
    }
    if (is_req && now >= next_rr_scan) {
      next_rr_scan = now + 200000000LL;
      rr_scan(now);
    }
    if (is_req && pub_done_) {
      bool idle_inflight = true;
      for (auto& c : cl_) if (c.st == St::Ready && c.inflight > 0) { idle_inflight = false; break; }
      if (idle_inflight || now >= drain_end) finished = true;
    }
    if (is_pub && pub_done_) {
      bool idle_inflight = true;
      if (o_.qos)
        for (auto& c : cl_) if (c.st == St::Ready && c.inflight > 0) { idle_inflight = false; break; }
      if (idle_inflight || now >= drain_end) finished = true;
    }
    if (is_idle && hold_end > 0 && now >= hold_end) finished = true;
    if ((is_sub || is_meth) && sub_end > 0 && now >= sub_end) finished = true;
    if ((is_sub || is_meth) && o_.window_end_ns > o_.window_start_ns) {
      int64_t now_rt = now + rt_off_;
      if (cpu_ws_ < 0 && now_rt >= o_.window_start_ns) cpu_ws_ = cpu_ns_self();
      if (cpu_we_ < 0 && now_rt >= o_.window_end_ns) cpu_we_ = cpu_ns_self();
    }
    if (is_sub && connect_done_mono_ > 0 && c_.conn_ok == 0) die("subscriber could not connect");

    // --- keepalive, progress
    if (now >= next_ka) {
      keepalive_scan(now);
      next_ka = now + 1000000000LL;
    }
    if (o_.progress && now >= next_progress) {
      next_progress = now + 1000000000LL;
      if (is_sub)
        std::fprintf(stderr, "[loadgen] sub: received=%llu unique_w=%llu dup=%llu\n",
                     (unsigned long long)c_.received, (unsigned long long)uniq_w_, (unsigned long long)dup_);
      else if (c2d_sink_)
        std::fprintf(stderr, "[loadgen] c2d-sink: connected=%llu subscribed=%llu received=%llu unique_w=%llu "
                     "dup=%llu\n", (unsigned long long)c_.conn_ok, (unsigned long long)c_.subscribed,
                     (unsigned long long)c_.received, (unsigned long long)uniq_w_, (unsigned long long)dup_);
      else if (is_meth)
        std::fprintf(stderr, "[loadgen] methods: connected=%llu subscribed=%llu requests=%llu answered=%llu\n",
                     (unsigned long long)c_.conn_ok, (unsigned long long)c_.subscribed,
                     (unsigned long long)c_.m_requests, (unsigned long long)c_.m_answered);
      else if (is_req)
        std::fprintf(stderr, "[loadgen] %s: connected=%llu subscribed=%llu sent=%llu done=%llu err=%llu "
                     "timeouts=%llu\n", o_.mode.c_str(), (unsigned long long)c_.conn_ok,
                     (unsigned long long)c_.subscribed, (unsigned long long)c_.op_sent,
                     (unsigned long long)c_.op_done, (unsigned long long)c_.op_err,
                     (unsigned long long)c_.op_timeout);
      else
        std::fprintf(stderr, "[loadgen] %s: connected=%llu pending=%d sent=%llu acked=%llu drop_win=%llu\n",
                     o_.mode.c_str(), (unsigned long long)c_.conn_ok, pending_, (unsigned long long)c_.sent,
                     (unsigned long long)c_.acked, (unsigned long long)c_.drop_window);
    }
    flush_dirty();
    if (finished) break;

    // --- wait
    int64_t due = now + 100000000LL;
    if (next_connect_ < cl_.size() && pending_ < o_.max_pending_connects)
      due = std::min(due, connect_t0_ + int64_t(next_connect_) * conn_gap);
    if (is_pub && pub_start_ >= 0 && !pub_done_)
      due = std::min(due, pub_start_ + int64_t(double(k_) * period_ns_));
    if (is_req && pub_start_ >= 0 && !pub_done_) {
      if (o_.rate_set) due = std::min(due, pub_start_ + int64_t(double(k_) * period_ns_));
      else if (!rr_started_) due = std::min(due, pub_start_);
      if (cpu_ws_ < 0) due = std::min(due, ws_);
      else if (cpu_we_ < 0) due = std::min(due, we_);
      due = std::min(due, pub_end_);
    }
    if (is_req) due = std::min(due, next_rr_scan);
    if ((is_sub || is_meth) && o_.window_end_ns > o_.window_start_ns) {
      if (cpu_ws_ < 0) due = std::min(due, o_.window_start_ns - rt_off_);
      else if (cpu_we_ < 0) due = std::min(due, o_.window_end_ns - rt_off_);
    }
    int64_t wait = due - mono_ns();
    if (wait < 0) wait = 0;
    else if (wait < tick_ns) wait = tick_ns;
    timespec ts{time_t(wait / 1000000000LL), long(wait % 1000000000LL)};
    int n = epoll_pwait2(ep_, evs.data(), int(evs.size()), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      die(std::string("epoll_pwait2: ") + strerror(errno));
    }
    for (int i = 0; i < n; ++i) on_event(cl_[evs[size_t(i)].data.u32], evs[size_t(i)].events);
  }

  // --- shutdown: DISCONNECT everyone, best-effort flush, close.
  shutting_down_ = true;
  if ((is_pub || is_req) && cpu_we_ < 0) cpu_we_ = cpu_ns_self();
  for (Client& c : cl_) {
    if (c.st == St::Ready || c.st == St::WaitSuback) {
      c.out.append("\xe0\x00", 2);
      flush(c);
    }
  }
  std::string js = summary();
  for (Client& c : cl_) close_client(c, false);
  if (!o_.quiet_json) {
    std::fputs(js.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (!o_.stats_file.empty()) {
    std::string tmp = o_.stats_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f) {
      std::fputs(js.c_str(), f);
      std::fputc('\n', f);
      std::fclose(f);
      std::rename(tmp.c_str(), o_.stats_file.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && o.mode != "sub" && rlim_t(o.clients) + 64 > rl.rlim_cur)
    die("--clients " + std::to_string(o.clients) + " exceeds the open-file limit " +
        std::to_string(rl.rlim_cur) + "; run several processes (see --bind)");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (o.tls) OPENSSL_init_ssl(0, nullptr);
  Engine e(o);
  return e.run();
}
