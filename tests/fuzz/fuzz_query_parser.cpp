// Query parser fuzz target: any text compiled as a twin query, as a routing-mode query and as a condition in
// both modes must either be refused with invalid_argument/too_large and a message, or compile into something
// that evaluates, projects and aggregates over a fixed nested twin without crashing, and that compiles to
// the same outcome again (compilation is deterministic).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fleethub/core/json.hpp"
#include "fleethub/query/query.hpp"

using namespace fleethub;
using namespace fleethub::query;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

const json::value& fixed_doc() {
  static const json::value doc = *json::parse(R"({
    "deviceId":"dev1","moduleId":"m1","status":"enabled","version":7,"group":"g","Select":1,
    "$body":{"Weather":{"Temperature":50,"HistoricalData":[{"Month":"Feb"},{"Month":"Jan","n":[1,2.5,null]}]}},
    "$contentType":"application/json","$dt-dataschema":"s","severity":"2","processingPath":"hot",
    "tags":{"location":{"region":"US","floor":3},"labels":["a","b"],"group":"g1","big":9223372036854775807},
    "properties":{"desired":{"cfg":{"rate":5},"$version":2,"$metadata":{"$lastUpdated":"2024-01-01T00:00:00Z"}},
      "reported":{"temperature":21.5,"count":-3,"ok":true,"none":null,"name":"h\u00e9llo","$version":4}}})");
  return doc;
}

void check_error(const error& e) {
  check(e.code == errc::invalid_argument || e.code == errc::too_large);
  check(!e.message.empty());
}

void exercise_query(std::string_view text, const compile_options& opt) {
  auto q = compile_query(text, opt);
  auto again = compile_query(text, opt);
  check(q.ok() == again.ok());
  if (!q) {
    check_error(q.err());
    check(q.err().message == again.err().message);
    return;
  }
  const json::value& doc = fixed_doc();
  const bool hit = q->matches(doc);
  check(hit == again->matches(doc));
  check(!q->item_type().empty());
  json::value projected = q->project(doc);
  check(q->select_star() ? projected == doc : projected.is_object());
  check(json::parse(json::serialize(projected)).ok());
  auto agg = q->start_aggregation();
  agg.add(doc);
  agg.add(json::value(json::object{}));
  agg.add(json::value(nullptr));  // not even an object: every path is undefined
  if (hit) agg.add(doc);
  json::array rows = agg.finish();
  if (q->top()) check(rows.size() <= *q->top());
  check(json::parse(json::serialize(json::value(rows))).ok());
}

void exercise_condition(std::string_view text, const compile_options& opt) {
  auto c = compile_condition(text, opt);
  if (!c) {
    check_error(c.err());
    return;
  }
  const bool hit = c->matches(fixed_doc());
  check(hit == c->matches(document_resolver(fixed_doc())));
  c->matches(json::value(json::object{}));
  c->matches(json::value("scalar"));
  for (const path& p : c->paths()) check(!p.empty() && p.front().index < 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  compile_options twin;
  compile_options routing;
  routing.routing = true;
  compile_options tiny;  // makes the too_large path reachable with short inputs
  tiny.max_length = 32;
  exercise_query(text, twin);
  exercise_query(text, routing);
  exercise_query(text, tiny);
  exercise_condition(text, twin);
  exercise_condition(text, routing);
  return 0;
}
