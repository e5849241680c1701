// Direct methods correlation (semantics.md §5): request validation, topic format, response correlation by rid,
// connect and response timeouts driven by explicit steady_time values, per-device in-flight limit, shutdown.
#include "fleethub/hub/method_dispatcher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fleethub::hub {
namespace {

using std::chrono::seconds;
using namespace std::chrono_literals;

method_request req(std::string name = "reboot", std::string device = "dev1") {
  method_request r;
  r.device_id = std::move(device);
  r.method_name = std::move(name);
  return r;
}

errc validate(const method_request& r, const method_limits& lim = {}) {
  auto v = validate_method_request(r, lim);
  return v ? errc::ok : v.err().code;
}

// Records every delivery; answers with `reachable` (per client id, default `all_reachable`).
struct recorder {
  struct delivery {
    std::string client_id, topic;
    bytes payload;
  };
  std::mutex mu;
  std::vector<delivery> sent;
  std::map<std::string, bool> reachable;
  bool all_reachable = true;
  int attempts = 0;

  method_dispatcher::deliver_fn fn() {
    return [this](const std::string& cid, std::string topic, bytes payload) {
      std::lock_guard lk(mu);
      ++attempts;
      auto it = reachable.find(cid);
      bool ok = it == reachable.end() ? all_reachable : it->second;
      if (ok) sent.push_back({cid, std::move(topic), std::move(payload)});
      return ok;
    };
  }
  // The rid of the i-th delivery (the text after "?$rid=").
  std::string rid(std::size_t i) {
    std::lock_guard lk(mu);
    auto& t = sent.at(i).topic;
    return t.substr(t.find("?$rid=") + 6);
  }
};

// Collects the outcome of one call and how often its callback ran.
struct outcome {
  int calls = 0;
  std::optional<result<method_response>> r;
  std::thread::id thread;
  method_callback cb() {
    return [this](result<method_response>&& res) {
      ++calls;
      thread = std::this_thread::get_id();
      r.emplace(std::move(res));
    };
  }
  errc code() const { return !r ? errc::ok : (r->ok() ? errc::ok : r->err().code); }
  bool done() const { return calls > 0; }
};

const steady_time t0 = steady_time(seconds(1000));

// --- validation -------------------------------------------------------------------------------------------

TEST(MethodDispatcher, NameValidation) {
  for (const char* ok : {"reboot", "a", "Reboot_Now-2", "x.y", "~!%^&*'|`", "A1"})
    EXPECT_EQ(validate(req(ok)), errc::ok) << ok;
  EXPECT_EQ(validate(req(std::string(1024, 'm'))), errc::ok);
  EXPECT_EQ(validate(req(std::string(1025, 'm'))), errc::invalid_argument);
  EXPECT_EQ(validate(req("")), errc::invalid_argument);
  const std::string forbidden = "$()<>@,;:\\\"/[]?={} \t#+";
  for (char c : forbidden) {
    for (std::string name : {std::string(1, c), "a" + std::string(1, c) + "b", "ab" + std::string(1, c)}) {
      auto v = validate_method_request(req(name), {});
      ASSERT_FALSE(v) << "'" << name << "' accepted";
      EXPECT_EQ(v.err().code, errc::invalid_argument) << name;
      EXPECT_NE(v.err().message.find("methodName"), std::string::npos) << v.err().message;
    }
  }
  // Control characters, DEL and non-ASCII bytes are not printable US-ASCII.
  for (std::string name : {std::string("a\nb"), std::string("a\x7f"), std::string("caf\xC3\xA9"),
                           std::string("a\0b", 3)})
    EXPECT_EQ(validate(req(name)), errc::invalid_argument);
}

TEST(MethodDispatcher, PayloadLimitIs128KB) {
  auto r = req();
  r.payload.assign(128 * 1024, 'x');
  EXPECT_EQ(validate(r), errc::ok);
  r.payload.push_back('x');
  auto v = validate_method_request(r, {});
  ASSERT_FALSE(v);
  EXPECT_EQ(v.err().code, errc::too_large);
  EXPECT_NE(v.err().message.find("131073"), std::string::npos) << v.err().message;
  r.payload.clear();
  EXPECT_EQ(validate(r), errc::ok) << "no payload";
  method_limits small;
  small.max_payload = 10;
  r.payload.assign(11, 'x');
  EXPECT_EQ(validate(r, small), errc::too_large) << "the limit comes from method_limits";
}

TEST(MethodDispatcher, TimeoutBoundaries) {
  auto r = req();
  EXPECT_EQ(r.response_timeout, seconds(30)) << "default";
  EXPECT_EQ(r.connect_timeout, seconds(0)) << "default";
  for (int s : {5, 6, 30, 299, 300}) {
    r.response_timeout = seconds(s);
    EXPECT_EQ(validate(r), errc::ok) << s;
  }
  for (int s : {-1, 0, 4, 301, 100000}) {
    r.response_timeout = seconds(s);
    EXPECT_EQ(validate(r), errc::invalid_argument) << s;
  }
  r.response_timeout = seconds(30);
  for (int s : {0, 1, 299, 300}) {
    r.connect_timeout = seconds(s);
    EXPECT_EQ(validate(r), errc::ok) << s;
  }
  for (int s : {-1, 301, 3600}) {
    r.connect_timeout = seconds(s);
    auto v = validate_method_request(r, {});
    ASSERT_FALSE(v) << s;
    EXPECT_EQ(v.err().code, errc::invalid_argument);
    EXPECT_NE(v.err().message.find("connectTimeoutInSeconds"), std::string::npos) << v.err().message;
  }
}

TEST(MethodDispatcher, InvalidRequestFailsImmediatelyWithoutSending) {
  recorder rec;
  method_dispatcher d(rec.fn());
  outcome bad_name, too_big, bad_timeout;
  d.invoke(req("a/b"), t0, bad_name.cb());
  auto big = req();
  big.payload.assign(128 * 1024 + 1, '1');
  d.invoke(big, t0, too_big.cb());
  auto slow = req();
  slow.response_timeout = seconds(301);
  d.invoke(slow, t0, bad_timeout.cb());
  EXPECT_EQ(bad_name.calls, 1);
  EXPECT_EQ(bad_name.code(), errc::invalid_argument);
  EXPECT_EQ(too_big.code(), errc::too_large);
  EXPECT_EQ(bad_timeout.code(), errc::invalid_argument);
  EXPECT_EQ(bad_name.thread, std::this_thread::get_id());
  EXPECT_EQ(rec.attempts, 0);
  EXPECT_EQ(d.pending(), 0u);
}

// --- sending and responses ---------------------------------------------------------------------------------

TEST(MethodDispatcher, UnreachableWithoutConnectTimeoutIsNotConnectedAtOnce) {
  recorder rec;
  rec.all_reachable = false;
  method_limits lim;
  lim.max_inflight_per_device = 1;
  method_dispatcher d(rec.fn(), lim);
  outcome o;
  d.invoke(req(), t0, o.cb());
  EXPECT_EQ(rec.attempts, 1) << "it tried to deliver";
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::not_connected);
  EXPECT_NE(o.r->err().message.find("404103"), std::string::npos) << o.r->err().message;
  EXPECT_EQ(o.thread, std::this_thread::get_id()) << "immediate errors run on the caller's thread";
  EXPECT_EQ(d.pending(), 0u);
  // Nothing is left counted against the device: with a limit of 1 the next call is not refused.
  rec.all_reachable = true;
  outcome o2;
  d.invoke(req(), t0, o2.cb());
  EXPECT_FALSE(o2.done());
  EXPECT_EQ(d.pending(), 1u);
  d.expire(t0 + seconds(3600));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o2.code(), errc::timeout);
}

