// Parser tests: clause structure, keywords, paths, TOP, the restrictions of semantics.md §2.3 and the exact
// error messages (with positions) that clients see for bad queries.
#include <gtest/gtest.h>

#include <string>

#include "fleethub/query/query.hpp"

using namespace fleethub;
using namespace fleethub::query;

namespace {

compiled_query ok(std::string_view text, compile_options opt = {}) {
  auto q = compile_query(text, opt);
  EXPECT_TRUE(q.ok()) << text << " -> " << (q.ok() ? "" : q.err().message);
  if (!q.ok()) std::abort();
  return *q;
}

std::string err(std::string_view text, compile_options opt = {}) {
  auto q = compile_query(text, opt);
  EXPECT_FALSE(q.ok()) << text;
  if (q.ok()) return "";
  EXPECT_EQ(q.err().code, errc::invalid_argument) << text;
  return q.err().message;
}

std::string cond_err(std::string_view text, compile_options opt = {}) {
  auto c = compile_condition(text, opt);
  EXPECT_FALSE(c.ok()) << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.err().code, errc::invalid_argument) << text;
  return c.err().message;
}

path p(std::initializer_list<const char*> names) {
  path out;
  for (const char* n : names) out.push_back({n});
  return out;
}

compile_options routing() {
  compile_options o;
  o.routing = true;
  return o;
}

}  // namespace

// ---- clause structure -----------------------------------------------------------------------------------

TEST(QueryParser, SelectStarFromEachCollection) {
  auto d = ok("SELECT * FROM devices");
  EXPECT_EQ(d.from(), collection::devices);
  EXPECT_TRUE(d.select_star());
  EXPECT_FALSE(d.aggregate());
  EXPECT_FALSE(d.top());
  EXPECT_EQ(d.item_type(), "twin");
  EXPECT_TRUE(d.where().paths().empty());

  auto m = ok("SELECT * FROM devices.modules WHERE moduleId = 'm1'");
  EXPECT_EQ(m.from(), collection::modules);
  EXPECT_EQ(m.item_type(), "twin");

  auto j = ok("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'");
  EXPECT_EQ(j.from(), collection::jobs);
  EXPECT_EQ(j.item_type(), "deviceJob");
  // The documented devices.jobs.<field> qualifier reads the job record's own field.
  ASSERT_EQ(j.where().paths().size(), 1u);
  EXPECT_EQ(j.where().paths()[0], p({"jobId"}));
  EXPECT_TRUE(j.matches(json::parse(R"({"deviceId":"d1","jobId":"j1","status":"completed"})").value()));
  EXPECT_TRUE(ok("SELECT * FROM devices.jobs WHERE jobId = 'j1'").matches(json::parse(R"({"jobId":"j1"})").value()));
  // Only job queries drop it.
  EXPECT_EQ(ok("SELECT * FROM devices WHERE devices.jobs.jobId = 'j1'").where().paths()[0],
            p({"devices", "jobs", "jobId"}));
}

TEST(QueryParser, KeywordsAreCaseInsensitive) {
  auto q = ok("select TOP 3 * From DEVICES.Modules wHeRe status = 'enabled' aNd NOT (x In [1]) or y NIN [2]");
  EXPECT_EQ(q.from(), collection::modules);
  EXPECT_EQ(q.top(), 3u);
  ok("Select * from devices.modules where properties.reported.status = 'running'");  // [DOC qtwins] sample
  ok("SELECT * FROM devices WHERE x = TRUE OR y = False OR z = NULL OR w = Undefined");
}

TEST(QueryParser, Top) {
  EXPECT_EQ(ok("SELECT TOP 0 * FROM devices").top(), 0u);
  EXPECT_EQ(ok("SELECT TOP 100 deviceId FROM devices").top(), 100u);
  EXPECT_EQ(ok("SELECT TOP 0x10 * FROM devices").top(), 16u);
  EXPECT_EQ(err("SELECT TOP -1 * FROM devices"),
            "syntax error at position 11: expected a non-negative integer after TOP, found '-'");
  EXPECT_EQ(err("SELECT TOP 1.5 * FROM devices"),
            "syntax error at position 11: expected a non-negative integer after TOP, found '1.5'");
  EXPECT_EQ(err("SELECT TOP * FROM devices"),
            "syntax error at position 11: expected a non-negative integer after TOP, found '*'");
}

