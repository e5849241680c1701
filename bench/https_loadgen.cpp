// fleethub_https_loadgen: closed-loop device-telemetry generator over TLS, HTTPS or MQTT.
//
// Single-threaded epoll loop, non-blocking sockets, OpenSSL (TLS 1.2/1.3, the server is verified
// against --cafile, SNI --sni). N keep-alive connections, each with exactly ONE request in flight:
// the next one is written when the previous answer has been read (no pipelining).
// Modes:
//   https  POST /devices/{id}/messages/events?api-version=... with `Authorization: <SAS>`, HTTP/1.1
//          keep-alive; an answer is the status line + headers (+ body by Content-Length or chunked);
//          2xx = completed, anything else = error.
//   mqtt   MQTT 3.1.1: CONNECT, then PUBLISH QoS 1 to devices/{id}/messages/events/ and wait for its
//          PUBACK before the next one (the Mosquitto reference of the same shape).
// Every request carries the fixed-size JSON payload of the fan-in benchmark (bench/README.md,
// "Payload format": pub = connection index, seq = per-connection sequence, ts = send time).
// The summary JSON goes to stdout (and --stats-file); bench/README.md "HTTPS ingest" documents it.
//
// Build: target `fleethub_https_loadgen` (bench/CMakeLists.txt), or standalone:
//   g++ -std=c++20 -O2 -o fleethub_https_loadgen bench/https_loadgen.cpp -lssl -lcrypto

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int64_t clock_ns(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}
int64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
int64_t real_ns() { return clock_ns(CLOCK_REALTIME); }
int64_t cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t(ru.ru_utime.tv_sec) + ru.ru_stime.tv_sec) * 1000000000LL +
         (int64_t(ru.ru_utime.tv_usec) + ru.ru_stime.tv_usec) * 1000LL;
}

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "fleethub_https_loadgen: %s\n", m.c_str());
  std::exit(2);
}

struct Options {
  std::string mode;  // https | mqtt
  std::string host = "127.0.0.1";
  int port = 0;
  bool tls = true;
  std::string cafile, sni = "localhost";
  bool verify_host = true;
  std::string tls_max;  // "", "1.2" or "1.3"
  int connections = 16;
  std::string credentials;  // https: id<TAB>token ; mqtt: client_id[<TAB>user<TAB>pass]
  std::string prefix = "bench";
  std::string hostname = "localhost";  // HTTP Host header
  std::string api_version = "2020-03-13";
  int size = 256;
  double warmup = 2, duration = 10, drain = 5, connect_timeout = 15;
  int64_t start_at_ns = 0;  // realtime; 0 = 0.2 s after every connection is ready
  std::string stats_file;
  bool quiet = false;
};

void usage() {
  std::fputs(
      "usage: fleethub_https_loadgen https|mqtt --port P [options]\n"
      "  --host H (127.0.0.1)  --cafile F (verify the server; without it: no verification)\n"
      "  --sni NAME (localhost)  --no-verify-host  --tls-max 1.2|1.3  --plain (no TLS)\n"
      "  --connections N (16)  --credentials FILE  --prefix P (bench: ids P0..P{N-1} without a file)\n"
      "      https: one 'device_id<TAB>sas_token' line per connection (required)\n"
      "      mqtt:  'client_id[<TAB>username<TAB>password]' per connection (optional)\n"
      "  --hostname H (Host header, localhost)  --api-version V (2020-03-13)  --size B (256, >= 79)\n"
      "  --warmup S (2) --duration S (10) --drain S (5) --connect-timeout S (15)\n"
      "  --start-at REALTIME_NS  --stats-file F  --no-stdout\n",
      stderr);
}

