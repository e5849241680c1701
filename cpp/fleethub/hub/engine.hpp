// The hub engine: authenticates MQTT connections against the registry, owns sessions (persistent ones in the
// store), authorizes topics, turns telemetry PUBLISHes into stamped messages and appends them to the event
// log. I/O-free: net/ calls it with decoded packets and `now`, and it answers with decisions; durable work
// goes through the store port, and completion comes back through callbacks that net/ posts to its threads.
// Thread safety: every method may be called from any thread (one mutex guards the session table).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "fleethub/core/clock.hpp"
#include "fleethub/core/log.hpp"
#include "fleethub/core/message.hpp"
#include "fleethub/hub/c2d_queues.hpp"
#include "fleethub/hub/method_dispatcher.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/hub/session.hpp"
#include "fleethub/hub/system_events.hpp"
#include "fleethub/hub/twin.hpp"
#include "fleethub/hub/twin_manager.hpp"
#include "fleethub/proto/mqtt/packet.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::hub {

struct engine_options {
  std::string hostname = "localhost";       // canonical hub host name (user id of system events)
  std::size_t max_message_size = 256 * 1024;  // IoT Hub's D2C limit: body + properties
  std::size_t max_subscriptions = 16;
  std::size_t max_inflight_outbound = 100;  // QoS 1 messages sent to one client and not yet acknowledged
  twin_limits twin;
  method_limits methods;
  c2d_options c2d;
  bool connection_events = true;  // DeviceConnectionStateEvents into the event log
};

// Who a connection is, once authenticated.
struct client_identity {
  std::string client_id;
  std::string device_id;
  std::string module_id;
  std::string generation_id;
  connection_auth auth = connection_auth::none;  // how it authenticated (iothub-connection-auth-method)
  std::int64_t token_expiry_s = 0;   // 0: no expiry (X.509)
};

struct connect_request {
  std::string client_id;
  std::optional<std::string> username;
  std::optional<std::string> password;
  bool clean_session = true;
  std::string remote_address;
  std::string transport = "mqtt";            // "mqtt" | "mqtts"
  std::string client_cert_sha1;              // uppercase hex thumbprint of a TLS client certificate, if any
  std::string client_cert_sha256;
};

struct connect_decision {
  proto::mqtt::connack_code code = proto::mqtt::connack_code::not_authorized;
  client_identity identity;
  std::string reason;  // why it was refused (logged; never sent to the client)
};

struct attach_result {
  bool session_present = false;
  std::vector<outbound_message> resend;  // unacknowledged QoS 1 messages, oldest first, dup set
};

// What to do with one PUBLISH from a device.
struct publish_telemetry { message msg; std::uint32_t partition = 0; };
struct publish_close { std::string reason; };        // IoT Hub closes the connection on a forbidden publish
struct publish_ignore { std::string reason; };       // accepted and acknowledged but not (yet) handled
struct publish_handled {};  // a twin or method PUBLISH the engine answers itself (on the response topics)
using publish_outcome = std::variant<publish_telemetry, publish_close, publish_ignore, publish_handled>;

class engine {
 public:
  engine(engine_options options, store::backend& store, registry& reg, logger log);
  ~engine();

  connect_decision authenticate(const connect_request& req, wall_time now);

  // Binds a live connection to its session. Kicks an older connection with the same client id.
  attach_result attach(const client_identity& id, bool clean_session, std::shared_ptr<connection_link> link);
  // The connection is gone. No-op if `link` is no longer the session's current link (taken over).
  void detach(const client_identity& id, const connection_link* link, std::string_view reason);

  // Takes the packet by value so the payload moves into the message without a copy.
  publish_outcome on_publish(const client_identity& id, proto::mqtt::publish_packet p, wall_time now);

  // Appends telemetry to the event log with one group-committed batch; `done` runs on the store's writer
  // thread once the batch is durable (or failed).
  void ingest(std::vector<publish_telemetry> messages, store::commit_callback done);