TEST(MethodDispatcher, TopicFormatAndUniqueRids) {
  recorder rec;
  method_limits lim;
  lim.max_inflight_per_device = 1000;
  method_dispatcher d(rec.fn(), lim);
  std::vector<outcome> outs(200);
  for (std::size_t i = 0; i < outs.size(); ++i) {
    auto r = req("do.it-" + std::to_string(i % 3));
    r.payload = to_bytes("{\"n\":" + std::to_string(i) + "}");
    d.invoke(r, t0, outs[i].cb());
  }
  ASSERT_EQ(rec.sent.size(), outs.size());
  EXPECT_EQ(d.pending(), outs.size());
  const std::regex topic_re(R"(^\$iothub/methods/POST/(do\.it-[0-2])/\?\$rid=([0-9a-f]+)$)");
  std::set<std::string> rids;
  for (std::size_t i = 0; i < rec.sent.size(); ++i) {
    const auto& s = rec.sent[i];
    std::smatch m;
    ASSERT_TRUE(std::regex_match(s.topic, m, topic_re)) << s.topic;
    EXPECT_EQ(m[1].str(), "do.it-" + std::to_string(i % 3));
    EXPECT_EQ(s.client_id, "dev1");
    EXPECT_EQ(as_string_view(s.payload), "{\"n\":" + std::to_string(i) + "}");
    rids.insert(m[2].str());
  }
  EXPECT_EQ(rids.size(), outs.size()) << "rids are unique";
  for (auto& o : outs) EXPECT_EQ(o.calls, 0);
}