Options parse(int argc, char** argv) {
  if (argc < 2) { usage(); std::exit(2); }
  Options o;
  o.mode = argv[1];
  if (o.mode != "https" && o.mode != "mqtt") { usage(); std::exit(2); }
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::atoi(val().c_str());
    else if (a == "--cafile") o.cafile = val();
    else if (a == "--sni") o.sni = val();
    else if (a == "--no-verify-host") o.verify_host = false;
    else if (a == "--tls-max") o.tls_max = val();
    else if (a == "--plain") o.tls = false;
    else if (a == "--connections") o.connections = std::atoi(val().c_str());
    else if (a == "--credentials") o.credentials = val();
    else if (a == "--prefix") o.prefix = val();
    else if (a == "--hostname") o.hostname = val();
    else if (a == "--api-version") o.api_version = val();
    else if (a == "--size") o.size = std::atoi(val().c_str());
    else if (a == "--warmup") o.warmup = std::atof(val().c_str());
    else if (a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "--drain") o.drain = std::atof(val().c_str());
    else if (a == "--connect-timeout") o.connect_timeout = std::atof(val().c_str());
    else if (a == "--start-at") o.start_at_ns = std::atoll(val().c_str());
    else if (a == "--stats-file") o.stats_file = val();
    else if (a == "--no-stdout") o.quiet = true;
    else if (a == "-h" || a == "--help") { usage(); std::exit(0); }
    else die("unknown option " + a);
  }
  if (o.port <= 0) die("--port is required");
  if (o.connections < 1) die("--connections must be >= 1");
  if (o.size < 79) die("--size must be >= 79");
  if (o.mode == "https" && o.credentials.empty()) die("https mode needs --credentials (id<TAB>token lines)");
  return o;
}

// ---- payload (the fan-in format: fixed offsets, valid JSON) ----------------------------
constexpr size_t kPubOff = 7, kSeqOff = 24, kTsOff = 50;
void put_num(char* p, size_t w, uint64_t v) {
  char* e = p + w;
  do { *--e = char('0' + v % 10); v /= 10; } while (v && e > p);
  while (e > p) *--e = ' ';
}
std::string make_payload(uint32_t pub, size_t size) {
  std::string s(size, 'x');
  std::memcpy(&s[0], "{\"pub\":", 7);
  put_num(&s[kPubOff], 10, pub);
  std::memcpy(&s[17], ",\"seq\":", 7);
  put_num(&s[kSeqOff], 20, 0);
  std::memcpy(&s[44], ",\"ts\":", 6);
  put_num(&s[kTsOff], 19, 0);
  std::memcpy(&s[69], ",\"pad\":\"", 8);
  s[size - 2] = '"';
  s[size - 1] = '}';
  return s;
}

// ---- MQTT 3.1.1 encoding --------------------------------------------------------------
void put_remlen(std::string& s, size_t n) {
  do {
    uint8_t b = n % 128;
    n /= 128;
    s += char(n ? b | 0x80 : b);
  } while (n);
}
void put_u16(std::string& s, unsigned v) { s += char((v >> 8) & 0xff); s += char(v & 0xff); }
void put_str(std::string& s, std::string_view v) { put_u16(s, unsigned(v.size())); s.append(v); }

// ---- HTTP/1.1 response framing ----------------------------------------------------------
bool iprefix(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (std::tolower(uint8_t(s[i])) != std::tolower(uint8_t(p[i]))) return false;
  return true;
}
bool icontains(std::string_view s, std::string_view p) {
  for (size_t i = 0; i + p.size() <= s.size(); ++i)
    if (iprefix(s.substr(i), p)) return true;
  return false;
}