  // Grants (0, 1 or 0x80 per filter) and persists the subscriptions of a persistent session; `done` is
  // called with the return codes once they are durable (immediately for a clean session).
  void subscribe(const client_identity& id, const std::vector<proto::mqtt::subscription>& subs,
                 std::function<void(std::vector<std::uint8_t>)> done);
  void unsubscribe(const client_identity& id, const std::vector<std::string>& filters);
  // The client acknowledged an outbound QoS 1 publish: forget it.
  void on_puback(const client_identity& id, std::uint16_t packet_id);
  // The PUBACKs of one read, handled under one lock: C2D completions go to the store as one batch.
  void on_pubacks(const client_identity& id, const std::vector<std::uint16_t>& packet_ids);

  // Publishes to one client through its session (the primitive C2D, twin and method delivery build on).
  // QoS 1 to a persistent session is stored and redelivered until acknowledged, across reconnects and
  // restarts. Errors: not_found (no session subscribed to a matching filter).
  result<void> publish_to_client(std::string_view client_id, std::string topic, bytes payload, std::uint8_t qos);

  // Direct methods (semantics.md §5). `cb` runs exactly once, on some hub thread: the device's answer, or
  // not_found (no such identity), not_connected (404103), timeout (504101), invalid_argument/too_large.
  void invoke_method(method_request req, method_callback cb);
  // Fails method calls past their deadlines; net/ calls it a few times a second.
  void expire(steady_time now);

  twin_manager& twins() { return twins_; }
  c2d_queues& c2d() { return c2d_; }
  system_events& events() { return events_; }
  std::size_t pending_methods() const { return methods_.pending(); }

  // Kicks every live connection of a device and its modules (or of one module); used on disable and delete.
  void disconnect_device(std::string_view device_id, const std::string& reason, std::string_view module_id = {});

  struct connection_info { bool connected = false; std::int64_t updated_ms = 0; };
  connection_info connection_state(std::string_view device_id, std::string_view module_id = {}) const;
  std::size_t connected_count() const;  // live connections: devices and modules
  // Devices (not modules) with a live connection: IoT Hub's connectedDeviceCount (GET /statistics/service).
  std::size_t connected_device_count() const;

  // Forgets every live connection link without kicking (the net layer is shutting down).
  void release_links();

  const engine_options& options() const { return options_; }
  store::backend& store() { return store_; }

 private:
  session_state* load_session_locked(const std::string& client_id);
  // Erases a persistent session from the store. Until the erase commits, the client id is remembered so that
  // a lookup cannot read the old record back from the store and resurrect the session.
  void erase_stored_session_locked(const std::string& client_id);
  void send_locked(session_state& s, outbound_message m);
  // Hands durable, not yet delivered messages to the live connection while fewer than
  // max_inflight_outbound are unacknowledged.
  void pump_locked(session_state& s);
  void on_registry_change(const registry_change& c);
  // QoS 0 to a live connection subscribed to a matching filter; false when there is none (nothing sent).
  bool deliver_live(const std::string& client_id, std::string topic, bytes payload);
  void twin_reply(const std::string& client_id, int status, std::string_view rid, std::string body,
                  std::int64_t version = -1);
  void append_event(message m);
  // Hands the device's next queued C2D messages to its live, subscribed connection (up to the window).
  void c2d_pump(const std::string& device_id);
  // Lock held: a packet id not in use by the session's stored or C2D in-flight messages.
  std::uint16_t alloc_packet_id_locked(session_state& s);
  // Lock held: gives back the locks of C2D messages in flight on the session's (closing) connection.
  void release_c2d_locked(session_state& s);

  engine_options options_;
  store::backend& store_;
  registry& registry_;
  logger log_;
  system_events events_;
  twin_manager twins_;
  method_dispatcher methods_;
  c2d_queues c2d_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, session_state> sessions_;
  std::unordered_map<std::string, connection_info> connection_states_;  // by client id
  std::unordered_map<std::string, int> erasing_;  // client id -> session erases not yet committed
  std::atomic<std::size_t> connected_{0};
};

}  // namespace fleethub::hub