TEST(MethodDispatcher, ModuleCallGoesToTheModuleClientId) {
  recorder rec;
  method_dispatcher d(rec.fn());
  auto r = req("ping");
  r.module_id = "mod1";
  outcome o;
  d.invoke(r, t0, o.cb());
  ASSERT_EQ(rec.sent.size(), 1u);
  EXPECT_EQ(rec.sent[0].client_id, "dev1/mod1");
  EXPECT_FALSE(d.on_response("dev1", "200", rec.rid(0), {})) << "the device is not the module";
  EXPECT_TRUE(d.on_response("dev1/mod1", "200", rec.rid(0), {}));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::ok);
}

TEST(MethodDispatcher, ResponseCompletesWithStatusAndPayload) {
  recorder rec;
  method_dispatcher d(rec.fn());
  outcome a, b;
  d.invoke(req("a"), t0, a.cb());
  d.invoke(req("b"), t0, b.cb());
  ASSERT_EQ(rec.sent.size(), 2u);
  // Answered out of order: correlation is by rid.
  EXPECT_TRUE(d.on_response("dev1", "404", rec.rid(1), to_bytes("{\"why\":\"nope\"}")));
  EXPECT_EQ(a.calls, 0);
  ASSERT_EQ(b.calls, 1);
  ASSERT_TRUE(b.r->ok());
  EXPECT_EQ((*b.r)->status, 404);
  EXPECT_EQ(as_string_view((*b.r)->payload), "{\"why\":\"nope\"}");
  EXPECT_EQ(d.pending(), 1u);
  EXPECT_TRUE(d.on_response("dev1", "-3", rec.rid(0), {}));
  ASSERT_EQ(a.calls, 1);
  ASSERT_TRUE(a.r->ok());
  EXPECT_EQ((*a.r)->status, -3) << "the hub does not interpret the device's status";
  EXPECT_TRUE((*a.r)->payload.empty());
  EXPECT_EQ(d.pending(), 0u);
  // A second answer to the same rid is dropped.
  EXPECT_FALSE(d.on_response("dev1", "200", rec.rid(0), {}));
  EXPECT_EQ(a.calls, 1);
}

