// Tokenizer for the IoT Hub query language; see lexer.hpp.
#include "fleethub/query/lexer.hpp"

#include <charconv>
#include <cmath>
#include <string>

namespace fleethub::query::detail {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
// Bytes >= 0x80 are UTF-8 sequences: twin property names may use any script.
bool is_ident_start(char c) {
  return is_alpha(c) || c == '_' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
}
bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Offset of the first byte that does not belong to a well-formed UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  std::size_t k = 0;
  while (k < s.size()) {
    const auto c = static_cast<unsigned char>(s[k]);
    if (c < 0x80) {
      ++k;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return k;
    if (k + len > s.size()) return k;
    for (std::size_t m = 1; m < len; ++m) {
      const auto b = static_cast<unsigned char>(s[k + m]);
      if (m == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return k;
    }
    k += len;
  }
  return std::string_view::npos;
}

class lexer {
 public:
  lexer(std::string_view s, bool routing) : s_(s), routing_(routing) {}

  std::vector<token> run() {
    std::vector<token> out;
    // Names and strings end up in JSON output (projection keys, error messages): refuse text that is not
    // UTF-8 up front rather than produce output that does not parse.
    if (std::size_t bad = invalid_utf8_at(s_); bad != std::string_view::npos) {
      i_ = bad + 1;
      out.push_back(fail(bad, "UTF-8 text", describe(make(tok::invalid, bad)), bad));
      i_ = s_.size();
    }
    while (out.empty() || out.back().kind != tok::error) {  // after an error the parser stops anyway
      while (i_ < s_.size() && is_space(s_[i_])) ++i_;
      if (i_ >= s_.size()) break;
      out.push_back(next());
    }
    token e;
    e.kind = tok::end;
    e.pos = s_.size();
    out.push_back(std::move(e));
    return out;
  }

 private:
  token make(tok k, std::size_t start) {
    token t;
    t.kind = k;
    t.pos = start;
    t.text = s_.substr(start, i_ - start);
    return t;
  }
  token fail(std::size_t pos, std::string_view expected, std::string_view found, std::size_t start) {
    token t;
    t.kind = tok::error;
    t.pos = pos;
    t.text = s_.substr(start, i_ - start);
    t.str = syntax_message(pos, expected, found);
    return t;
  }
  char peek(std::size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }

  token next() {
    const std::size_t start = i_;
    const char c = s_[i_];
    auto one = [&](tok k) { ++i_; return make(k, start); };
    switch (c) {
      case ',': return one(tok::comma);
      case '.': return one(tok::dot);
      case '(': return one(tok::lparen);
      case ')': return one(tok::rparen);
      case ']': return one(tok::rbracket);
      case '*': return one(tok::star);
      case '/': return one(tok::slash);
      case '%': return one(tok::percent);
      case '+': return one(tok::plus);
      case '-': return one(tok::minus);
      case '=': return one(tok::eq);
      case '[':
        if (peek(1) == '[') return escaped();
        return one(tok::lbracket);
      case '!':
        if (peek(1) == '=') { i_ += 2; return make(tok::ne, start); }
        return one(tok::invalid);
      case '<':
        if (peek(1) == '=') { i_ += 2; return make(tok::le, start); }
        if (peek(1) == '>') { i_ += 2; return make(tok::ne, start); }
        return one(tok::lt);
      case '>':
        if (peek(1) == '=') { i_ += 2; return make(tok::ge, start); }
        return one(tok::gt);
      case '\'':
      case '"':
        return string_literal(c);
      case '@': {
        ++i_;
        while (i_ < s_.size() && is_ident_char(s_[i_])) ++i_;
        return make(tok::param, start);
      }
      default: break;
    }
    if (is_digit(c)) return number();
    if (is_ident_start(c)) return identifier();
    // One whole UTF-8 sequence would read better, but a single byte is enough to point at the spot.
    return one(tok::invalid);
  }

  token identifier() {
    const std::size_t start = i_;
    const bool dollar = s_[i_] == '$';
    ++i_;
    for (;;) {
      if (i_ < s_.size() && is_ident_char(s_[i_])) {
        ++i_;
      } else if (routing_ && dollar && peek() == '-' && is_alpha(peek(1))) {
        i_ += 2;  // $dt-dataschema, $creation-time-utc: routing system property names contain dashes
      } else {
        break;
      }
    }
    return make(tok::ident, start);
  }

  token escaped() {
    const std::size_t start = i_;
    i_ += 2;
    const std::size_t name_start = i_;
    std::size_t close = s_.find("]]", i_);
    if (close == std::string_view::npos) {
      i_ = s_.size();
      return fail(s_.size(), "']]' to close the name started at position " + std::to_string(start), "end of query",
                  start);
    }
    i_ = close + 2;
    token t = make(tok::escaped_ident, start);
    t.text = s_.substr(name_start, close - name_start);
    if (t.text.empty()) return fail(start, "a property name inside [[ ]]", "'[[]]'", start);
    return t;
  }

  token number() {
    const std::size_t start = i_;
    if (s_[i_] == '0' && (peek(1) == 'x' || peek(1) == 'X') && is_hex(peek(2))) {
      i_ += 2;
      while (i_ < s_.size() && is_hex(s_[i_])) ++i_;
      token t = make(tok::number, start);
      std::uint64_t u = 0;
      auto [p, ec] = std::from_chars(s_.data() + start + 2, s_.data() + i_, u, 16);
      if (ec != std::errc() || u > static_cast<std::uint64_t>(INT64_MAX))
        return fail(start, "a hexadecimal number up to 0x7FFFFFFFFFFFFFFF", describe(t), start);
      t.is_int = true;
      t.i = static_cast<std::int64_t>(u);
      return t;
    }
    bool integral = true;
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    if (peek() == '.' && is_digit(peek(1))) {
      integral = false;
      ++i_;
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    }
    if ((peek() == 'e' || peek() == 'E') &&
        (is_digit(peek(1)) || ((peek(1) == '+' || peek(1) == '-') && is_digit(peek(2))))) {
      integral = false;
      i_ += 2;
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    }
    token t = make(tok::number, start);
    const char* b = s_.data() + start;
    const char* e = s_.data() + i_;
    if (integral) {
      auto [p, ec] = std::from_chars(b, e, t.i);
      if (ec == std::errc() && p == e) {
        t.is_int = true;
        return t;
      }
      // Too big for int64: a double, as JSON parsing does.
    }
    auto [p, ec] = std::from_chars(b, e, t.d);
    if (ec != std::errc() || p != e || !std::isfinite(t.d))
      return fail(start, "a finite number", describe(t), start);
    return t;
  }

  token string_literal(char quote) {
    const std::size_t start = i_;
    ++i_;
    std::string value;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == quote) {
        ++i_;
        token t = make(tok::string, start);
        t.str = std::move(value);
        return t;
      }
      if (c != '\\') {
        value.push_back(c);
        ++i_;
        continue;
      }
      const std::size_t esc = i_;
      char n = peek(1);
      i_ += 2;
      switch (n) {
        case '\'': value.push_back('\''); continue;
        case '"': value.push_back('"'); continue;
        case '\\': value.push_back('\\'); continue;
        case '/': value.push_back('/'); continue;
        case 'b': value.push_back('\b'); continue;
        case 'f': value.push_back('\f'); continue;
        case 'n': value.push_back('\n'); continue;
        case 'r': value.push_back('\r'); continue;
        case 't': value.push_back('\t'); continue;
        case 'u': break;
        default: {
          i_ = std::min(i_, s_.size());
          const bool at_end = esc + 1 >= s_.size();
          std::string found = at_end ? "end of query" : describe(make(tok::invalid, esc));
          return fail(esc, "an escape sequence (\\' \\\" \\\\ \\uXXXX)", found, start);
        }
      }
      std::uint32_t cp = 0;
      if (!hex4(i_, cp)) {
        i_ = std::min(i_ + 4, s_.size());
        return fail(esc, "four hex digits after \\u", describe(make(tok::invalid, esc)), start);
      }
      i_ += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate must be followed by \uDC00..\uDFFF
        std::uint32_t lo = 0;
        if (peek() == '\\' && peek(1) == 'u' && hex4(i_ + 2, lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
          i_ += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else {
          return fail(esc, "a low surrogate \\uDC00-\\uDFFF after a high surrogate",
                      describe(make(tok::invalid, esc)), start);
        }
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return fail(esc, "a high surrogate before a low surrogate", describe(make(tok::invalid, esc)), start);
      }
      append_utf8(value, cp);
    }
    std::string expected = std::string(1, quote) + " to close the string started at position ";
    expected += std::to_string(start);
    return fail(s_.size(), expected, "end of query", start);
  }

  bool hex4(std::size_t at, std::uint32_t& cp) const {
    if (at + 4 > s_.size()) return false;
    cp = 0;
    for (std::size_t k = at; k < at + 4; ++k) {
      char h = s_[k];
      if (!is_hex(h)) return false;
      cp = cp * 16 + static_cast<std::uint32_t>(is_digit(h) ? h - '0' : lower(h) - 'a' + 10);
    }
    return true;
  }

  std::string_view s_;
  bool routing_;
  std::size_t i_ = 0;
};

}  // namespace

