// The whole HTTP request path below the socket: bytes -> request_parser -> hub::http_api -> a response,
// against a real engine, registry and LMDB store (one per process, in a temp dir). The first input byte
// picks the credentials to inject (none, the owner policy, a read-only policy, the device's own token), so
// the fuzzer reaches the routes behind authentication; the rest is raw HTTP. Every request must get exactly
// one response with a valid status, and nothing may crash. State persists across inputs (devices created by
// one input exist for the next), which is what a long-running hub sees too.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "fleethub/hub/http_api.hpp"
#include "fleethub/hub/sas.hpp"
#include "fleethub/proto/http/request_parser.hpp"

using namespace fleethub;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

struct world {
  std::filesystem::path dir;
  std::unique_ptr<store::backend> store;
  std::unique_ptr<hub::registry> reg;
  std::unique_ptr<hub::engine> eng;
  std::unique_ptr<hub::http_api> api;
  std::string tokens[4];

  world() {
    dir = std::filesystem::temp_directory_path() / ("fleethub-fuzz-http-api-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    store::lmdb_options o;
    o.path = dir.string();
    o.durable = false;  // speed: the fuzzer checks behaviour, not power-loss safety
    auto s = store::open_lmdb(o);
    check(s.ok());
    store = std::move(*s);
    reg = std::make_unique<hub::registry>(*store, [] { return std::int64_t{1700000000000}; });
    check(reg->ensure_default_policies().ok());
    hub::engine_options eo;
    eo.hostname = "hub.local";
    eng = std::make_unique<hub::engine>(eo, *store, *reg, logger{});
    check(eng->c2d().load().ok());
    api = std::make_unique<hub::http_api>(*eng, *reg, hub::http_api_options{"hub.local"});
    hub::device_spec d;
    d.device_id = "d1";
    auto dev = reg->create(d);
    check(dev.ok());
    constexpr std::int64_t far = 4102444800;
    tokens[1] = hub::make_sas_token("hub.local", reg->get_policy("iothubowner")->primary_key, far, "iothubowner");
    tokens[2] = hub::make_sas_token("hub.local", reg->get_policy("registryRead")->primary_key, far, "registryRead");
    tokens[3] = hub::make_sas_token("hub.local/devices/d1", dev->primary_key, far);
  }
  ~world() {
    api.reset();
    eng.reset();
    reg.reset();
    if (store) store->close();
    std::filesystem::remove_all(dir);
  }
};

world& the_world() {
  static world w;
  return w;
}

void run(world& w, proto::http::request req) {
  std::mutex mu;
  std::condition_variable cv;
  int answers = 0;
  int status = 0;
  w.api->handle(req, "127.0.0.1:1", [&](proto::http::response r) {
    std::lock_guard lk(mu);
    ++answers;
    status = r.status;
    cv.notify_all();
  });
  std::unique_lock lk(mu);
  // Twin writes and telemetry answer after a commit. A method call with a connect timeout waits for the
  // device; nothing ticks the engine here, so run its deadlines forward instead of waiting minutes.
  if (!cv.wait_for(lk, std::chrono::seconds(2), [&] { return answers > 0; })) {
    lk.unlock();
    w.eng->expire(std::chrono::steady_clock::now() + std::chrono::seconds(3600));
    lk.lock();
  }
  check(cv.wait_for(lk, std::chrono::seconds(10), [&] { return answers > 0; }));
  check(answers == 1);
  check(status >= 200 && status <= 599);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  world& w = the_world();
  const std::string& token = w.tokens[data[0] % 4];
  proto::http::parser_limits lim;
  lim.max_body_bytes = 64 * 1024;
  proto::http::request_parser p(lim);
  bytes_view rest(data + 1, size - 1);
  for (int i = 0; i < 8 && !rest.empty(); ++i) {
    auto out = p.feed(rest);
    check(out.consumed <= rest.size());
    rest = rest.subspan(out.consumed);
    if (out.what != proto::http::request_parser::outcome::kind::complete) break;
    auto req = p.take();
    if (!token.empty() && !req.find("Authorization")) req.headers.push_back({"Authorization", token});
    run(w, std::move(req));
  }
  return 0;
}