TEST(QueryParser, ProjectionsAndAliases) {
  auto q = ok("SELECT deviceId, properties.reported.temperature AS temp, tags.[[group]] FROM devices");
  EXPECT_FALSE(q.select_star());
  EXPECT_FALSE(q.aggregate());
  EXPECT_EQ(q.item_type(), "raw");
  ok("SELECT [[group]] AS g FROM devices");
  ok("SELECT x AS [[select]] FROM devices");
  EXPECT_EQ(err("SELECT deviceId AS FROM devices"),
            "syntax error at position 19: expected an alias name after AS, found 'FROM'");
  EXPECT_EQ(err("SELECT deviceId status FROM devices"),
            "syntax error at position 16: expected FROM, found 'status'");
  EXPECT_EQ(err("SELECT LOWER(deviceId) FROM devices"),
            "syntax error at position 7: expected '*', a property path or an aggregate (COUNT, AVG, SUM, MIN, MAX), "
            "found 'LOWER'");
  EXPECT_EQ(err("SELECT *, deviceId FROM devices"), "syntax error at position 8: expected FROM, found ','");
}

TEST(QueryParser, AggregatesAndGroupBy) {
  auto c = ok("SELECT COUNT() AS numberOfDevices FROM devices");
  EXPECT_TRUE(c.aggregate());
  EXPECT_EQ(c.item_type(), "raw");
  EXPECT_TRUE(ok("SELECT count(*) FROM devices").aggregate());
  EXPECT_TRUE(ok("SELECT COUNT(tags.x) FROM devices").aggregate());
  auto g = ok("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
              "FROM devices GROUP BY properties.reported.telemetryConfig.status");
  EXPECT_TRUE(g.aggregate());
  EXPECT_TRUE(ok("SELECT AVG(a) AS a, SUM(a), Min(a), max(a) FROM devices WHERE b > 1 GROUP BY c, d").aggregate());
  // GROUP BY alone makes a query an aggregate, and the group path may be written in another case.
  EXPECT_TRUE(ok("SELECT Status FROM devices GROUP BY status").aggregate());
  EXPECT_TRUE(ok("SELECT COUNT() FROM devices.modules").aggregate());  // no GROUP BY: allowed on modules
  EXPECT_EQ(err("SELECT deviceId, COUNT() FROM devices GROUP BY status"),
            "'deviceId' in the SELECT list of an aggregate query must be a GROUP BY path or an aggregate");
  EXPECT_EQ(err("SELECT deviceId, COUNT() FROM devices"),
            "'deviceId' in the SELECT list of an aggregate query must be a GROUP BY path or an aggregate");
  EXPECT_EQ(err("SELECT COUNT() FROM devices.modules GROUP BY status"),
            "GROUP BY at position 36 is only supported in queries FROM devices");
  EXPECT_EQ(err("SELECT * FROM devices GROUP BY status"),
            "SELECT * at position 7 cannot be combined with GROUP BY");
  EXPECT_EQ(err("SELECT AVG() FROM devices"), "syntax error at position 11: expected a property path, found ')'");
  EXPECT_EQ(err("SELECT COUNT() FROM devices GROUP status"),
            "syntax error at position 34: expected BY after GROUP, found 'status'");
  EXPECT_EQ(err("SELECT COUNT() FROM devices GROUP BY status garbage"),
            "syntax error at position 44: expected ',' or end of query, found 'garbage'");
}

TEST(QueryParser, JobsAllowOnlySelectStar) {
  const std::string msg = "queries FROM devices.jobs support only SELECT * (no projections or aggregates)";
  EXPECT_EQ(err("SELECT deviceId FROM devices.jobs"), msg);
  EXPECT_EQ(err("SELECT COUNT() FROM devices.jobs"), msg);
  EXPECT_EQ(err("SELECT * FROM devices.jobs GROUP BY status"),
            "GROUP BY at position 27 is only supported in queries FROM devices");
}