TEST(MethodDispatcher, MalformedOrForeignResponsesAreDropped) {
  recorder rec;
  method_dispatcher d(rec.fn());
  outcome o;
  d.invoke(req(), t0, o.cb());
  auto rid = rec.rid(0);
  EXPECT_FALSE(d.on_response("dev2", "200", rid, {})) << "wrong client id";
  EXPECT_FALSE(d.on_response("dev1", "200", "fffffff0", {})) << "unknown rid";
  EXPECT_FALSE(d.on_response("dev1", "20x", rid, {})) << "non-integer status";
  EXPECT_FALSE(d.on_response("dev1", "", rid, {})) << "empty status";
  EXPECT_FALSE(d.on_response("dev1", "200.0", rid, {})) << "non-integer status";
  EXPECT_FALSE(d.on_response("dev1", "99999999999999999999", rid, {})) << "status out of range";
  EXPECT_FALSE(d.on_response("dev1", "200", "xyz", {})) << "non-hex rid";
  EXPECT_FALSE(d.on_response("dev1", "200", rid + "g", {})) << "trailing garbage in the rid";
  EXPECT_FALSE(d.on_response("dev1", "200", "", {})) << "empty rid";
  EXPECT_FALSE(d.on_response("dev1", "200", "-" + rid, {})) << "negative rid";
  EXPECT_EQ(o.calls, 0) << "none of these completed the call";
  EXPECT_EQ(d.pending(), 1u);
  EXPECT_TRUE(d.on_response("dev1", "201", rid, to_bytes("null")));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ((*o.r)->status, 201);
}

TEST(MethodDispatcher, OversizedResponseFailsTheCall) {
  recorder rec;
  method_limits lim;
  lim.max_payload = 16;
  method_dispatcher d(rec.fn(), lim);
  outcome o;
  d.invoke(req(), t0, o.cb());
  EXPECT_TRUE(d.on_response("dev1", "200", rec.rid(0), bytes(17, 'x')));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::too_large);
  EXPECT_EQ(d.pending(), 0u);
}

// --- deadlines -----------------------------------------------------------------------------------------------

TEST(MethodDispatcher, ResponseTimeout) {
  recorder rec;
  method_dispatcher d(rec.fn());
  auto r = req();
  r.response_timeout = seconds(10);
  outcome o;
  d.invoke(r, t0, o.cb());
  d.expire(t0);
  d.expire(t0 + seconds(9));
  d.expire(t0 + seconds(10) - 1ms);
  EXPECT_EQ(o.calls, 0) << "not before the deadline";
  EXPECT_EQ(d.pending(), 1u);
  d.expire(t0 + seconds(10));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::timeout);
  EXPECT_NE(o.r->err().message.find("504101"), std::string::npos) << o.r->err().message;
  EXPECT_EQ(d.pending(), 0u);
  // A late answer is dropped and the callback does not run again.
  EXPECT_FALSE(d.on_response("dev1", "200", rec.rid(0), {}));
  d.expire(t0 + seconds(1000));
  EXPECT_EQ(o.calls, 1);
}

TEST(MethodDispatcher, ExpireOnlyFailsCallsPastTheirOwnDeadline) {
  recorder rec;
  method_dispatcher d(rec.fn());
  outcome fast, slow;
  auto r = req();
  r.response_timeout = seconds(5);
  d.invoke(r, t0, fast.cb());
  r.response_timeout = seconds(300);
  d.invoke(r, t0, slow.cb());
  d.expire(t0 + seconds(5));
  EXPECT_EQ(fast.code(), errc::timeout);
  EXPECT_EQ(slow.calls, 0);
  d.expire(t0 + seconds(300) - 1ms);
  EXPECT_EQ(slow.calls, 0);
  d.expire(t0 + seconds(300));
  EXPECT_EQ(slow.code(), errc::timeout);
  EXPECT_EQ(fast.calls, 1);
}

