// Time, signals, errors, the latency histogram and a small JSON writer.
// Part of fleethub_loadgen (bench/loadgen.cpp includes it once, inside its anonymous namespace).
#pragma once

// ---------------------------------------------------------------------------
// time, signals
// ---------------------------------------------------------------------------
volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

inline int64_t clock_ns(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}
inline int64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
inline int64_t real_ns() { return clock_ns(CLOCK_REALTIME); }

int64_t cpu_ns_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t(ru.ru_utime.tv_sec) + ru.ru_stime.tv_sec) * 1000000000LL +
         (int64_t(ru.ru_utime.tv_usec) + ru.ru_stime.tv_usec) * 1000LL;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "fleethub_loadgen: %s\n", msg.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------------------
// Log-linear histogram of non-negative nanosecond values (<0.8 % bucket error).
// ---------------------------------------------------------------------------
class Hist {
 public:
  static constexpr int kSub = 7;  // 128 sub-buckets per power of two
  static constexpr int kOctaves = 40;
  Hist() : b_(size_t(kOctaves + 1) << kSub, 0) {}
  void add(int64_t v) {
    if (v < 0) v = 0;
    uint64_t u = uint64_t(v);
    ++n_;
    sum_ += u;
    if (u > max_) max_ = u;
    size_t i = index(u);
    if (i >= b_.size()) i = b_.size() - 1;
    ++b_[i];
  }
  uint64_t count() const { return n_; }
  double mean() const { return n_ ? double(sum_) / double(n_) : 0.0; }
  uint64_t max() const { return max_; }
  double quantile(double q) const {
    if (!n_) return 0.0;
    uint64_t rank = uint64_t(std::ceil(q * double(n_)));
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < b_.size(); ++i) {
      acc += b_[i];
      if (acc >= rank) return std::min(double(max_), value(i));
    }
    return double(max_);
  }

 private:
  static size_t index(uint64_t v) {
    if (v < (1u << kSub)) return size_t(v);
    int e = 63 - __builtin_clzll(v);  // >= kSub
    uint64_t m = v >> (e - kSub);     // in [2^kSub, 2^(kSub+1))
    return (size_t(e - kSub + 1) << kSub) + size_t(m - (1u << kSub));
  }
  static double value(size_t i) {
    size_t o = i >> kSub;
    if (o == 0) return double(i);
    uint64_t m = (i & ((1u << kSub) - 1)) + (1u << kSub);
    int e = int(o) + kSub - 1;
    double lo = double(m << (e - kSub));
    double width = double(uint64_t(1) << (e - kSub));
    return lo + width / 2.0;
  }
  std::vector<uint64_t> b_;
  uint64_t n_ = 0, sum_ = 0, max_ = 0;
};

// ---------------------------------------------------------------------------
// JSON writer (tiny, sufficient for the summary)
// ---------------------------------------------------------------------------
class Json {
 public:
  Json& key(const char* k) {
    sep();
    s_ += '"';
    s_ += k;
    s_ += "\":";
    fresh_ = true;
    return *this;
  }
  Json& num(double v) {
    sep();
    char b[64];
    if (!std::isfinite(v)) v = 0;
    if (v == std::floor(v) && std::fabs(v) < 9e15)
      std::snprintf(b, sizeof b, "%.0f", v);
    else
      std::snprintf(b, sizeof b, "%.6g", v);
    s_ += b;
    return *this;
  }
  Json& num(uint64_t v) { sep(); s_ += std::to_string(v); return *this; }
  Json& num(int64_t v) { sep(); s_ += std::to_string(v); return *this; }
  Json& num(int v) { return num(int64_t(v)); }
  Json& num(unsigned v) { return num(uint64_t(v)); }
  Json& boolean(bool v) { sep(); s_ += v ? "true" : "false"; return *this; }
  Json& str(const std::string& v) {
    sep();
    s_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') { s_ += '\\'; s_ += c; }
      else if (uint8_t(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); s_ += b; }
      else s_ += c;
    }
    s_ += '"';
    return *this;
  }
  Json& open() { sep(); s_ += '{'; fresh_ = true; return *this; }
  Json& close() { s_ += '}'; fresh_ = false; return *this; }
  Json& open_arr() { sep(); s_ += '['; fresh_ = true; return *this; }
  Json& close_arr() { s_ += ']'; fresh_ = false; return *this; }
  Json& hist_ms(const char* k, const Hist& h) {
    key(k).open();
    key("count").num(h.count());
    key("mean").num(h.mean() / 1e6);
    key("p50").num(h.quantile(0.50) / 1e6);
    key("p90").num(h.quantile(0.90) / 1e6);
    key("p99").num(h.quantile(0.99) / 1e6);
    key("p999").num(h.quantile(0.999) / 1e6);
    key("max").num(double(h.max()) / 1e6);
    return close();
  }
  const std::string& text() const { return s_; }

 private:
  void sep() {
    if (!fresh_ && !s_.empty() && s_.back() != ':' ) s_ += ',';
    fresh_ = false;
  }
  std::string s_;
  bool fresh_ = true;
};