// One response at the front of `in`. Returns bytes consumed (> 0), 0 if incomplete, -1 if malformed.
long parse_response(std::string_view in, int& status, bool& close) {
  size_t hend = in.find("\r\n\r\n");
  if (hend == std::string_view::npos) return in.size() > 65536 ? -1 : 0;
  std::string_view head = in.substr(0, hend + 2);
  if (head.size() < 12 || !iprefix(head, "HTTP/1.")) return -1;
  status = std::atoi(std::string(head.substr(9, 3)).c_str());
  if (status < 100 || status > 599) return -1;
  close = head[7] == '0';  // HTTP/1.0: close unless keep-alive
  long clen = -1;
  bool chunked = false;
  size_t pos = head.find("\r\n") + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, e - pos);
    pos = e + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon), v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    if (name.size() == 14 && iprefix(name, "content-length")) clen = std::atol(std::string(v).c_str());
    else if (name.size() == 17 && iprefix(name, "transfer-encoding")) chunked = icontains(v, "chunked");
    else if (name.size() == 10 && iprefix(name, "connection")) {
      if (icontains(v, "close")) close = true;
      else if (icontains(v, "keep-alive")) close = false;
    }
  }
  size_t body = hend + 4;
  if (status < 200 || status == 204 || status == 304) return long(body);
  if (chunked) {
    size_t p = body;
    for (;;) {
      size_t e = in.find("\r\n", p);
      if (e == std::string_view::npos) return 0;
      unsigned long n = std::strtoul(std::string(in.substr(p, e - p)).c_str(), nullptr, 16);
      p = e + 2;
      if (n == 0) {  // trailers end with an empty line
        for (;;) {
          size_t t = in.find("\r\n", p);
          if (t == std::string_view::npos) return 0;
          bool empty = t == p;
          p = t + 2;
          if (empty) return long(p);
        }
      }
      if (in.size() < p + n + 2) return 0;
      p += n + 2;
    }
  }
  if (clen < 0) return -1;  // body delimited by close: not something a keep-alive client can use
  return in.size() >= body + size_t(clen) ? long(body + size_t(clen)) : 0;
}

// ---- the engine -------------------------------------------------------------------------
enum class St : uint8_t { Closed, Connecting, Handshake, Connack, Ready };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  St st = St::Closed;
  bool out_armed = false;
  uint32_t idx = 0;
  std::string id, token, user, pass;
  std::string req;  // request template: HTTP request or MQTT PUBLISH, payload at pay_off
  size_t pay_off = 0, pid_off = 0;
  std::string out;
  size_t out_off = 0;
  std::string in;
  bool busy = false;
  int64_t t_sent = 0;
  uint64_t seq = 0;
  uint16_t pid = 0;
  int64_t t_connect = 0, retry_at = 0;
  bool ever_ready = false;
};

class Engine {
 public:
  explicit Engine(Options o) : o_(std::move(o)), mqtt_(o_.mode == "mqtt") {}
  int run();

 private:
  void init_tls();
  void load();
  void connect(Conn& c);
  void on_connected(Conn& c);
  void handshake(Conn& c);
  void on_ready(Conn& c);
  void close(Conn& c, bool lost);
  void arm_out(Conn& c, bool on);
  void flush(Conn& c);
  void read(Conn& c);
  void parse(Conn& c);
  void send_next(Conn& c, int64_t now);
  void complete(Conn& c, int status, int64_t now, bool more = true);
  std::string summary();
  void emit(const std::string& s);
  bool sending(int64_t now) const { return started_ && now < we_ && !g_stop; }

  Options o_;
  const bool mqtt_;
  sockaddr_storage addr_{};
  socklen_t addrlen_ = 0;
  SSL_CTX* ctx_ = nullptr;
  int ep_ = -1;
  std::vector<Conn> c_;
  bool started_ = false, kicked_ = false, late_start_ = false;
  int64_t st_ = 0, ws_ = 0, we_ = 0, rt_off_ = 0;  // monotonic ns; rt_off_ = realtime - monotonic
  int64_t cpu_ws_ = -1, cpu_we_ = -1, t_cpu_ws_ = 0, t_cpu_we_ = 0;
  std::vector<uint32_t> lat_us_;
  std::map<int, uint64_t> status_;
  uint64_t sent_w_ = 0, ok_w_ = 0, err_w_ = 0, lost_w_ = 0;
  uint64_t sent_ = 0, ok_ = 0, err_ = 0, lost_ = 0, proto_err_ = 0;
  uint64_t attempts_ = 0, connected_ = 0, tcp_fail_ = 0, tls_fail_ = 0, refused_ = 0, disconnects_ = 0;
  uint64_t bytes_out_ = 0, bytes_in_ = 0;
  std::vector<uint32_t> connect_us_;
  std::string tls_version_, tls_cipher_;
};