TEST(QueryParser, Paths) {
  auto q = ok("SELECT * FROM devices WHERE properties.reported.$metadata.$lastUpdated > '2024' AND "
              "tags.[[group]] = 'a' AND tags.group = 'b' AND tags.order.x = 1 AND tags.list[2].name = 'c' AND "
              "properties.reported.$version >= 4 AND tags.location.region = 'US' AND tags.location.region != 'x'");
  const auto& ps = q.where().paths();
  ASSERT_EQ(ps.size(), 6u);  // distinct ([[group]] and group are the same), in order of appearance
  EXPECT_EQ(ps[0], p({"properties", "reported", "$metadata", "$lastUpdated"}));
  EXPECT_EQ(ps[1], p({"tags", "group"}));
  EXPECT_EQ(ps[2], p({"tags", "order", "x"}));
  path list = p({"tags", "list"});
  list.push_back({"", 2});
  list.push_back({"name"});
  EXPECT_EQ(ps[3], list);
  EXPECT_EQ(ps[4], p({"properties", "reported", "$version"}));
  EXPECT_EQ(ps[5], p({"tags", "location", "region"}));
}

TEST(QueryParser, EscapedNames) {
  // [[...]] escapes reserved words anywhere in a path, and may hold characters identifiers cannot.
  auto c = compile_condition("[[group]].[[select]] = 1 AND tags.[[serial-no]] = 'x'");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->paths()[0], p({"group", "select"}));
  EXPECT_EQ(c->paths()[1], p({"tags", "serial-no"}));
  EXPECT_EQ(cond_err("group = 1"),
            "syntax error at position 0: expected an expression (write [[group]] for a property named group), found 'group'");
  EXPECT_EQ(cond_err("tags.[[group = 1"),
            "syntax error at position 16: expected ']]' to close the name started at position 5, found end of query");
  EXPECT_EQ(cond_err("[[]] = 1"),
            "syntax error at position 0: expected a property name inside [[ ]], found '[[]]'");
}

TEST(QueryParser, RoutingPathsAndDollarNames) {
  auto c = compile_condition(
      "$body.Weather.HistoricalData[0].Month = 'Feb' AND $twin.tags.x = 1 AND $contentType = 'application/json' "
      "AND $connectionDeviceId = 'd1' AND $dt-dataschema = 's' AND processingPath = 'hot'",
      routing());
  ASSERT_TRUE(c.ok()) << c.err().message;
  const auto& ps = c->paths();
  ASSERT_EQ(ps.size(), 6u);
  path body = p({"$body", "Weather", "HistoricalData"});
  body.push_back({"", 0});
  body.push_back({"Month"});
  EXPECT_EQ(ps[0], body);
  EXPECT_EQ(ps[1], p({"$twin", "tags", "x"}));
  EXPECT_EQ(ps[2], p({"$contentType"}));
  EXPECT_EQ(ps[4], p({"$dt-dataschema"}));
  EXPECT_EQ(ps[5], p({"processingPath"}));
  // Twin queries: no leading $ (nested $version/$metadata are fine, see Paths).
  EXPECT_EQ(cond_err("$body.x = 1"),
            "syntax error at position 0: expected a property name ($-prefixed names are for routing conditions), "
            "found '$body'");
  // A dash continues only $-names in routing mode; elsewhere it is minus.
  auto minus = compile_condition("a-b = 1");
  ASSERT_TRUE(minus.ok());
  EXPECT_EQ(minus->paths().size(), 2u);
  auto version = compile_condition("$twin.properties.reported.$version-1 > 3", routing());
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->paths().size(), 1u);
  EXPECT_EQ(cond_err("$body[-1] = 1", routing()),
            "syntax error at position 6: expected an array index (a non-negative integer), found '-'");
  EXPECT_EQ(cond_err("$body[0 = 1", routing()), "syntax error at position 8: expected ']', found '='");
}