TEST(MethodDispatcher, WaitsForConnectThenSendsAndStartsTheResponseDeadline) {
  recorder rec;
  rec.all_reachable = false;
  method_dispatcher d(rec.fn());
  auto r = req("wake");
  r.payload = to_bytes("{}");
  r.connect_timeout = seconds(60);
  r.response_timeout = seconds(10);
  outcome o;
  d.invoke(r, t0, o.cb());
  EXPECT_EQ(o.calls, 0) << "waits for the device";
  EXPECT_TRUE(rec.sent.empty());
  EXPECT_EQ(d.pending(), 1u);
  d.expire(t0 + seconds(15));
  EXPECT_EQ(o.calls, 0) << "the response timeout does not run while waiting";
  d.on_reachable("dev1", t0 + seconds(16));  // still not reachable
  EXPECT_TRUE(rec.sent.empty());
  EXPECT_EQ(o.calls, 0);
  d.on_reachable("dev2", t0 + seconds(17));  // another device
  rec.all_reachable = true;
  d.on_reachable("dev2", t0 + seconds(18));
  EXPECT_TRUE(rec.sent.empty()) << "other devices' arrivals do not send this call";
  d.on_reachable("dev1", t0 + seconds(20));
  ASSERT_EQ(rec.sent.size(), 1u);
  EXPECT_EQ(rec.sent[0].client_id, "dev1");
  EXPECT_EQ(as_string_view(rec.sent[0].payload), "{}");
  EXPECT_EQ(rec.sent[0].topic.rfind("$iothub/methods/POST/wake/?$rid=", 0), 0u) << rec.sent[0].topic;
  EXPECT_EQ(d.pending(), 1u);
  d.on_reachable("dev1", t0 + seconds(21));
  EXPECT_EQ(rec.sent.size(), 1u) << "sent once";
  // The response deadline is 10 s after the send (t0+30), not after the invoke (t0+10) nor the connect
  // deadline (t0+60).
  d.expire(t0 + seconds(30) - 1ms);
  EXPECT_EQ(o.calls, 0);
  d.expire(t0 + seconds(30));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::timeout);
}

TEST(MethodDispatcher, WaitingCallAnsweredAfterConnect) {
  recorder rec;
  rec.all_reachable = false;
  method_dispatcher d(rec.fn());
  auto r = req();
  r.connect_timeout = seconds(30);
  outcome o;
  d.invoke(r, t0, o.cb());
  rec.all_reachable = true;
  d.on_reachable("dev1", t0 + seconds(1));
  ASSERT_EQ(rec.sent.size(), 1u);
  EXPECT_TRUE(d.on_response("dev1", "200", rec.rid(0), to_bytes("1")));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ((*o.r)->status, 200);
  d.expire(t0 + seconds(1000));
  EXPECT_EQ(o.calls, 1);
}

TEST(MethodDispatcher, ReachableDeviceWithConnectTimeoutIsSentAtOnce) {
  recorder rec;
  method_dispatcher d(rec.fn());
  auto r = req();
  r.connect_timeout = seconds(60);
  r.response_timeout = seconds(5);
  outcome o;
  d.invoke(r, t0, o.cb());
  EXPECT_EQ(rec.sent.size(), 1u);
  d.expire(t0 + seconds(5));
  EXPECT_EQ(o.code(), errc::timeout) << "the response deadline runs from the send";
}

TEST(MethodDispatcher, WaitingCallExpiresNotConnected) {
  recorder rec;
  rec.all_reachable = false;
  method_dispatcher d(rec.fn());
  auto r = req();
  r.connect_timeout = seconds(60);
  outcome o;
  d.invoke(r, t0, o.cb());
  d.expire(t0 + seconds(60) - 1ms);
  EXPECT_EQ(o.calls, 0);
  d.expire(t0 + seconds(60));
  ASSERT_EQ(o.calls, 1);
  EXPECT_EQ(o.code(), errc::not_connected);
  EXPECT_NE(o.r->err().message.find("404103"), std::string::npos) << o.r->err().message;
  EXPECT_EQ(d.pending(), 0u);
  rec.all_reachable = true;
  d.on_reachable("dev1", t0 + seconds(61));
  EXPECT_TRUE(rec.sent.empty()) << "an expired call is not sent later";
  d.expire(t0 + seconds(1000));
  EXPECT_EQ(o.calls, 1);
}