void Engine::init_tls() {
  if (!o_.tls) return;
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (o_.tls_max == "1.2") SSL_CTX_set_max_proto_version(ctx_, TLS1_2_VERSION);
  else if (o_.tls_max == "1.3") SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
  else if (!o_.tls_max.empty()) die("--tls-max must be 1.2 or 1.3");
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!o_.cafile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, o_.cafile.c_str(), nullptr) != 1) die("cannot load --cafile " + o_.cafile);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
}

void Engine::load() {
  std::vector<std::vector<std::string>> rows;
  if (!o_.credentials.empty()) {
    std::ifstream f(o_.credentials);
    if (!f) die("cannot open --credentials " + o_.credentials);
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      std::vector<std::string> r;
      for (size_t a = 0;;) {
        size_t b = line.find('\t', a);
        r.push_back(line.substr(a, b == std::string::npos ? std::string::npos : b - a));
        if (b == std::string::npos) break;
        a = b + 1;
      }
      rows.push_back(std::move(r));
    }
    if (rows.size() < size_t(o_.connections))
      die("--credentials has " + std::to_string(rows.size()) + " lines, need " + std::to_string(o_.connections));
  }
  c_.resize(size_t(o_.connections));
  for (size_t i = 0; i < c_.size(); ++i) {
    Conn& c = c_[i];
    c.idx = uint32_t(i);
    c.id = rows.empty() ? o_.prefix + std::to_string(i) : rows[i][0];
    std::string payload = make_payload(uint32_t(i), size_t(o_.size));
    if (mqtt_) {
      if (rows.size() > i && rows[i].size() > 1) c.user = rows[i][1];
      if (rows.size() > i && rows[i].size() > 2) c.pass = rows[i][2];
      std::string topic = "devices/" + c.id + "/messages/events/";
      c.req += char(0x32);  // PUBLISH, QoS 1
      put_remlen(c.req, 2 + topic.size() + 2 + payload.size());
      put_str(c.req, topic);
      c.pid_off = c.req.size();
      put_u16(c.req, 0);
    } else {
      if (rows[i].size() < 2 || rows[i][1].empty()) die("credentials line " + std::to_string(i + 1) + " has no token");
      c.token = rows[i][1];
      c.req = "POST /devices/" + c.id + "/messages/events?api-version=" + o_.api_version + " HTTP/1.1\r\nHost: " +
              o_.hostname + "\r\nAuthorization: " + c.token +
              "\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(payload.size()) + "\r\n\r\n";
    }
    c.pay_off = c.req.size();
    c.req += payload;
  }
}

void Engine::arm_out(Conn& c, bool on) {
  if (c.fd < 0 || c.out_armed == on) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? uint32_t(EPOLLOUT) : 0u);
  ev.data.u32 = c.idx;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.out_armed = on;
}

void Engine::connect(Conn& c) {
  ++attempts_;
  c.t_connect = mono_ns();
  int fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr_), addrlen_) != 0 && errno != EINPROGRESS) {
    ++tcp_fail_;
    ::close(fd);
    c.retry_at = mono_ns() + 100'000'000;
    return;
  }
  c.fd = fd;
  c.st = St::Connecting;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = c.idx;
  epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  c.out_armed = true;
}

void Engine::on_connected(Conn& c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    ++tcp_fail_;
    close(c, true);
    return;
  }
  if (!o_.tls) {
    arm_out(c, false);
    on_ready(c);
    return;
  }
  c.ssl = SSL_new(ctx_);
  SSL_set_fd(c.ssl, c.fd);
  if (!o_.sni.empty()) {
    SSL_set_tlsext_host_name(c.ssl, o_.sni.c_str());
    if (o_.verify_host && !o_.cafile.empty()) SSL_set1_host(c.ssl, o_.sni.c_str());
  }
  c.st = St::Handshake;
  handshake(c);
}