TEST(QueryParser, EmptyConditionIsTrue) {
  auto c = compile_condition("  ");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->matches(json::value(json::object{})));
  EXPECT_TRUE(condition().matches(json::value(nullptr)));
  EXPECT_TRUE(condition().paths().empty());
}

TEST(QueryParser, Constants) {
  for (const char* text : {"x = 12", "x = -12", "x = 1.5", "x = 1e3", "x = 2.5E-3", "x = 0x1F", "x = 'a'",
                           "x = \"a\"", "x = 'it\\'s'", "x = \"say \\\"hi\\\"\"", "x = 'back\\\\slash'",
                           "x = '\\u00e9\\uD83D\\uDE00'", "x IN []", "x IN [1, -2, 'a', \"b\", true, false, null]",
                           "x = [1, 2]", "x = 99999999999999999999"})
    EXPECT_TRUE(compile_condition(text).ok()) << text;
  EXPECT_EQ(cond_err("x = 'a\\qb'"),
            "syntax error at position 6: expected an escape sequence (\\' \\\" \\\\ \\uXXXX), found '\\q'");
  EXPECT_EQ(cond_err("x = '\\u12'"),
            "syntax error at position 5: expected four hex digits after \\u, found '\\u12''");
  EXPECT_EQ(cond_err("x = '\\uD800'"),
            "syntax error at position 5: expected a low surrogate \\uDC00-\\uDFFF after a high surrogate, found '\\uD800'");
  EXPECT_EQ(cond_err("x = 0x8000000000000000"),
            "syntax error at position 4: expected a hexadecimal number up to 0x7FFFFFFFFFFFFFFF, found "
            "'0x8000000000000000'");
  EXPECT_EQ(cond_err("x = 1e999"), "syntax error at position 4: expected a finite number, found '1e999'");
  EXPECT_EQ(cond_err("x IN [y]"), "syntax error at position 6: expected a constant, found 'y'");
  EXPECT_EQ(cond_err("x IN [1,]"), "syntax error at position 8: expected a constant, found ']'");
  EXPECT_EQ(cond_err("x IN [1 2]"), "syntax error at position 8: expected ',' or ']', found '2'");
}

// ---- error messages -------------------------------------------------------------------------------------

TEST(QueryParserErrors, SyntaxErrorsNamePositionExpectedAndFound) {
  EXPECT_EQ(err(""), "syntax error at position 0: expected SELECT, found end of query");
  EXPECT_EQ(err("   "), "syntax error at position 3: expected SELECT, found end of query");
  EXPECT_EQ(err("SELEC * FROM devices"), "syntax error at position 0: expected SELECT, found 'SELEC'");
  EXPECT_EQ(err("SELECT * devices"), "syntax error at position 9: expected FROM, found 'devices'");
  EXPECT_EQ(err("SELECT deviceId FORM devices"), "syntax error at position 16: expected FROM, found 'FORM'");
  EXPECT_EQ(err("SELECT * FROM"),
            "syntax error at position 13: expected devices, devices.modules or devices.jobs, "
                                  "found end of query");
  EXPECT_EQ(err("SELECT * FROM twins"),
            "syntax error at position 14: expected devices, devices.modules or devices.jobs, found 'twins'");
  EXPECT_EQ(err("SELECT * FROM devices.twins"),
            "syntax error at position 22: expected modules or jobs after 'devices.', found 'twins'");
  EXPECT_EQ(err("SELECT * FROM devices garbage"),
            "syntax error at position 22: expected WHERE, GROUP BY or end of query, found 'garbage'");
  EXPECT_EQ(err("SELECT * FROM devices WHERE status = 'enabled' garbage"),
            "syntax error at position 47: expected GROUP BY or end of query, found 'garbage'");
  EXPECT_EQ(err("SELECT * FROM devices WHERE"),
            "syntax error at position 27: expected an expression, found end of query");
  EXPECT_EQ(err("SELECT * FROM devices WHERE status = # 1"),
            "syntax error at position 37: expected an expression, found '#'");
  EXPECT_EQ(err("SELECT * FROM devices WHERE status == 'a'"),
            "syntax error at position 36: expected an expression, found '='");
  EXPECT_EQ(err("SELECT * FROM devices WHERE (status = 'a'"),
            "syntax error at position 41: expected ')', found end of query");
  EXPECT_EQ(err("SELECT * FROM devices WHERE tags.x = 'abc"),
            "syntax error at position 41: expected ' to close the string started at position 37, found end of query");
  EXPECT_EQ(err("SELECT * FROM devices WHERE tags.x = \"abc"),
            "syntax error at position 41: expected \" to close the string started at position 37, found end of query");
  EXPECT_EQ(err("SELECT * FROM devices WHERE tags. = 1"),
            "syntax error at position 34: expected a property name after '.', found '='");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x IN 'a'"),
            "syntax error at position 33: expected '[' (IN and NIN take an array of constants), found ''a''");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x = 1 AND"),
            "syntax error at position 37: expected an expression, found end of query");
  EXPECT_EQ(err("SELECT * FROM devices WHERE STARTS_WITH(x, 'a'"),
            "syntax error at position 46: expected ',' or ')', found end of query");
}

