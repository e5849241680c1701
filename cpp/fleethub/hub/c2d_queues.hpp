// Cloud-to-device queues (semantics.md §4): one durable queue per device with IoT Hub's state machine
// (enqueued -> invisible/locked -> completed | dead-lettered; abandon; lock expiry), depth limit, TTL,
// delivery count, purge, and feedback (positive/negative acks batched into a durable feedback queue).
//
// Storage: table c2d (device id + NUL + 8-byte big-endian sequence -> queued message), c2d_feedback_pending
// (one durable record per feedback event until it is batched) and c2d_feedback (feedback messages). The
// queue index (sequence, expiry, delivery count, lock) lives in memory, rebuilt by load() at open; message
// bodies stay in LMDB and are read when delivered. A send is visible only once committed.
//
// I/O-free: the engine delivers over MQTT (lock_next / complete / release) and the net layer calls tick().
// Thread safety: every method may be called from any thread; the availability listener runs outside the
// lock (the engine pumps the device's session from it).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fleethub/core/message.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::hub {

class registry;

enum class c2d_ack : std::uint8_t { none = 0, positive = 1, negative = 2, full = 3 };
const char* to_string(c2d_ack a);
std::optional<c2d_ack> c2d_ack_from_string(std::string_view s);

enum class feedback_status : std::uint8_t { success, expired, delivery_count_exceeded, rejected, purged };
const char* to_string(feedback_status s);  // "Success", "Expired", "DeliveryCountExceeded", "Rejected", "Purged"

struct c2d_options {
  std::size_t max_queue_depth = 50;                       // 403004 beyond it
  std::chrono::milliseconds default_ttl{std::chrono::hours(1)};
  std::chrono::milliseconds max_ttl{std::chrono::hours(48)};
  std::uint32_t max_delivery_count = 10;
  std::chrono::milliseconds lock_timeout{std::chrono::seconds(60)};
  std::size_t max_message_size = 64 * 1024;              // body + properties
  std::size_t feedback_batch_records = 64;               // records per feedback message
  std::chrono::milliseconds feedback_interval{std::chrono::seconds(15)};  // flush a partial batch after this
  std::chrono::milliseconds feedback_ttl{std::chrono::hours(1)};
  std::uint32_t feedback_max_delivery_count = 10;
  std::chrono::milliseconds feedback_lock{std::chrono::seconds(60)};
};

struct c2d_send_request {
  std::string device_id;
  bytes body;
  property_list system_properties;  // message-id, correlation-id, user-id, content-type, content-encoding
  property_list app_properties;
  std::optional<std::int64_t> expiry_ms;  // absolute unix ms; nullopt: now + default_ttl
  c2d_ack ack = c2d_ack::none;
};

struct c2d_sent {
  std::uint64_t sequence_number = 0;
  std::string message_id;
  std::int64_t expiry_ms = 0;
};

// A locked message handed to a receiver.
struct c2d_delivery {
  std::uint64_t sequence_number = 0;
  std::string lock_token;
  std::uint32_t delivery_count = 0;
  message msg;  // with message-id, to, absolute-expiry-time ... as system properties; ack in `ack`
  c2d_ack ack = c2d_ack::none;
};

struct feedback_record {
  std::string original_message_id;
  std::int64_t enqueued_ms = 0;   // when the original message was enqueued
  feedback_status status = feedback_status::success;
  std::string device_id;
  std::string device_generation_id;
};

// One feedback message (up to feedback_batch_records records) as a receiver gets it.
struct feedback_batch {
  std::uint64_t id = 0;
  std::string lock_token;
  std::int64_t enqueued_ms = 0;
  std::uint32_t delivery_count = 0;
  std::string body;  // JSON array of records (semantics.md §4.4)
  std::string user_id;  // the hub name (IoT Hub's UserId of feedback messages)
};

class c2d_queues {
 public:
  using now_fn = std::function<std::int64_t()>;  // unix ms
  c2d_queues(store::backend& store, registry& reg, c2d_options options, now_fn now, std::string hub_name);

  // Rebuilds the in-memory index from the store. Call once before use.
  result<void> load();

  // The device's queue has messages to deliver (after a commit, an unlock or an abandon).
  void on_available(std::function<void(const std::string& device_id)> cb) { available_ = std::move(cb); }

  // Validates and enqueues. Errors (on the caller's thread): not_found (unknown device), forbidden with
  // "403004" (queue full), invalid_argument (expiry in the past or beyond max_ttl, bad ids), too_large.
  // `done` runs once the message is durable (on the store's writer thread).
  void send(c2d_send_request req, std::function<void(result<c2d_sent>)> done);
  // Many messages (to one or many devices) in one write batch: one commit, one callback with a result per
  // request, in order. Each request is judged on its own (one full queue does not fail the others).
  void send_batch(std::vector<c2d_send_request> reqs, std::function<void(std::vector<result<c2d_sent>>)> done);