void Engine::handshake(Conn& c) {
  ERR_clear_error();
  int r = SSL_connect(c.ssl);
  if (r == 1) {
    arm_out(c, false);
    if (tls_version_.empty()) {
      tls_version_ = SSL_get_version(c.ssl);
      tls_cipher_ = SSL_get_cipher_name(c.ssl);
    }
    on_ready(c);
    return;
  }
  int e = SSL_get_error(c.ssl, r);
  if (e == SSL_ERROR_WANT_READ) { arm_out(c, false); return; }
  if (e == SSL_ERROR_WANT_WRITE) { arm_out(c, true); return; }
  if (++tls_fail_ <= 3) {
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    long v = SSL_get_verify_result(c.ssl);
    std::fprintf(stderr, "fleethub_https_loadgen: TLS handshake failed: %s (verify: %s)\n", buf,
                 X509_verify_cert_error_string(v));
  }
  close(c, true);
}

void Engine::on_ready(Conn& c) {
  if (mqtt_) {  // CONNECT first; ready on CONNACK 0
    std::string body;
    put_str(body, "MQTT");
    body += char(4);
    body += char(0x02 | (c.user.empty() ? 0 : 0x80) | (c.pass.empty() ? 0 : 0x40));  // clean session
    put_u16(body, 300);                                                                // keep-alive, s
    put_str(body, c.id);
    if (!c.user.empty()) put_str(body, c.user);
    if (!c.pass.empty()) put_str(body, c.pass);
    c.out += char(0x10);
    put_remlen(c.out, body.size());
    c.out += body;
    c.st = St::Connack;
    flush(c);
    return;
  }
  c.st = St::Ready;
  ++connected_;
  connect_us_.push_back(uint32_t((mono_ns() - c.t_connect) / 1000));
  c.ever_ready = true;
  int64_t now = mono_ns();
  if (sending(now) && now >= st_) send_next(c, now);
}

// lost: an error ended the connection (back off before reconnecting; a request in flight is lost).
void Engine::close(Conn& c, bool lost) {
  if (c.st == St::Closed) return;
  int64_t now = mono_ns();
  if (c.st == St::Ready) ++disconnects_;
  if (c.busy && lost) {  // the request's fate is unknown: neither completed nor an error status
    ++lost_;
    if (now >= ws_ && now < we_) ++lost_w_;
  }
  c.busy = false;
  if (c.ssl) { SSL_free(c.ssl); c.ssl = nullptr; }
  if (c.fd >= 0) { ::close(c.fd); c.fd = -1; }
  c.st = St::Closed;
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
  c.out_armed = false;
  c.retry_at = now + (lost ? 20'000'000 : 0);  // reconnect after 20 ms unless the close was orderly
}

void Engine::flush(Conn& c) {
  while (c.fd >= 0 && c.out_off < c.out.size()) {
    size_t len = c.out.size() - c.out_off;
    ssize_t n;
    if (c.ssl) {
      ERR_clear_error();
      int r = SSL_write(c.ssl, c.out.data() + c.out_off, int(len));
      if (r <= 0) {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) { arm_out(c, true); return; }
        if (e == SSL_ERROR_WANT_READ) return;
        close(c, true);
        return;
      }
      n = r;
    } else {
      n = ::send(c.fd, c.out.data() + c.out_off, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) { arm_out(c, true); return; }
        close(c, true);
        return;
      }
    }
    c.out_off += size_t(n);
    bytes_out_ += uint64_t(n);
  }
  c.out.clear();
  c.out_off = 0;
  arm_out(c, false);
}

void Engine::read(Conn& c) {
  char buf[16384];
  bool eof = false;  // parse what came with the EOF first: "Connection: close" answers end that way
  while (!eof) {
    ssize_t n;
    if (c.ssl) {
      ERR_clear_error();
      int r = SSL_read(c.ssl, buf, sizeof buf);
      if (r <= 0) {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_WANT_WRITE) { arm_out(c, true); break; }
        eof = true;
        continue;
      }
      n = r;
    } else {
      n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) { eof = true; continue; }
    }
    bytes_in_ += uint64_t(n);
    c.in.append(buf, size_t(n));
  }
  parse(c);
  if (eof) close(c, true);
}

