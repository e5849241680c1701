// The IoT Hub query language (semantics.md §2) and its WHERE-expression core, which routing conditions
// (§3.5) reuse: lexer, parser, and a compiled evaluator over core::json values. Pure and I/O-free.
// Compiled objects are immutable and cheap to copy (shared); evaluate them from any number of threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::query {

enum class collection { devices, modules, jobs };  // FROM devices | devices.modules | devices.jobs

// One step of a property path: a member name (as written, `[[group]]` unescaped) or an array subscript
// (`x[0]`, routing body paths). index >= 0 means a subscript and `name` is empty.
struct path_segment {
  std::string name;
  std::int64_t index = -1;
  friend bool operator==(const path_segment&, const path_segment&) = default;
};
using path = std::vector<path_segment>;

// Looks up the values an expression names. Twin queries use document_resolver; routing supplies its own
// ($body, $twin, system and application properties). nullptr means undefined.
class resolver {
 public:
  virtual ~resolver() = default;
  virtual const json::value* resolve(const path& p) const = 0;
};

// Resolves paths against one JSON document. Member names match case-insensitively (an exact match wins),
// as IoT Hub twin queries do (`SELECT DeviceId` finds "deviceId").
class document_resolver final : public resolver {
 public:
  explicit document_resolver(const json::value& doc) : doc_(doc) {}
  const json::value* resolve(const path& p) const override;

 private:
  const json::value& doc_;
};

// Walks p[first..] from `doc` the way document_resolver does (members case-insensitively, an exact match
// winning; subscripts into arrays). nullptr when the path does not exist. Lets a resolver that builds its
// document in pieces resolve a path inside one piece.
const json::value* resolve_in(const json::value& doc, const path& p, std::size_t first = 0);

struct compile_options {
  // Route conditions: `$`-prefixed names are allowed and every function of §3.5 is available. Twin queries
  // allow the type and string functions the issue lists (IS_*, STARTS_WITH/STARTSWITH, ENDS_WITH/ENDSWITH).
  bool routing = false;
  std::size_t max_length = 8192;  // query text limit (§2.3)
};

// A compiled boolean expression: a WHERE clause or a route condition.
class condition {
 public:
  condition();  // always true (no WHERE)
  // True only when the expression evaluates to boolean true; undefined, null and non-booleans are false.
  bool matches(const resolver& r) const;
  bool matches(const json::value& doc) const { return matches(document_resolver(doc)); }
  // Every path the expression reads, in order of appearance (routing uses it to know what a route needs).
  const std::vector<path>& paths() const;

  struct impl;
  explicit condition(std::shared_ptr<const impl> p);

 private:
  std::shared_ptr<const impl> p_;
};

// Errors: invalid_argument with a message naming the 0-based character position, what was expected and
// what was found, e.g. "syntax error at position 17: expected FROM, found 'FORM'"; too_large over max_length.
result<condition> compile_condition(std::string_view text, const compile_options& opt = {});

class compiled_query {
 public:
  collection from() const;
  std::optional<std::uint64_t> top() const;
  bool select_star() const;
  bool aggregate() const;  // GROUP BY, or an aggregate (COUNT/AVG/SUM/MIN/MAX) in the SELECT list
  // x-ms-item-type of the results: "twin" (SELECT * FROM devices / devices.modules), "deviceJob"
  // (devices.jobs), "raw" (projections and aggregates).
  std::string item_type() const;
  const condition& where() const;
  bool matches(const json::value& doc) const { return where().matches(doc); }
  // The SELECT list applied to one matching document: '*' returns a copy; projections return an object with
  // one key per item (the alias, else the name as stored in the document; undefined values are left out).
  json::value project(const json::value& doc) const;

  // Feed every matching document, then finish(): one object per group, in first-seen order, keys named by
  // the aliases (else "$1"-style names for unaliased aggregates and the stored name for GROUP BY paths).
  class aggregation {
   public:
    void add(const json::value& doc);
    json::array finish() const;

    struct state;
    explicit aggregation(std::shared_ptr<state> s);

   private:
    std::shared_ptr<state> s_;
  };
  aggregation start_aggregation() const;

  struct impl;
  explicit compiled_query(std::shared_ptr<const impl> p);

 private:
  std::shared_ptr<const impl> p_;
};

// Compiles SELECT ... FROM ... [WHERE ...] [GROUP BY ...]. Errors: invalid_argument (syntax, with position;
// unsupported clauses such as ORDER BY or JOIN; GROUP BY outside FROM devices; projections on devices.jobs),
// too_large (over max_length).
result<compiled_query> compile_query(std::string_view text, const compile_options& opt = {});

}  // namespace fleethub::query
