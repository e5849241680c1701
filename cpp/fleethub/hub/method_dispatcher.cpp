#include "fleethub/hub/method_dispatcher.hpp"

#include <charconv>
#include <cstdio>
#include <utility>

namespace fleethub::hub {

namespace {

// IoT Hub's rule for method names: printable US-ASCII except $ ( ) < > @ , ; : \ " / [ ] ? = { } SP HT.
// '/' matters most: the name is one topic level.
bool valid_method_char(char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '$': case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':': case '\\':
    case '"': case '/': case '[': case ']': case '?': case '=': case '{': case '}': case '+': case '#':
      return false;
    default: return true;
  }
}

}  // namespace

result<void> validate_method_request(const method_request& r, const method_limits& lim) {
  if (r.method_name.empty()) return make_error(errc::invalid_argument, "methodName is required");
  if (r.method_name.size() > 1024) return make_error(errc::invalid_argument, "methodName is longer than 1024 characters");
  for (char c : r.method_name)
    if (!valid_method_char(c))
      return make_error(errc::invalid_argument,
                        "methodName '" + r.method_name +
                            "' may contain only printable US-ASCII characters other than "
                            "$ ( ) < > @ , ; : \\ \" / [ ] ? = { } + # and spaces");
  if (r.payload.size() > lim.max_payload)
    return make_error(errc::too_large, "method payload of " + std::to_string(r.payload.size()) +
                                           " bytes exceeds the " + std::to_string(lim.max_payload) + "-byte limit");
  if (r.response_timeout < lim.min_response_timeout || r.response_timeout > lim.max_response_timeout)
    return make_error(errc::invalid_argument, "responseTimeoutInSeconds must be between " +
                                                  std::to_string(lim.min_response_timeout.count()) + " and " +
                                                  std::to_string(lim.max_response_timeout.count()) + " (got " +
                                                  std::to_string(r.response_timeout.count()) + ")");
  if (r.connect_timeout.count() < 0 || r.connect_timeout > lim.max_connect_timeout)
    return make_error(errc::invalid_argument, "connectTimeoutInSeconds must be between 0 and " +
                                                  std::to_string(lim.max_connect_timeout.count()) + " (got " +
                                                  std::to_string(r.connect_timeout.count()) + ")");
  return {};
}

method_dispatcher::method_dispatcher(deliver_fn deliver, method_limits limits)
    : deliver_(std::move(deliver)), limits_(limits) {}

std::string method_dispatcher::topic_for(const std::string& name, std::uint64_t rid) const {
  // The rid is hex (SDK samples parse it base 16) and nothing may follow it (csdk takes the rest of the level).
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(rid));
  return "$iothub/methods/POST/" + name + "/?$rid=" + buf;
}

bool method_dispatcher::try_send_locked(std::uint64_t id, call& c, steady_time now) {
  if (!deliver_(c.client_id, topic_for(c.req.method_name, id), c.req.payload)) return false;
  c.sent = true;
  c.deadline = now + c.req.response_timeout;
  return true;
}

void method_dispatcher::invoke(method_request req, steady_time now, method_callback cb) {
  if (auto v = validate_method_request(req, limits_); !v) {
    cb(v.err());
    return;
  }
  std::string client_id = req.module_id.empty() ? req.device_id : req.device_id + "/" + req.module_id;
  error fail;
  {
    std::lock_guard lk(mu_);
    auto& n = per_client_[client_id];
    if (n >= limits_.max_inflight_per_device) {
      fail = make_error(errc::forbidden, "too many direct method calls in flight to '" + client_id + "' (at most " +
                                             std::to_string(limits_.max_inflight_per_device) + ")");
    } else {
      auto id = next_rid_++;
      call c{client_id, std::move(req), std::move(cb), now + std::chrono::seconds(0), false};
      if (try_send_locked(id, c, now)) {
        ++n;
        in_flight_.emplace(id, std::move(c));
        return;
      }
      if (c.req.connect_timeout.count() > 0) {
        ++n;
        c.deadline = now + c.req.connect_timeout;
        waiting_.emplace(client_id, std::make_pair(id, std::move(c)));
        return;
      }
      if (n == 0) per_client_.erase(client_id);
      cb = std::move(c.cb);
      fail = make_error(errc::not_connected, "device '" + client_id +
                                                 "' is not online or has not subscribed to direct methods "
                                                 "(IoT Hub 404103 DeviceNotOnline)");
    }
  }
  cb(std::move(fail));
}