TEST(MethodDispatcher, SeveralWaitingCallsAllGoOnReachable) {
  recorder rec;
  rec.all_reachable = false;
  method_dispatcher d(rec.fn());
  std::vector<outcome> outs(5);
  for (auto& o : outs) {
    auto r = req();
    r.connect_timeout = seconds(10);
    d.invoke(r, t0, o.cb());
  }
  EXPECT_EQ(d.pending(), 5u);
  rec.all_reachable = true;
  d.on_reachable("dev1", t0 + seconds(1));
  ASSERT_EQ(rec.sent.size(), 5u);
  std::set<std::string> rids;
  for (std::size_t i = 0; i < 5; ++i) rids.insert(rec.rid(i));
  EXPECT_EQ(rids.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_TRUE(d.on_response("dev1", "200", rec.rid(i), {}));
  for (auto& o : outs) EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(d.pending(), 0u);
}

// --- limits and shutdown -----------------------------------------------------------------------------------

TEST(MethodDispatcher, InflightLimitPerDevice) {
  recorder rec;
  rec.reachable["dev2"] = false;
  method_limits lim;
  lim.max_inflight_per_device = 2;
  method_dispatcher d(rec.fn(), lim);
  outcome a, b, c, other, w1, w2;
  d.invoke(req(), t0, a.cb());
  d.invoke(req(), t0, b.cb());
  d.invoke(req(), t0, c.cb());
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.code(), errc::forbidden);
  EXPECT_EQ(c.thread, std::this_thread::get_id());
  EXPECT_EQ(rec.sent.size(), 2u) << "the refused call was not sent";
  d.invoke(req("x", "dev3"), t0, other.cb());
  EXPECT_EQ(other.calls, 0) << "the limit is per device";
  // Waiting calls count too.
  auto r = req("x", "dev2");
  r.connect_timeout = seconds(30);
  d.invoke(r, t0, w1.cb());
  d.invoke(r, t0, w2.cb());
  outcome w3;
  d.invoke(r, t0, w3.cb());
  EXPECT_EQ(w1.calls + w2.calls, 0);
  EXPECT_EQ(w3.code(), errc::forbidden);
  // An answer frees a slot.
  EXPECT_TRUE(d.on_response("dev1", "200", rec.rid(0), {}));
  outcome e;
  d.invoke(req(), t0, e.cb());
  EXPECT_EQ(e.calls, 0);
  EXPECT_EQ(rec.sent.size(), 4u);
  // So does a timeout (and an expired wait).
  d.expire(t0 + seconds(30));
  EXPECT_EQ(b.code(), errc::timeout);
  EXPECT_EQ(e.code(), errc::timeout);
  EXPECT_EQ(w1.code(), errc::not_connected);
  EXPECT_EQ(w2.code(), errc::not_connected);
  outcome f, g, h;
  d.invoke(req(), t0 + seconds(31), f.cb());
  d.invoke(req(), t0 + seconds(31), g.cb());
  d.invoke(req(), t0 + seconds(31), h.cb());
  EXPECT_EQ(f.calls + g.calls, 0);
  EXPECT_EQ(h.code(), errc::forbidden);
  for (auto* o : {&a, &b, &c, &e, &w1, &w2, &w3}) EXPECT_EQ(o->calls, 1);
  d.cancel_all("stop");
}

