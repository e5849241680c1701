// Tokenizer for the IoT Hub query language (semantics.md §2.2). The whole text is tokenized up front; bad
// characters and malformed literals become `invalid`/`error` tokens so that the parser reports them at the
// point where it meets them (the first error in reading order wins). Internal to fleethub_query.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fleethub::query::detail {

enum class tok {
  end,
  ident,          // letters, digits, _, $ (and - inside routing $names such as $dt-dataschema)
  escaped_ident,  // [[group]]: `text` is the name between the brackets
  number,         // 12, 1.5, 1e3, 0x1F
  string,         // '...' or "..." (`str` holds the unescaped bytes)
  param,          // @name (recognized only to be refused)
  comma, dot, lparen, rparen, lbracket, rbracket,
  star, slash, percent, plus, minus,
  eq, ne, lt, gt, le, ge,
  invalid,        // a character that starts no token
  error,          // a malformed literal; `str` holds the complete error message
};

struct token {
  tok kind = tok::end;
  std::size_t pos = 0;    // byte offset of the first character
  std::string_view text;  // raw source text (for escaped_ident: the name inside [[ ]])
  std::string str;        // string: unescaped value; error: message
  bool is_int = false;    // number: integer (fits int64) or double
  std::int64_t i = 0;
  double d = 0;
};

// Tokens of `text`, always ending with one `end` token. `routing` allows '-' inside $-prefixed names.
std::vector<token> tokenize(std::string_view text, bool routing);

// Case-insensitive ASCII comparison (keywords, function names, member names).
bool iequals(std::string_view a, std::string_view b);

// "syntax error at position N: expected X, found Y" (Y = the token quoted, or "end of query").
std::string syntax_message(std::size_t pos, std::string_view expected, std::string_view found);
std::string describe(const token& t);  // the "found" part for a token

}  // namespace fleethub::query::detail