void Engine::parse(Conn& c) {
  size_t off = 0;
  int64_t now = mono_ns();
  while (c.st != St::Closed && off < c.in.size()) {
    std::string_view in(c.in.data() + off, c.in.size() - off);
    if (!mqtt_) {
      int status = 0;
      bool cl = false;
      long n = parse_response(in, status, cl);
      if (n == 0) break;
      if (n < 0) { ++proto_err_; close(c, true); return; }
      off += size_t(n);
      if (status < 200) continue;  // interim (100 Continue)
      if (!c.busy) { ++proto_err_; continue; }
      complete(c, status, now, !cl);
      if (cl) { close(c, false); return; }  // the server ends the connection: reconnect, then go on
      continue;
    }
    // MQTT: fixed header, remaining length (1..4 bytes), body
    size_t rl = 0, i = 1;
    int shift = 0;
    bool have = false;
    while (i < in.size() && i <= 4) {
      uint8_t b = uint8_t(in[i++]);
      rl |= size_t(b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) { have = true; break; }
    }
    if (!have) {
      if (in.size() > 5) { ++proto_err_; close(c, true); return; }
      break;
    }
    if (in.size() < i + rl) break;
    uint8_t type = uint8_t(in[0]) >> 4;
    const char* p = in.data() + i;
    off += i + rl;
    if (type == 2 && rl >= 2 && c.st == St::Connack) {  // CONNACK
      if (p[1] != 0) { ++refused_; close(c, true); return; }
      c.st = St::Ready;
      ++connected_;
      connect_us_.push_back(uint32_t((now - c.t_connect) / 1000));
      c.ever_ready = true;
      if (sending(now) && now >= st_) send_next(c, now);
    } else if (type == 4 && rl >= 2) {  // PUBACK
      uint16_t pid = uint16_t((uint8_t(p[0]) << 8) | uint8_t(p[1]));
      if (c.busy && pid == c.pid) complete(c, 200, now);
      else ++proto_err_;
    }
  }
  if (off) c.in.erase(0, off);
}

void Engine::send_next(Conn& c, int64_t now) {
  if (c.busy || c.st != St::Ready) return;
  c.out.assign(c.req);
  char* pay = &c.out[c.pay_off];
  put_num(pay + kSeqOff, 20, c.seq++);
  put_num(pay + kTsOff, 19, uint64_t(now + rt_off_));
  if (mqtt_) {
    c.pid = uint16_t(c.pid % 65535 + 1);
    c.out[c.pid_off] = char(c.pid >> 8);
    c.out[c.pid_off + 1] = char(c.pid & 0xff);
  }
  c.busy = true;
  c.t_sent = now;
  ++sent_;
  if (now >= ws_ && now < we_) ++sent_w_;
  flush(c);
}

void Engine::complete(Conn& c, int status, int64_t now, bool more) {
  c.busy = false;
  bool ok = status >= 200 && status < 300;
  bool inw = now >= ws_ && now < we_;
  ++status_[status];
  if (ok) {
    ++ok_;
    if (inw) {
      ++ok_w_;
      lat_us_.push_back(uint32_t(std::min<int64_t>((now - c.t_sent) / 1000, UINT32_MAX)));
    }
  } else {
    ++err_;
    if (inw) ++err_w_;
    if (err_ <= 3 && !mqtt_)
      std::fprintf(stderr, "fleethub_https_loadgen: HTTP %d from %s\n", status, c.id.c_str());
  }
  if (more && sending(now)) send_next(c, now);
}