TEST(MethodDispatcher, CancelAllFailsSentAndWaitingCalls) {
  recorder rec;
  rec.reachable["offline"] = false;
  method_dispatcher d(rec.fn());
  outcome sent, waiting;
  d.invoke(req(), t0, sent.cb());
  auto r = req("x", "offline");
  r.connect_timeout = seconds(100);
  d.invoke(r, t0, waiting.cb());
  EXPECT_EQ(d.pending(), 2u);
  d.cancel_all("the hub is stopping");
  ASSERT_EQ(sent.calls, 1);
  ASSERT_EQ(waiting.calls, 1);
  EXPECT_EQ(sent.code(), errc::unavailable);
  EXPECT_EQ(waiting.code(), errc::unavailable);
  EXPECT_EQ(sent.r->err().message, "the hub is stopping");
  EXPECT_EQ(d.pending(), 0u);
  // Nothing more happens to them.
  EXPECT_FALSE(d.on_response("dev1", "200", rec.rid(0), {}));
  rec.reachable["offline"] = true;
  d.on_reachable("offline", t0 + seconds(1));
  d.expire(t0 + seconds(1000));
  d.cancel_all("again");
  EXPECT_EQ(sent.calls, 1);
  EXPECT_EQ(waiting.calls, 1);
  EXPECT_EQ(rec.sent.size(), 1u);
}

TEST(MethodDispatcher, PendingCounts) {
  recorder rec;
  rec.reachable["off"] = false;
  method_dispatcher d(rec.fn());
  EXPECT_EQ(d.pending(), 0u);
  std::vector<outcome> outs(4);
  d.invoke(req(), t0, outs[0].cb());
  d.invoke(req(), t0, outs[1].cb());
  auto r = req("m", "off");
  r.connect_timeout = seconds(5);
  d.invoke(r, t0, outs[2].cb());
  EXPECT_EQ(d.pending(), 3u);
  d.invoke(req("m", "off"), t0, outs[3].cb());  // no connect timeout: fails at once
  EXPECT_EQ(d.pending(), 3u);
  EXPECT_TRUE(d.on_response("dev1", "200", rec.rid(0), {}));
  EXPECT_EQ(d.pending(), 2u);
  d.expire(t0 + seconds(5));  // the waiting call
  EXPECT_EQ(d.pending(), 1u);
  d.expire(t0 + seconds(30));
  EXPECT_EQ(d.pending(), 0u);
  for (auto& o : outs) EXPECT_EQ(o.calls, 1);
}

TEST(MethodDispatcher, ConcurrentCallsCompleteExactlyOnce) {
  // Invokes, answers and expiries race from several threads; every callback runs exactly once.
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> to_answer;  // client id, rid
  method_dispatcher d([&](const std::string& cid, std::string topic, bytes) {
    std::lock_guard lk(mu);
    to_answer.emplace_back(cid, topic.substr(topic.find("?$rid=") + 6));
    return true;
  });
  constexpr int threads = 4, per_thread = 500;
  std::vector<std::atomic<int>> counts(threads * per_thread);
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread responder([&] {
    while (!stop.load()) {
      std::vector<std::pair<std::string, std::string>> batch;
      {
        std::lock_guard lk(mu);
        batch.swap(to_answer);
      }
      for (auto& [cid, rid] : batch)
        if (d.on_response(cid, "200", rid, {})) ++answered;
      d.expire(t0 + seconds(1));  // nothing is due yet
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto idx = t * per_thread + i;
        d.invoke(req("m", "dev" + std::to_string(i % 7)), t0, [&counts, idx](result<method_response>&&) { ++counts[idx]; });
      }
    });
  for (auto& t : ts) t.join();
  d.expire(t0 + seconds(30));  // whatever the responder has not answered yet times out
  stop = true;
  responder.join();
  d.cancel_all("stop");
  EXPECT_EQ(d.pending(), 0u);
  for (std::size_t i = 0; i < counts.size(); ++i) ASSERT_EQ(counts[i].load(), 1) << i;
  // Every answer the responder got through completed a call (the rest had timed out).
  EXPECT_LE(answered.load(), threads * per_thread);
}

}  // namespace
}  // namespace fleethub::hub