TEST(QueryParserErrors, LongTokensAreCutAndControlBytesEscaped) {
  EXPECT_EQ(err("SELECT * FROM devices\x01"),
            "syntax error at position 21: expected WHERE, GROUP BY or end of query, found '\\x01'");
  std::string q = "SELECT * FROM devices " + std::string(60, 'a');
  EXPECT_EQ(err(q), "syntax error at position 22: expected WHERE, GROUP BY or end of query, found '" +
                        std::string(40, 'a') + "...'");
}

TEST(QueryParserErrors, TextMustBeUtf8) {
  // Names become JSON keys and messages become JSON strings: only UTF-8 gets that far.
  EXPECT_EQ(err("SELECT x AS numberOfDevi\x9f\x9as FROM devices"),
            "syntax error at position 24: expected UTF-8 text, found '\\x9F'");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x = '\xed\xa0\x80'"),  // an encoded surrogate
            "syntax error at position 33: expected UTF-8 text, found '\\xED'");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x = '\xc3'"),
            "syntax error at position 33: expected UTF-8 text, found '\\xC3'");
  auto q = compile_query("SELECT tags.r\xc3\xa9gion AS \xe5\x9c\xb0\xe5\x9f\x9f FROM devices "
                         "WHERE tags.r\xc3\xa9gion = '\xf0\x9f\x98\x80'");
  ASSERT_TRUE(q.ok()) << q.err().message;
  // Long tokens are cut between characters, never inside one.
  std::string e = err("SELECT * FROM devices " + std::string(39, 'a') + "\xc3\xa9\xc3\xa9");
  EXPECT_EQ(e, "syntax error at position 22: expected WHERE, GROUP BY or end of query, found '" +
                   std::string(39, 'a') + "\xc3\xa9...'");
}

TEST(QueryParserErrors, UnsupportedSqlIsRefusedByName) {
  EXPECT_EQ(err("SELECT * FROM devices ORDER BY deviceId"),
            "ORDER BY is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x = 1 order by x"),
            "ORDER BY is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices JOIN devices.modules"),
            "JOIN is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT DISTINCT status FROM devices"), "DISTINCT is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices WHERE deviceId LIKE 'a%'"),
            "LIKE is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT COUNT() FROM devices GROUP BY status HAVING COUNT() > 1"),
            "HAVING is not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices WHERE deviceId IN (SELECT deviceId FROM devices)"),
            "subqueries are not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices WHERE x = (SELECT 1)"),
            "subqueries are not supported by the IoT Hub query language");
  EXPECT_EQ(err("SELECT * FROM devices WHERE deviceId = @id"),
            "query parameters (@id) are not supported by the IoT Hub query language");
  EXPECT_EQ(cond_err("x = 1 ORDER BY x", routing()), "ORDER BY is not supported by the IoT Hub query language");
}

