// Structured log records and an injected sink (no logging singleton: every layer that logs is handed a
// `logger`). The app routes records to stderr or, when embedded, to Python's `logging`.
// Thread safety: a logger may be called from any thread; the sink must be thread-safe.
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fleethub {

enum class log_level { debug = 10, info = 20, warning = 30, error = 40 };

struct log_record {
  log_level level = log_level::info;
  std::string component;  // "mqtt", "registry", "store", ...
  std::string event;      // stable machine-readable name: "connected", "auth_refused", ...
  std::string message;    // human text
  std::vector<std::pair<std::string, std::string>> fields;
};

using log_sink = std::function<void(log_record&&)>;

class logger {
 public:
  logger() = default;
  explicit logger(log_sink sink, log_level min = log_level::info)
      : sink_(std::make_shared<log_sink>(std::move(sink))), min_(min) {}
  bool enabled(log_level l) const { return sink_ && l >= min_; }
  void log(log_level l, std::string_view component, std::string_view event, std::string message,
           std::initializer_list<std::pair<std::string_view, std::string_view>> fields = {}) const {
    if (!enabled(l)) return;
    log_record r{l, std::string(component), std::string(event), std::move(message), {}};
    r.fields.reserve(fields.size());
    for (auto& [k, v] : fields) r.fields.emplace_back(std::string(k), std::string(v));
    (*sink_)(std::move(r));
  }

 private:
  std::shared_ptr<log_sink> sink_;
  log_level min_ = log_level::info;
};

// "ts level component event message k=v ..." for stderr.
std::string format_log_line(const log_record& r);

}  // namespace fleethub