bool method_dispatcher::on_response(const std::string& client_id, std::string_view status, std::string_view rid,
                                    bytes payload) {
  int st = 0;
  auto [p, ec] = std::from_chars(status.data(), status.data() + status.size(), st);
  if (ec != std::errc() || p != status.data() + status.size()) return false;
  std::uint64_t id = 0;
  auto [p2, ec2] = std::from_chars(rid.data(), rid.data() + rid.size(), id, 16);
  if (ec2 != std::errc() || p2 != rid.data() + rid.size()) return false;
  method_callback cb;
  {
    std::lock_guard lk(mu_);
    auto it = in_flight_.find(id);
    if (it == in_flight_.end() || it->second.client_id != client_id) return false;
    cb = std::move(it->second.cb);
    in_flight_.erase(it);
    if (auto n = per_client_.find(client_id); n != per_client_.end() && --n->second == 0) per_client_.erase(n);
  }
  if (payload.size() > limits_.max_payload) {
    cb(make_error(errc::too_large, "the device's method response of " + std::to_string(payload.size()) +
                                       " bytes exceeds the " + std::to_string(limits_.max_payload) + "-byte limit"));
    return true;
  }
  cb(method_response{st, std::move(payload)});
  return true;
}

void method_dispatcher::on_reachable(const std::string& client_id, steady_time now) {
  std::lock_guard lk(mu_);
  auto [b, e] = waiting_.equal_range(client_id);
  for (auto it = b; it != e;) {
    auto& [id, c] = it->second;
    if (!try_send_locked(id, c, now)) break;  // still not subscribed: the rest would fail too
    in_flight_.emplace(id, std::move(c));
    it = waiting_.erase(it);
  }
}

void method_dispatcher::expire(steady_time now) {
  std::vector<std::pair<method_callback, error>> done;
  {
    std::lock_guard lk(mu_);
    auto finish = [&](const std::string& client_id, method_callback cb, error e) {
      if (auto n = per_client_.find(client_id); n != per_client_.end() && --n->second == 0) per_client_.erase(n);
      done.emplace_back(std::move(cb), std::move(e));
    };
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (it->second.deadline > now) { ++it; continue; }
      finish(it->second.client_id, std::move(it->second.cb),
             make_error(errc::timeout, "device '" + it->second.client_id + "' did not answer method '" +
                                           it->second.req.method_name + "' within " +
                                           std::to_string(it->second.req.response_timeout.count()) +
                                           " s (IoT Hub 504101 GatewayTimeout)"));
      it = in_flight_.erase(it);
    }
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      auto& c = it->second.second;
      if (c.deadline > now) { ++it; continue; }
      finish(c.client_id, std::move(c.cb),
             make_error(errc::not_connected, "device '" + c.client_id + "' did not connect and subscribe to direct "
                                             "methods within " + std::to_string(c.req.connect_timeout.count()) +
                                             " s (IoT Hub 404103 DeviceNotOnline)"));
      it = waiting_.erase(it);
    }
  }
  for (auto& [cb, e] : done) cb(std::move(e));
}

void method_dispatcher::cancel_all(const std::string& reason) {
  std::vector<method_callback> cbs;
  {
    std::lock_guard lk(mu_);
    for (auto& [id, c] : in_flight_) cbs.push_back(std::move(c.cb));
    for (auto& [cid, w] : waiting_) cbs.push_back(std::move(w.second.cb));
    in_flight_.clear();
    waiting_.clear();
    per_client_.clear();
  }
  for (auto& cb : cbs) cb(make_error(errc::unavailable, reason));
}

std::size_t method_dispatcher::pending() const {
  std::lock_guard lk(mu_);
  return in_flight_.size() + waiting_.size();
}

}  // namespace fleethub::hub