TEST(QueryParserErrors, Functions) {
  EXPECT_EQ(err("SELECT * FROM devices WHERE FOO(deviceId)"), "unknown function FOO at position 28");
  EXPECT_EQ(err("SELECT * FROM devices WHERE STARTSWITH(deviceId)"),
            "function STARTSWITH at position 28 takes 2 arguments, got 1");
  EXPECT_EQ(err("SELECT * FROM devices WHERE is_defined(a, b)"),
            "function IS_DEFINED at position 28 takes 1 argument, got 2");
  EXPECT_EQ(err("SELECT * FROM devices WHERE COUNT() > 1"),
            "aggregate COUNT at position 28 is only allowed in the SELECT list");
  // Routing-only functions are refused in twin queries and accepted in routing conditions.
  EXPECT_EQ(err("SELECT * FROM devices WHERE ABS(x) > 1"),
            "function ABS at position 28 is only available in routing conditions");
  EXPECT_EQ(cond_err("lower(x) = 'a'"), "function LOWER at position 0 is only available in routing conditions");
  for (const char* f : {"ABS(x) > 1", "EXP(x) > 1", "POWER(x, 2) > 1", "SQUARE(x) > 1", "CEILING(x) > 1",
                        "FLOOR(x) > 1", "SIGN(x) > 0", "SQRT(x) > 1", "AS_NUMBER(x) > 1", "CONCAT(x, y) = 'a'",
                        "LENGTH(x) > 1", "LOWER(x) = 'a'", "UPPER(x) = 'A'", "SUBSTRING(x, 1) = 'a'",
                        "INDEX_OF(x, 'a') = 1"}) {
    EXPECT_TRUE(compile_condition(f, routing()).ok()) << f;
    EXPECT_FALSE(compile_condition(f).ok()) << f;
  }
  EXPECT_EQ(cond_err("SUBSTRING(x)", routing()), "function SUBSTRING at position 0 takes 2 or 3 arguments, got 1");
  EXPECT_EQ(cond_err("CONCAT(x)", routing()), "function CONCAT at position 0 takes at least 2 arguments, got 1");
  EXPECT_TRUE(compile_condition("CONCAT(a, b, c, d, e) = 'x'", routing()).ok());
}

TEST(QueryParserErrors, TooLong) {
  std::string q = "SELECT * FROM devices WHERE deviceId = '" + std::string(8200, 'x') + "'";
  auto r = compile_query(q);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, errc::too_large);
  EXPECT_EQ(r.err().message, "query is 8241 characters long; the limit is 8192");
  compile_options small;
  small.max_length = 10;
  EXPECT_EQ(compile_condition("x = 12345678", small).err().code, errc::too_large);
  EXPECT_TRUE(compile_condition("x = 123456", small).ok());
  std::string exact = "SELECT * FROM devices WHERE deviceId = '" + std::string(8192 - 41, 'x') + "'";
  ASSERT_EQ(exact.size(), 8192u);
  EXPECT_TRUE(compile_query(exact).ok());
}

TEST(QueryParserErrors, DeepNestingIsRefusedNotACrash) {
  std::string deep = std::string(100, '(') + "x = 1" + std::string(100, ')');
  EXPECT_EQ(cond_err(deep), "expression nested too deeply at position 64 (more than 64 levels)");
  std::string nots;
  for (int k = 0; k < 100; ++k) nots += "NOT ";
  EXPECT_FALSE(compile_condition(nots + "x").ok());
  std::string sum = "x";
  for (int k = 0; k < 300; ++k) sum += " + 1";
  EXPECT_EQ(cond_err(sum + " = 1").substr(0, 27), "expression too complex at p");
  // Long flat AND/OR chains are fine: they do not deepen the tree.
  std::string ors = "x = 0";
  for (int k = 1; k < 500; ++k) ors += " OR x = " + std::to_string(k);
  auto c = compile_condition(ors);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->matches(json::parse(R"({"x":499})").value()));
}