  // Locks up to `max` of the device's oldest enqueued messages, in order. lock_for == 0: locked until
  // completed, abandoned or released (an MQTT connection's in-flight window).
  std::vector<c2d_delivery> lock_next(std::string_view device_id, std::size_t max,
                                      std::chrono::milliseconds lock_for);
  // Completes (PUBACK / DELETE): erased, positive feedback if asked. Errors: precondition_failed "412002"
  // (lock expired or unknown token).
  result<void> complete(std::string_view device_id, std::string_view lock_token);
  // Completes several (one MQTT read's PUBACKs) with one store submit; stale tokens are skipped.
  void complete_many(std::string_view device_id, const std::vector<std::string>& lock_tokens);
  // Abandon: back to enqueued with delivery count + 1; dead-lettered at max_delivery_count.
  result<void> abandon(std::string_view device_id, std::string_view lock_token);
  // Reject: dead-lettered at once.
  result<void> reject(std::string_view device_id, std::string_view lock_token);
  // Unlocks without counting a delivery (the MQTT connection went away before its PUBACK).
  void release(std::string_view device_id, std::string_view lock_token);

  // Removes every message of the device (Purged feedback where asked); returns how many.
  result<std::size_t> purge(std::string_view device_id);
  // Forgets a deleted device's queue and its pending feedback (IoT Hub drops feedback for deleted devices).
  void drop_device(std::string_view device_id, store::write_batch& b);

  // Messages in the device's queue (enqueued + locked).
  std::size_t depth(std::string_view device_id) const;

  // Expires messages and locks, batches feedback. Call a few times a second.
  void tick();

  // Feedback queue. receive: the oldest visible batch, locked for feedback_lock; waits up to `wait`.
  std::optional<feedback_batch> receive_feedback(std::chrono::milliseconds wait);
  result<void> complete_feedback(std::string_view lock_token);
  result<void> abandon_feedback(std::string_view lock_token);
  // Wakes receive_feedback waiters (the hub is closing).
  void close();

  const c2d_options& options() const { return options_; }

  struct stats { std::uint64_t sent = 0, completed = 0, expired = 0, dead_lettered = 0, purged = 0; };
  stats counters() const;

 private:
  struct entry {
    std::uint64_t seq = 0;
    std::int64_t enqueued_ms = 0;
    std::int64_t expiry_ms = 0;
    std::uint32_t delivery_count = 0;
    c2d_ack ack = c2d_ack::none;
    std::string message_id;
    std::string lock_token;        // non-empty while locked
    std::int64_t lock_until_ms = 0;  // 0: no timeout
  };
  struct queue {
    std::map<std::uint64_t, entry> entries;
    std::size_t pending_sends = 0;  // submitted, not yet committed (count against the depth)
  };
  struct fb_entry {
    std::uint64_t id = 0;
    std::int64_t enqueued_ms = 0;
    std::uint32_t delivery_count = 0;
    std::string body;
    std::string lock_token;
    std::int64_t lock_until_ms = 0;
  };

  // A validated request, encoded for the store; seq and epoch are assigned under the lock.
  struct prepared {
    std::string device_id;
    std::uint64_t seq = 0, epoch = 0;
    std::int64_t now = 0, expiry = 0;
    c2d_ack ack = c2d_ack::none;
    std::string message_id;
    bytes value;
  };
  result<prepared> prepare(c2d_send_request& req, std::int64_t now);
  // Removes an entry (completed or dead-lettered), adding the store ops and feedback. Lock held.
  void finish_locked(const std::string& device_id, queue& q, std::map<std::uint64_t, entry>::iterator it,
                     std::optional<feedback_status> status, store::write_batch& b);
  entry* find_locked_entry(std::string_view device_id, std::string_view lock_token, queue** qout);
  void notify(const std::vector<std::string>& devices);
  // Submits under mu_ so that store order follows state order (an erase can never be overtaken by an older
  // put of the same row). Callbacks given here must not take mu_.
  void submit_locked(store::write_batch b, store::commit_callback cb = {});
  std::string generation_of(const std::string& device_id);

  store::backend& store_;
  registry& registry_;
  c2d_options options_;
  now_fn now_;
  std::string hub_name_;
  std::function<void(const std::string&)> available_;  // set before use, cleared only after the threads stop

  mutable std::mutex mu_;
  std::condition_variable fb_cv_;
  std::unordered_map<std::string, queue> queues_;
  std::unordered_map<std::string, std::pair<std::string, std::uint64_t>> locks_;  // token -> (device, seq)
  std::uint64_t next_seq_ = 1;
  // Feedback: records waiting to be batched (durable in c2d_feedback_pending; with the time each became
  // pending), and batches to receive.
  std::map<std::uint64_t, std::pair<feedback_record, std::int64_t>> fb_pending_;
  // Bumped when a device's queue is dropped: a send committed afterwards must not bring it back.
  std::unordered_map<std::string, std::uint64_t> drop_epoch_;
  std::uint64_t next_fb_id_ = 1;
  std::map<std::uint64_t, fb_entry> fb_batches_;
  std::unordered_map<std::string, std::uint64_t> fb_locks_;
  bool closed_ = false;
  stats stats_;
};

// "devices/{id}/messages/devicebound/{bag}" for a delivery (system keys as %24.mid ...; iothub-ack when asked).
std::string c2d_topic(const c2d_delivery& d);

}  // namespace fleethub::hub
