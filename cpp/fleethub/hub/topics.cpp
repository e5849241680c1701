#include "fleethub/hub/topics.hpp"

namespace fleethub::hub {

namespace {

// Matches "devices/{d}" or "devices/{d}/modules/{m}" at the start of `t` and returns the rest.
bool strip_identity_prefix(std::string_view& t, std::string_view device_id, std::string_view module_id) {
  constexpr std::string_view devices = "devices/";
  if (t.substr(0, devices.size()) != devices) return false;
  t.remove_prefix(devices.size());
  if (t.substr(0, device_id.size()) != device_id) return false;
  t.remove_prefix(device_id.size());
  if (!module_id.empty()) {
    constexpr std::string_view modules = "/modules/";
    if (t.substr(0, modules.size()) != modules) return false;
    t.remove_prefix(modules.size());
    if (t.substr(0, module_id.size()) != module_id) return false;
    t.remove_prefix(module_id.size());
  }
  return t.empty() || t.front() == '/';
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

std::optional<std::string_view> topic_query_value(std::string_view topic, std::string_view key) {
  auto q = topic.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  auto rest = topic.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

classified_topic classify_publish(std::string_view topic, std::string_view device_id, std::string_view module_id) {
  if (starts_with(topic, "$iothub/")) {
    classified_topic c;
    if (starts_with(topic, "$iothub/twin/GET/")) {
      c.kind = topic_kind::twin_get;
    } else if (starts_with(topic, "$iothub/twin/PATCH/properties/reported/")) {
      c.kind = topic_kind::twin_patch_reported;
    } else if (starts_with(topic, "$iothub/methods/res/")) {
      c.kind = topic_kind::method_response;
      auto rest = topic.substr(std::string_view("$iothub/methods/res/").size());
      c.status = rest.substr(0, rest.find('/'));
    } else {
      return {};
    }
    c.rid = topic_query_value(topic, "$rid").value_or(std::string_view{});
    return c;
  }
  auto rest = topic;
  if (!strip_identity_prefix(rest, device_id, module_id)) return {};
  constexpr std::string_view events = "/messages/events";
  if (!starts_with(rest, events)) return {};
  rest.remove_prefix(events.size());
  if (rest.empty()) return {topic_kind::telemetry, {}};
  if (rest.front() != '/') return {};
  rest.remove_prefix(1);
  return {topic_kind::telemetry, rest};
}

bool subscription_allowed(std::string_view filter, std::string_view device_id, std::string_view module_id) {
  if (filter == "$iothub/twin/res/#" || filter == "$iothub/twin/PATCH/properties/desired/#" ||
      filter == "$iothub/methods/POST/#")
    return true;
  auto rest = filter;
  if (!strip_identity_prefix(rest, device_id, module_id)) return false;
  if (module_id.empty()) return rest == "/messages/devicebound/#" || rest == "/messages/devicebound/+";
  // Modules: pydev subscribes to inputs/#, csdk to the module's whole subtree.
  return rest == "/inputs/#" || rest == "/#" || rest == "/messages/devicebound/#";
}

std::uint32_t partition_for(std::string_view device_id, std::uint32_t partitions) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : device_id) {
    h ^= c;
    h *= 16777619u;
  }
  return partitions ? h % partitions : 0;
}

}  // namespace fleethub::hub
