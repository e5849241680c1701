#include "fleethub/core/log.hpp"

namespace fleethub {

static const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug: return "DEBUG";
    case log_level::info: return "INFO";
    case log_level::warning: return "WARNING";
    case log_level::error: return "ERROR";
  }
  return "INFO";
}

std::string format_log_line(const log_record& r) {
  std::string s = level_name(r.level);
  s += ' ';
  s += r.component;
  s += ' ';
  s += r.event;
  s += ": ";
  s += r.message;
  for (auto& [k, v] : r.fields) {
    s += ' ';
    s += k;
    s += '=';
    // Quote values with spaces so lines stay machine-splittable.
    if (v.find(' ') != std::string::npos) {
      s += '"';
      s += v;
      s += '"';
    } else {
      s += v;
    }
  }
  return s;
}

}  // namespace fleethub
