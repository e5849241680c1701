// Direct methods (semantics.md §5): a back-end call goes to one device connection as a QoS 0 PUBLISH on
// $iothub/methods/POST/{name}/?$rid={rid}; the device answers on $iothub/methods/res/{status}/?$rid={rid}.
// This class correlates the two by rid, waits for an offline device up to connectTimeoutInSeconds, and fails
// calls whose response does not come within responseTimeoutInSeconds. I/O-free: the engine gives it a way to
// deliver to a live, subscribed connection, and the net layer calls expire() periodically.
// Thread safety: every method may be called from any thread; callbacks run outside its lock, on the thread
// that completed the call (an io thread for responses, the expiring thread for timeouts, the caller for
// immediate errors).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fleethub/core/bytes.hpp"
#include "fleethub/core/clock.hpp"
#include "fleethub/core/result.hpp"

namespace fleethub::hub {

struct method_request {
  std::string device_id;
  std::string module_id;
  std::string method_name;
  bytes payload;  // JSON text; empty means no payload (sent as an empty body)
  std::chrono::seconds response_timeout{30};
  std::chrono::seconds connect_timeout{0};
};

struct method_response {
  int status = 0;
  bytes payload;  // the device's body (JSON text or empty)
};

using method_callback = std::function<void(result<method_response>)>;

struct method_limits {
  std::size_t max_payload = 128 * 1024;               // request and response each (IoT Hub)
  std::chrono::seconds min_response_timeout{5}, max_response_timeout{300};
  std::chrono::seconds max_connect_timeout{300};
  std::size_t max_inflight_per_device = 50;           // 403800 DeviceMaximumInflightMethodExceeded
};

// Checks the name, payload and timeouts; errors are invalid_argument or too_large with a message saying
// which rule was broken.
result<void> validate_method_request(const method_request& r, const method_limits& lim);

class method_dispatcher {
 public:
  // Publishes at QoS 0 to the client's live connection if it is connected and subscribed to the topic;
  // returns false otherwise (nothing sent).
  using deliver_fn = std::function<bool(const std::string& client_id, std::string topic, bytes payload)>;

  explicit method_dispatcher(deliver_fn deliver, method_limits limits = {});

  // Starts a call. `cb` runs exactly once: with the device's response, or not_connected (offline or not
  // subscribed after connect_timeout), timeout, invalid_argument/too_large (bad request), forbidden
  // (too many calls in flight to the device). The device's existence is the caller's business.
  void invoke(method_request req, steady_time now, method_callback cb);

  // A device answered. `status` and `rid` are the topic's fields as received. Returns false for an unknown
  // rid (late or foreign answer: dropped) or a malformed status.
  bool on_response(const std::string& client_id, std::string_view status, std::string_view rid, bytes payload);

  // The client may now be reachable (it connected with a stored session or subscribed): send its waiting calls.
  void on_reachable(const std::string& client_id, steady_time now);

  // Fails calls past their deadline. Call a few times a second.
  void expire(steady_time now);

  // Fails everything still pending with `unavailable` (the hub is stopping).
  void cancel_all(const std::string& reason);

  std::size_t pending() const;

 private:
  struct call {
    std::string client_id;
    method_request req;
    method_callback cb;
    steady_time deadline;   // connect deadline while waiting, response deadline once sent
    bool sent = false;
  };
  // Tries to send; on success moves the call to in_flight_. Lock held.
  bool try_send_locked(std::uint64_t id, call& c, steady_time now);
  std::string topic_for(const std::string& name, std::uint64_t rid) const;

  deliver_fn deliver_;
  method_limits limits_;
  mutable std::mutex mu_;
  std::uint64_t next_rid_ = 1;
  std::unordered_map<std::uint64_t, call> in_flight_;                  // by rid, sent to the device
  std::multimap<std::string, std::pair<std::uint64_t, call>> waiting_;  // by client id, not yet sent
  std::unordered_map<std::string, std::size_t> per_client_;            // calls pending per client id
};

}  // namespace fleethub::hub