std::vector<token> tokenize(std::string_view text, bool routing) { return lexer(text, routing).run(); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (lower(a[k]) != lower(b[k])) return false;
  return true;
}

std::string syntax_message(std::size_t pos, std::string_view expected, std::string_view found) {
  std::string m = "syntax error at position ";
  m += std::to_string(pos);
  m += ": expected ";
  m += expected;
  m += ", found ";
  m += found;
  return m;
}

std::string describe(const token& t) {
  if (t.kind == tok::end) return "end of query";
  // Quote the raw text; control bytes are escaped and long tokens cut so messages stay one readable line.
  static constexpr char hex[] = "0123456789ABCDEF";
  constexpr std::size_t max_shown = 40;
  std::string_view raw = t.text;
  if (t.kind == tok::escaped_ident) raw = std::string_view(raw.data() - 2, raw.size() + 4);  // with [[ ]]
  std::string out = "'";
  // Bytes >= 0x80 are escaped too unless the text is valid UTF-8 (only the UTF-8 check's own error is not).
  const bool utf8 = invalid_utf8_at(raw) == std::string_view::npos;
  for (std::size_t k = 0; k < raw.size(); ++k) {
    auto c = static_cast<unsigned char>(raw[k]);
    if (k >= max_shown && (c & 0xC0) != 0x80) {  // cut between characters, never inside one
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out += "'";
  return out;
}

}  // namespace fleethub::query::detail