int Engine::run() {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(o_.host.c_str(), std::to_string(o_.port).c_str(), &hints, &res);
  if (rc != 0 || !res) die("cannot resolve " + o_.host + ": " + gai_strerror(rc));
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  addrlen_ = res->ai_addrlen;
  freeaddrinfo(res);
  init_tls();
  load();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  rt_off_ = real_ns() - mono_ns();
  const int64_t t_begin = mono_ns();
  const int64_t connect_deadline = t_begin + int64_t(o_.connect_timeout * 1e9);
  for (Conn& c : c_) connect(c);
  std::vector<epoll_event> evs(256);
  int64_t drain_deadline = 0;
  for (;;) {
    int64_t now = mono_ns();
    if (!started_) {  // all ready (or the connect timeout): fix the schedule
      size_t ready = size_t(std::count_if(c_.begin(), c_.end(), [](const Conn& c) { return c.st == St::Ready; }));
      if (ready == c_.size() || (now >= connect_deadline && ready > 0)) {
        st_ = o_.start_at_ns ? o_.start_at_ns - rt_off_ : now + 200'000'000;
        if (st_ < now) { late_start_ = o_.start_at_ns != 0; st_ = now; }
        ws_ = st_ + int64_t(o_.warmup * 1e9);
        we_ = ws_ + int64_t(o_.duration * 1e9);
        started_ = true;
      } else if (now >= connect_deadline || g_stop) {
        std::fprintf(stderr, "fleethub_https_loadgen: no connection became ready\n");
        emit(summary());
        return 1;
      }
    }
    if (started_) {
      if (!kicked_ && now >= st_) {
        kicked_ = true;
        for (Conn& c : c_) send_next(c, now);
      }
      if (cpu_ws_ < 0 && now >= ws_) { cpu_ws_ = cpu_ns(); t_cpu_ws_ = now; }
      if (cpu_we_ < 0 && now >= we_) { cpu_we_ = cpu_ns(); t_cpu_we_ = now; }
      if (now >= we_ || g_stop) {
        if (!drain_deadline) drain_deadline = now + int64_t(o_.drain * 1e9);
        bool busy = std::any_of(c_.begin(), c_.end(), [](const Conn& c) { return c.busy && c.st == St::Ready; });
        if (!busy || now >= drain_deadline) break;
      }
    }
    for (Conn& c : c_)  // reconnect closed connections while the load runs (or during connect)
      if (c.st == St::Closed && now >= c.retry_at && (!started_ ? now < connect_deadline : sending(now)))
        connect(c);
    int64_t wake = started_ ? (now < st_ ? st_ : now < ws_ ? ws_ : now < we_ ? we_ : now + 10'000'000)
                            : now + 10'000'000;
    int timeout_ms = int(std::clamp<int64_t>((wake - now + 999'999) / 1'000'000, 0, 10));
    int n = epoll_wait(ep_, evs.data(), int(evs.size()), timeout_ms);
    if (n < 0 && errno != EINTR) die(std::string("epoll_wait: ") + std::strerror(errno));
    for (int k = 0; k < n; ++k) {
      Conn& c = c_[evs[size_t(k)].data.u32];
      uint32_t ev = evs[size_t(k)].events;
      switch (c.st) {
        case St::Closed: break;
        case St::Connecting:
          if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
          break;
        case St::Handshake: handshake(c); break;
        default:
          if (c.out_off < c.out.size()) flush(c);
          if (c.st != St::Closed && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) read(c);
      }
    }
  }
  if (cpu_we_ < 0) { cpu_we_ = cpu_ns(); t_cpu_we_ = mono_ns(); }
  emit(summary());
  for (Conn& c : c_) {  // polite goodbye: DISCONNECT (mqtt) and TLS close_notify, best effort
    if (c.st == St::Ready && mqtt_) {
      c.out.assign("\xe0\x00", 2);
      c.out_off = 0;
      flush(c);
    }
    if (c.ssl && c.st == St::Ready) SSL_shutdown(c.ssl);
    close(c, false);
  }
  if (ctx_) SSL_CTX_free(ctx_);
  ::close(ep_);
  return 0;
}

void Engine::emit(const std::string& s) {
  if (!o_.quiet) std::fputs(s.c_str(), stdout);
  if (o_.stats_file.empty()) return;
  std::string tmp = o_.stats_file + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(s.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), o_.stats_file.c_str());
  }
}

std::string Engine::summary() {
  auto num = [](auto v) {
    char b[64];
    double d = double(v);
    std::snprintf(b, sizeof b, d == double(int64_t(d)) ? "%.0f" : "%.3f", d);
    return std::string(b);
  };
  // a JSON object from "key", value text, "key", value text, ...
  auto obj = [](std::initializer_list<std::string> kv) {
    std::string s = "{";
    for (auto it = kv.begin(); it != kv.end(); it += 2) s += (s.size() > 1 ? ",\"" : "\"") + *it + "\":" + *(it + 1);
    return s + "}";
  };
  auto str = [](const std::string& v) { return "\"" + v + "\""; };
  auto cnt = [&](bool Conn::*f) { return std::count_if(c_.begin(), c_.end(), [f](const Conn& c) { return c.*f; }); };
  std::sort(lat_us_.begin(), lat_us_.end());
  std::sort(connect_us_.begin(), connect_us_.end());
  auto q = [](const std::vector<uint32_t>& v, double p) -> double {
    size_t r = size_t(p * double(v.size()) + 0.999999);
    return v.empty() ? 0.0 : double(v[std::min(v.size() - 1, r ? r - 1 : 0)]);
  };
  double mean = 0, dur = o_.duration;
  for (uint32_t v : lat_us_) mean += v;
  mean = lat_us_.empty() ? 0.0 : mean / double(lat_us_.size());
  double cpu_w = (cpu_ws_ >= 0 && cpu_we_ >= 0) ? double(cpu_we_ - cpu_ws_) / 1e9 : 0.0;
  double wall_w = cpu_ws_ >= 0 ? double(t_cpu_we_ - t_cpu_ws_) / 1e9 : 0.0;
  std::string codes = "{";
  for (auto& [k, v] : status_) codes += (codes.size() > 1 ? ",\"" : "\"") + std::to_string(k) + "\":" + num(v);
  return obj({"mode", str(o_.mode), "tls", o_.tls ? "true" : "false", "connections", num(o_.connections),
              "size", num(o_.size), "warmup_s", num(o_.warmup), "duration_s", num(dur),
              "window_start_ns", std::to_string(started_ ? ws_ + rt_off_ : 0),
              "window_end_ns", std::to_string(started_ ? we_ + rt_off_ : 0), "late_start", late_start_ ? "true" : "false",
              "sent", num(sent_w_), "completed", num(ok_w_), "errors", num(err_w_), "lost_in_flight", num(lost_w_),
              "msgs_per_s", num(dur > 0 ? double(ok_w_) / dur : 0.0),
              "latency_us", obj({"count", num(lat_us_.size()), "mean", num(mean), "p50", num(q(lat_us_, 0.5)),
                                 "p90", num(q(lat_us_, 0.9)), "p95", num(q(lat_us_, 0.95)), "p99", num(q(lat_us_, 0.99)),
                                 "p999", num(q(lat_us_, 0.999)), "max", num(q(lat_us_, 1.0))}),
              "status_codes", codes + "}", "client_cpu_s", num(cpu_w),
              "client_cpu_pct", num(wall_w > 0 ? 100.0 * cpu_w / wall_w : 0.0), "cpu_s_total", num(cpu_ns() / 1e9),
              "connect", obj({"attempted", num(attempts_), "ready", num(connected_), "tcp_failures", num(tcp_fail_),
                              "tls_failures", num(tls_fail_), "refused", num(refused_), "disconnects", num(disconnects_),
                              "ever_ready", num(cnt(&Conn::ever_ready)),
                              "connect_ms_p50", num(q(connect_us_, 0.5) / 1000.0),
                              "connect_ms_max", num(q(connect_us_, 1.0) / 1000.0)}),
              "tls_version", str(tls_version_), "tls_cipher", str(tls_cipher_),
              "total", obj({"sent", num(sent_), "completed", num(ok_), "errors", num(err_), "lost_in_flight", num(lost_),
                            "unanswered_at_exit", num(cnt(&Conn::busy))}),
              "protocol_errors", num(proto_err_), "bytes_out", num(bytes_out_), "bytes_in", num(bytes_in_)}) + "\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  Engine e(std::move(o));
  return e.run();
}
