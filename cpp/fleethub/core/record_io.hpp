// Minimal binary record writer/reader for versioned store records (registry, sessions). Little-endian
// fixed-width integers and u32-length-prefixed strings. The reader never reads past the end: a truncated
// record makes ok() false, and the caller reports a corrupt record instead of crashing.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fleethub/core/bytes.hpp"

namespace fleethub {

class record_writer {
 public:
  explicit record_writer(std::uint8_t version) { out_.push_back(version); }
  record_writer& u8(std::uint8_t v) { out_.push_back(v); return *this; }
  record_writer& u16(std::uint16_t v) { return fixed(v); }
  record_writer& u32(std::uint32_t v) { return fixed(v); }
  record_writer& u64(std::uint64_t v) { return fixed(v); }
  record_writer& i64(std::int64_t v) { return fixed(static_cast<std::uint64_t>(v)); }
  record_writer& str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
  }
  bytes take() { return std::move(out_); }

 private:
  template <class T>
  record_writer& fixed(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  bytes out_;
};

class record_reader {
 public:
  explicit record_reader(bytes_view b) : b_(b) {
    if (b_.empty()) ok_ = false; else version_ = b_[0], pos_ = 1;
  }
  std::uint8_t version() const { return version_; }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }
  std::uint8_t u8() { return need(1) ? b_[pos_++] : 0; }
  std::uint16_t u16() { return fixed<std::uint16_t>(); }
  std::uint32_t u32() { return fixed<std::uint32_t>(); }
  std::uint64_t u64() { return fixed<std::uint64_t>(); }
  std::int64_t i64() { return static_cast<std::int64_t>(fixed<std::uint64_t>()); }
  std::string str() {
    auto n = u32();
    if (!need(n)) return {};
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  bool need(std::size_t n) {
    if (!ok_ || b_.size() - pos_ < n) { ok_ = false; return false; }
    return true;
  }
  template <class T>
  T fixed() {
    if (!need(sizeof(T))) return 0;
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(b_[pos_ + i]) << (8 * i));
    pos_ += sizeof(T);
    return v;
  }
  bytes_view b_;
  std::size_t pos_ = 0;
  std::uint8_t version_ = 0;
  bool ok_ = true;
};

}  // namespace fleethub
