// The hub's own events as messages (semantics.md §8.3, §8.4): device connection state, identity lifecycle
// and twin changes, with IoT Hub's system properties, application properties and bodies. They go into the
// event log next to telemetry (per-device order across sources), so routing can route them and Python can
// read and tail them by source. Thread safety: all methods may be called from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "fleethub/core/message.hpp"

namespace fleethub::hub {

class system_events {
 public:
  // `hostname`: the hub's canonical host name; the event's hubName is its first label (IoT Hub's hub name).
  explicit system_events(std::string_view hostname);

  // deviceConnected / deviceDisconnected with the increasing 64-hex-digit sequenceNumber body.
  message connection_state(std::string_view device_id, std::string_view module_id, bool connected,
                           std::int64_t now_ms);
  // createDeviceIdentity / deleteDeviceIdentity; body: the identity's twin JSON.
  message lifecycle(std::string_view device_id, std::string_view module_id, bool created, std::string body_json,
                    std::int64_t now_ms);
  // updateTwin / replaceTwin; body: the change (update) or the whole twin (replace).
  message twin_change(std::string_view device_id, std::string_view module_id, bool replaced, std::string body_json,
                      std::int64_t now_ms);

  const std::string& hub_name() const { return hub_name_; }
  // A string that sorts after every earlier one this process (or an earlier run, clock permitting) made.
  std::string next_sequence_number(std::int64_t now_ms);

 private:
  message base(message_source src, std::string_view device_id, std::string_view module_id, std::string_view op_type,
               std::string_view schema, std::int64_t now_ms);
  std::string hub_name_;
  std::mutex seq_mu_;
  std::uint64_t last_us_ = 0;
  std::uint64_t counter_ = 0;
};

}  // namespace fleethub::hub
