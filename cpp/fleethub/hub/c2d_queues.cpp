#include "fleethub/hub/c2d_queues.hpp"

#include <algorithm>
#include <cctype>
#include <future>
#include <utility>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/core/message_codec.hpp"
#include "fleethub/core/record_io.hpp"
#include "fleethub/hub/registry.hpp"
#include "fleethub/proto/mqtt/property_bag.hpp"

namespace fleethub::hub {

const char* to_string(c2d_ack a) {
  switch (a) {
    case c2d_ack::none: return "none";
    case c2d_ack::positive: return "positive";
    case c2d_ack::negative: return "negative";
    case c2d_ack::full: return "full";
  }
  return "none";
}

std::optional<c2d_ack> c2d_ack_from_string(std::string_view s) {
  if (s == "none" || s.empty()) return c2d_ack::none;
  if (s == "positive") return c2d_ack::positive;
  if (s == "negative") return c2d_ack::negative;
  if (s == "full") return c2d_ack::full;
  return std::nullopt;
}

const char* to_string(feedback_status s) {
  switch (s) {
    case feedback_status::success: return "Success";
    case feedback_status::expired: return "Expired";
    case feedback_status::delivery_count_exceeded: return "DeliveryCountExceeded";
    case feedback_status::rejected: return "Rejected";
    case feedback_status::purged: return "Purged";
  }
  return "Success";
}

namespace {

constexpr std::uint8_t queued_format = 1;
constexpr std::uint8_t feedback_format = 1;

std::string be64(std::uint64_t v) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) k[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return k;
}
std::uint64_t from_be64(std::string_view k) {
  std::uint64_t v = 0;
  for (char c : k) v = (v << 8) | static_cast<std::uint8_t>(c);
  return v;
}
std::string queue_prefix(std::string_view device_id) {
  std::string k(device_id);
  k.push_back('\0');
  return k;
}
std::string queue_key(std::string_view device_id, std::uint64_t seq) { return queue_prefix(device_id) + be64(seq); }

bool wants(c2d_ack ack, std::optional<feedback_status> st) {
  if (!st) return false;
  if (*st == feedback_status::success) return ack == c2d_ack::positive || ack == c2d_ack::full;
  return ack == c2d_ack::negative || ack == c2d_ack::full;
}

bytes encode_feedback_record(const feedback_record& r) {
  return record_writer(feedback_format)
      .str(r.original_message_id)
      .i64(r.enqueued_ms)
      .u8(static_cast<std::uint8_t>(r.status))
      .str(r.device_id)
      .str(r.device_generation_id)
      .take();
}

std::string feedback_body(const std::vector<feedback_record>& recs) {
  json::array a;
  a.reserve(recs.size());
  for (auto& r : recs) {
    json::object o;
    o.set("originalMessageId", json::value(r.original_message_id));
    o.set("enqueuedTimeUtc", json::value(format_iso8601(r.enqueued_ms)));
    o.set("statusCode", json::value(to_string(r.status)));
    o.set("description", json::value(to_string(r.status)));
    o.set("deviceId", json::value(r.device_id));
    o.set("deviceGenerationId", json::value(r.device_generation_id));
    a.emplace_back(std::move(o));
  }
  return json::serialize(json::value(std::move(a)));
}

bytes encode_batch(std::int64_t enqueued_ms, std::uint32_t delivery_count, const std::string& body) {
  return record_writer(feedback_format).i64(enqueued_ms).u32(delivery_count).str(body).take();
}

// IoT Hub's message-id rule (semantics.md §9.3): <= 128 ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '
bool valid_message_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (std::isalnum(c)) continue;
    if (std::string_view("-:.+%_#*?!(),=@;$'").find(static_cast<char>(c)) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace

void c2d_queues::submit_locked(store::write_batch b, store::commit_callback cb) {
  if (!b.ops.empty() || cb) store_.submit(std::move(b), std::move(cb));
}

c2d_queues::c2d_queues(store::backend& store, registry& reg, c2d_options options, now_fn now, std::string hub_name)
    : store_(store), registry_(reg), options_(options), now_(std::move(now)), hub_name_(std::move(hub_name)) {}

result<void> c2d_queues::load() {
  std::lock_guard lk(mu_);
  queues_.clear();
  std::string after;
  for (;;) {
    auto rows = store_.scan(store::table::c2d, {}, after, 1000);
    if (!rows) return rows.err();
    for (auto& kv : *rows) {
      auto nul = kv.key.find('\0');
      if (nul == std::string::npos || kv.key.size() != nul + 9) continue;
      record_reader r(kv.value);
      entry e;
      e.seq = from_be64(std::string_view(kv.key).substr(nul + 1));
      e.enqueued_ms = r.i64();
      e.expiry_ms = r.i64();
      e.delivery_count = r.u32();
      e.ack = static_cast<c2d_ack>(r.u8() & 3);
      e.message_id = r.str();
      if (!r.ok() || r.version() != queued_format) continue;  // a corrupt record is skipped, not fatal
      queues_[kv.key.substr(0, nul)].entries.emplace(e.seq, std::move(e));
      next_seq_ = std::max(next_seq_, e.seq + 1);
    }
    if (rows->size() < 1000) break;
    after = rows->back().key;
  }
  // Sequence numbers keep increasing across restarts even when every queue was emptied.
  next_seq_ = std::max<std::uint64_t>(next_seq_, static_cast<std::uint64_t>(now_()) * 1000);

  fb_pending_.clear();
  fb_batches_.clear();
  after.clear();
  for (;;) {
    auto rows = store_.scan(store::table::c2d_feedback_pending, {}, after, 1000);
    if (!rows) return rows.err();
    for (auto& kv : *rows) {
      record_reader r(kv.value);
      feedback_record fr;
      fr.original_message_id = r.str();
      fr.enqueued_ms = r.i64();
      fr.status = static_cast<feedback_status>(std::min<std::uint8_t>(r.u8(), 4));
      fr.device_id = r.str();
      fr.device_generation_id = r.str();
      if (!r.ok()) continue;
      auto id = from_be64(kv.key);
      fb_pending_.emplace(id, std::make_pair(std::move(fr), now_()));
      next_fb_id_ = std::max(next_fb_id_, id + 1);
    }
    if (rows->size() < 1000) break;
    after = rows->back().key;
  }
  after.clear();
  for (;;) {
    auto rows = store_.scan(store::table::c2d_feedback, {}, after, 1000);
    if (!rows) return rows.err();
    for (auto& kv : *rows) {
      record_reader r(kv.value);
      fb_entry f;
      f.id = from_be64(kv.key);
      f.enqueued_ms = r.i64();
      f.delivery_count = r.u32();
      f.body = r.str();
      if (!r.ok()) continue;
      next_fb_id_ = std::max(next_fb_id_, f.id + 1);
      fb_batches_.emplace(f.id, std::move(f));
    }
    if (rows->size() < 1000) break;
    after = rows->back().key;
  }
  return {};
}

std::string c2d_queues::generation_of(const std::string& device_id) {
  auto rec = registry_.get(device_id);
  return rec ? rec->generation_id : std::string();
}

result<c2d_queues::prepared> c2d_queues::prepare(c2d_send_request& req, std::int64_t now) {
  auto rec = registry_.get(req.device_id);
  if (!rec) {
    if (rec.err().code != errc::not_found) return rec.err();
    return make_error(errc::not_found, "device '" + req.device_id + "' is not registered (IoT Hub 404001 DeviceNotFound)");
  }
  if (!rec->enabled)
    return make_error(errc::not_found, "device '" + req.device_id + "' is disabled (IoT Hub 404001 DeviceNotFound)");
  std::size_t size = req.body.size();
  for (auto& p : req.system_properties) size += p.key.size() + p.value.size();
  for (auto& p : req.app_properties) size += p.key.size() + p.value.size();
  if (size > options_.max_message_size)
    return make_error(errc::too_large, "cloud-to-device message of " + std::to_string(size) + " bytes exceeds the " +
                                           std::to_string(options_.max_message_size) +
                                           "-byte limit (IoT Hub 413001 MessageTooLarge)");
  std::int64_t expiry = now + options_.default_ttl.count();
  if (req.expiry_ms) {
    if (*req.expiry_ms <= now || *req.expiry_ms > now + options_.max_ttl.count())
      return make_error(errc::invalid_argument, "the expiry time must be in the future and at most " +
                                                    std::to_string(options_.max_ttl.count() / 3600000) +
                                                    " hours away (IoT Hub 403009 InvalidMessageExpiryTime)");
    expiry = *req.expiry_ms;
  }
  if (const auto* mid = find_property(req.system_properties, sysprop::message_id); mid && !valid_message_id(*mid))
    return make_error(errc::invalid_argument, "message id '" + *mid +
                                                  "' must be 1..128 ASCII letters, digits or - : . + % _ # * ? ! ( ) , = @ ; $ '");
  message m;
  m.device_id = req.device_id;
  m.body = std::move(req.body);
  m.system_properties = std::move(req.system_properties);
  m.app_properties = std::move(req.app_properties);
  m.enqueued_time_ms = now;
  if (!find_property(m.system_properties, sysprop::message_id))
    m.system_properties.push_back({std::string(sysprop::message_id), new_uuid()});
  set_property(m.system_properties, sysprop::to, "/devices/" + req.device_id + "/messages/devicebound");
  set_property(m.system_properties, sysprop::absolute_expiry_time, format_iso8601(expiry));
  prepared p;
  p.device_id = req.device_id;
  p.now = now;
  p.expiry = expiry;
  p.ack = req.ack;
  p.message_id = *find_property(m.system_properties, sysprop::message_id);
  p.value = record_writer(queued_format)
                .i64(now)
                .i64(expiry)
                .u32(0)
                .u8(static_cast<std::uint8_t>(req.ack))
                .str(p.message_id)
                .str(as_string_view(encode_message(m)))
                .take();
  return p;
}

void c2d_queues::send(c2d_send_request req, std::function<void(result<c2d_sent>)> done) {
  std::vector<c2d_send_request> one;
  one.push_back(std::move(req));
  send_batch(std::move(one), [done = std::move(done)](std::vector<result<c2d_sent>> r) { done(std::move(r[0])); });
}

void c2d_queues::send_batch(std::vector<c2d_send_request> reqs,
                            std::function<void(std::vector<result<c2d_sent>>)> done) {
  const auto now = now_();
  std::vector<result<c2d_sent>> results;
  results.reserve(reqs.size());
  std::vector<prepared> ready;  // accepted ones, with the index of their result
  std::vector<std::size_t> where;
  for (auto& r : reqs) {
    auto p = prepare(r, now);
    if (!p) {
      results.emplace_back(p.err());
      continue;
    }
    results.emplace_back(c2d_sent{});
    where.push_back(results.size() - 1);
    ready.push_back(std::move(*p));
  }
  store::write_batch b;
  {
    std::lock_guard lk(mu_);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < ready.size(); ++i) {
      auto& p = ready[i];
      auto& q = queues_[p.device_id];
      if (q.entries.size() + q.pending_sends >= options_.max_queue_depth) {
        results[where[i]] = make_error(errc::forbidden, "the queue of device '" + p.device_id + "' holds " +
                                                            std::to_string(options_.max_queue_depth) +
                                                            " messages, its limit (IoT Hub 403004 "
                                                            "DeviceMaximumQueueDepthExceeded); wait for the device to "
                                                            "receive them or purge the queue");
        if (q.entries.empty() && q.pending_sends == 0) queues_.erase(p.device_id);
        continue;
      }
      ++q.pending_sends;
      p.seq = next_seq_++;
      p.epoch = drop_epoch_[p.device_id];
      b.ops.push_back(store::put_op{store::table::c2d, queue_key(p.device_id, p.seq), std::move(p.value)});
      where[kept] = where[i];
      if (kept != i) ready[kept] = std::move(p);
      ++kept;
    }
    ready.resize(kept);
    where.resize(kept);
  }
  if (ready.empty()) {
    done(std::move(results));
    return;
  }
  // One write batch (one group commit) for every message of the call.
  store_.submit(std::move(b), [this, ready = std::move(ready), where = std::move(where), results = std::move(results),
                               done = std::move(done)](const store::commit_result& r) mutable {
    std::vector<std::string> devices;
    {
      std::lock_guard lk(mu_);
      store::write_batch gone;
      for (std::size_t i = 0; i < ready.size(); ++i) {
        auto& p = ready[i];
        auto& res = results[where[i]];
        if (drop_epoch_[p.device_id] != p.epoch) {
          // The device was deleted while this send was in flight: its row must not outlive the queue.
          if (r.ok()) gone.ops.push_back(store::erase_op{store::table::c2d, queue_key(p.device_id, p.seq)});
          res = make_error(errc::not_found, "device '" + p.device_id + "' was deleted while the message was being queued");
          continue;
        }
        auto& q = queues_[p.device_id];
        if (q.pending_sends) --q.pending_sends;
        if (!r.ok()) {
          if (q.entries.empty() && q.pending_sends == 0) queues_.erase(p.device_id);
          res = r.err;
          continue;
        }
        entry e;
        e.seq = p.seq;
        e.enqueued_ms = p.now;
        e.expiry_ms = p.expiry;
        e.ack = p.ack;
        e.message_id = p.message_id;
        q.entries.emplace(p.seq, std::move(e));
        ++stats_.sent;
        res = c2d_sent{p.seq, p.message_id, p.expiry};
        if (devices.empty() || devices.back() != p.device_id) devices.push_back(p.device_id);
      }
      submit_locked(std::move(gone));
    }
    std::sort(devices.begin(), devices.end());
    devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
    notify(devices);
    done(std::move(results));
  });
}

std::vector<c2d_delivery> c2d_queues::lock_next(std::string_view device_id, std::size_t max,
                                                std::chrono::milliseconds lock_for) {
  std::vector<c2d_delivery> out;
  if (max == 0) return out;
  std::lock_guard lk(mu_);
  auto qit = queues_.find(std::string(device_id));
  if (qit == queues_.end()) return out;
  const auto now = now_();
  for (auto& [seq, e] : qit->second.entries) {
    if (out.size() >= max) break;
    if (!e.lock_token.empty() || e.expiry_ms <= now) continue;  // locked, or expiring at the next tick
    auto v = store_.get(store::table::c2d, queue_key(device_id, seq));
    if (!v || !*v) continue;
    record_reader r(**v);
    r.i64(), r.i64(), r.u32(), r.u8();
    (void)r.str();
    auto rec = r.str();
    auto m = decode_message(as_bytes(rec));
    if (!r.ok() || !m) continue;
    c2d_delivery d;
    d.sequence_number = seq;
    d.lock_token = new_uuid();
    d.delivery_count = e.delivery_count;
    d.ack = e.ack;
    d.msg = std::move(*m);
    e.lock_token = d.lock_token;
    e.lock_until_ms = lock_for.count() > 0 ? now + lock_for.count() : 0;
    locks_[d.lock_token] = {std::string(device_id), seq};
    out.push_back(std::move(d));
  }
  return out;
}

c2d_queues::entry* c2d_queues::find_locked_entry(std::string_view device_id, std::string_view lock_token,
                                                 queue** qout) {
  auto l = locks_.find(std::string(lock_token));
  if (l == locks_.end() || l->second.first != device_id) return nullptr;
  auto qit = queues_.find(l->second.first);
  if (qit == queues_.end()) return nullptr;
  auto it = qit->second.entries.find(l->second.second);
  if (it == qit->second.entries.end() || it->second.lock_token != lock_token) return nullptr;
  if (it->second.lock_until_ms && it->second.lock_until_ms <= now_()) return nullptr;
  *qout = &qit->second;
  return &it->second;
}

namespace {
error lock_lost(std::string_view device_id) {
  return make_error(errc::precondition_failed, "the message lock for device '" + std::string(device_id) +
                                                   "' expired or is unknown (IoT Hub 412002 DeviceMessageLockLost); "
                                                   "receive the message again");
}
}  // namespace

void c2d_queues::finish_locked(const std::string& device_id, queue& q, std::map<std::uint64_t, entry>::iterator it,
                               std::optional<feedback_status> status, store::write_batch& b) {
  auto& e = it->second;
  if (!e.lock_token.empty()) locks_.erase(e.lock_token);
  b.ops.push_back(store::erase_op{store::table::c2d, queue_key(device_id, e.seq)});
  if (wants(e.ack, status)) {
    feedback_record fr{e.message_id, e.enqueued_ms, *status, device_id, generation_of(device_id)};
    auto id = next_fb_id_++;
    b.ops.push_back(store::put_op{store::table::c2d_feedback_pending, be64(id), encode_feedback_record(fr)});
    fb_pending_.emplace(id, std::make_pair(std::move(fr), now_()));
  }
  if (status) {
    switch (*status) {
      case feedback_status::success: ++stats_.completed; break;
      case feedback_status::expired: ++stats_.expired; break;
      case feedback_status::purged: ++stats_.purged; break;
      default: ++stats_.dead_lettered; break;
    }
  }
  q.entries.erase(it);
}

result<void> c2d_queues::complete(std::string_view device_id, std::string_view lock_token) {
  store::write_batch b;
  {
    std::lock_guard lk(mu_);
    queue* q = nullptr;
    auto* e = find_locked_entry(device_id, lock_token, &q);
    if (!e) return lock_lost(device_id);
    finish_locked(std::string(device_id), *q, q->entries.find(e->seq), feedback_status::success, b);
    if (q->entries.empty() && q->pending_sends == 0) queues_.erase(std::string(device_id));
    submit_locked(std::move(b));
  }
  return {};
}

void c2d_queues::complete_many(std::string_view device_id, const std::vector<std::string>& lock_tokens) {
  std::lock_guard lk(mu_);
  store::write_batch b;
  const std::string device(device_id);
  for (auto& token : lock_tokens) {
    queue* q = nullptr;
    auto* e = find_locked_entry(device_id, token, &q);
    if (!e) continue;
    finish_locked(device, *q, q->entries.find(e->seq), feedback_status::success, b);
    if (q->entries.empty() && q->pending_sends == 0) queues_.erase(device);
  }
  submit_locked(std::move(b));
}

result<void> c2d_queues::abandon(std::string_view device_id, std::string_view lock_token) {
  store::write_batch b;
  bool available = false;
  {
    std::lock_guard lk(mu_);
    queue* q = nullptr;
    auto* e = find_locked_entry(device_id, lock_token, &q);
    if (!e) return lock_lost(device_id);
    locks_.erase(e->lock_token);
    e->lock_token.clear();
    e->lock_until_ms = 0;
    ++e->delivery_count;
    if (e->delivery_count >= options_.max_delivery_count) {
      finish_locked(std::string(device_id), *q, q->entries.find(e->seq), feedback_status::delivery_count_exceeded, b);
    } else {
      // Persist the count: it survives a restart (the lock does not need to).
      auto key = queue_key(device_id, e->seq);
      auto v = store_.get(store::table::c2d, key);
      if (v && *v) {
        bytes rec = **v;
        // delivery count: after format (1) + enqueued (8) + expiry (8)
        if (rec.size() >= 21)
          for (int i = 0; i < 4; ++i) rec[17 + i] = static_cast<std::uint8_t>(e->delivery_count >> (8 * i));
        b.ops.push_back(store::put_op{store::table::c2d, key, std::move(rec)});
      }
      available = true;
    }
    submit_locked(std::move(b));
  }
  if (available) notify({std::string(device_id)});
  return {};
}

result<void> c2d_queues::reject(std::string_view device_id, std::string_view lock_token) {
  store::write_batch b;
  {
    std::lock_guard lk(mu_);
    queue* q = nullptr;
    auto* e = find_locked_entry(device_id, lock_token, &q);
    if (!e) return lock_lost(device_id);
    finish_locked(std::string(device_id), *q, q->entries.find(e->seq), feedback_status::rejected, b);
    submit_locked(std::move(b));
  }
  return {};
}

void c2d_queues::release(std::string_view device_id, std::string_view lock_token) {
  {
    std::lock_guard lk(mu_);
    auto l = locks_.find(std::string(lock_token));
    if (l == locks_.end() || l->second.first != device_id) return;
    auto qit = queues_.find(l->second.first);
    if (qit != queues_.end()) {
      auto it = qit->second.entries.find(l->second.second);
      if (it != qit->second.entries.end() && it->second.lock_token == lock_token) {
        it->second.lock_token.clear();
        it->second.lock_until_ms = 0;
      }
    }
    locks_.erase(l);
  }
  // No notify: the caller (a closing connection) is not there to take it; the next attach pumps.
}

result<std::size_t> c2d_queues::purge(std::string_view device_id) {
  if (auto rec = registry_.get(device_id); !rec) return rec.err();
  store::write_batch b;
  std::size_t n = 0;
  auto done = std::make_shared<std::promise<store::commit_result>>();
  auto fut = done->get_future();
  {
    std::lock_guard lk(mu_);
    auto qit = queues_.find(std::string(device_id));
    if (qit == queues_.end()) return std::size_t{0};
    auto& q = qit->second;
    while (!q.entries.empty()) {
      finish_locked(std::string(device_id), q, q.entries.begin(), feedback_status::purged, b);
      ++n;
    }
    if (q.pending_sends == 0) queues_.erase(qit);
    submit_locked(std::move(b), [done](const store::commit_result& r) { done->set_value(r); });
  }
  auto c = fut.get();
  if (!c.ok()) return c.err;
  return n;
}

void c2d_queues::drop_device(std::string_view device_id, store::write_batch& b) {
  std::lock_guard lk(mu_);
  ++drop_epoch_[std::string(device_id)];
  b.ops.push_back(store::erase_prefix_op{store::table::c2d, queue_prefix(device_id)});
  if (auto qit = queues_.find(std::string(device_id)); qit != queues_.end()) {
    for (auto& [seq, e] : qit->second.entries)
      if (!e.lock_token.empty()) locks_.erase(e.lock_token);
    queues_.erase(qit);
  }
  // Feedback not yet batched for the device goes too (IoT Hub drops feedback of deleted devices).
  for (auto it = fb_pending_.begin(); it != fb_pending_.end();) {
    if (it->second.first.device_id == device_id) {
      b.ops.push_back(store::erase_op{store::table::c2d_feedback_pending, be64(it->first)});
      it = fb_pending_.erase(it);
    } else {
      ++it;
    }
  }
}

std::size_t c2d_queues::depth(std::string_view device_id) const {
  std::lock_guard lk(mu_);
  auto qit = queues_.find(std::string(device_id));
  return qit == queues_.end() ? 0 : qit->second.entries.size();
}

void c2d_queues::notify(const std::vector<std::string>& devices) {
  if (!available_) return;
  for (auto& d : devices) available_(d);
}

void c2d_queues::tick() {
  store::write_batch b;
  std::vector<std::string> unlocked;
  bool new_batches = false;
  {
    std::lock_guard lk(mu_);
    const auto now = now_();
    for (auto qit = queues_.begin(); qit != queues_.end();) {
      auto& q = qit->second;
      bool freed = false;
      for (auto it = q.entries.begin(); it != q.entries.end();) {
        auto& e = it->second;
        if (e.expiry_ms <= now) {
          auto next = std::next(it);
          finish_locked(qit->first, q, it, feedback_status::expired, b);
          it = next;
          continue;
        }
        if (!e.lock_token.empty() && e.lock_until_ms && e.lock_until_ms <= now) {
          // Lock expired: visible again, and the delivery count does not go up (semantics.md §4.2).
          locks_.erase(e.lock_token);
          e.lock_token.clear();
          e.lock_until_ms = 0;
          freed = true;
        }
        ++it;
      }
      if (freed) unlocked.push_back(qit->first);
      if (q.entries.empty() && q.pending_sends == 0) qit = queues_.erase(qit);
      else ++qit;
    }
    // Feedback: full batches at once, a partial one after feedback_interval.
    // (ids grow with time, so the first pending record is the oldest)
    while (!fb_pending_.empty() && (fb_pending_.size() >= options_.feedback_batch_records ||
                                    now - fb_pending_.begin()->second.second >= options_.feedback_interval.count())) {
      std::vector<feedback_record> recs;
      while (!fb_pending_.empty() && recs.size() < options_.feedback_batch_records) {
        auto it = fb_pending_.begin();
        b.ops.push_back(store::erase_op{store::table::c2d_feedback_pending, be64(it->first)});
        recs.push_back(std::move(it->second.first));
        fb_pending_.erase(it);
      }
      fb_entry f;
      f.id = next_fb_id_++;
      f.enqueued_ms = now;
      f.body = feedback_body(recs);
      b.ops.push_back(store::put_op{store::table::c2d_feedback, be64(f.id), encode_batch(f.enqueued_ms, 0, f.body)});
      fb_batches_.emplace(f.id, std::move(f));
      new_batches = true;
    }
    // Feedback messages expire after feedback_ttl; their locks after feedback_lock.
    for (auto it = fb_batches_.begin(); it != fb_batches_.end();) {
      auto& f = it->second;
      if (f.enqueued_ms + options_.feedback_ttl.count() <= now) {
        if (!f.lock_token.empty()) fb_locks_.erase(f.lock_token);
        b.ops.push_back(store::erase_op{store::table::c2d_feedback, be64(f.id)});
        it = fb_batches_.erase(it);
        continue;
      }
      if (!f.lock_token.empty() && f.lock_until_ms <= now) {
        fb_locks_.erase(f.lock_token);
        f.lock_token.clear();
        new_batches = true;
      }
      ++it;
    }
    submit_locked(std::move(b));
  }
  if (new_batches) fb_cv_.notify_all();
  notify(unlocked);
}

std::optional<feedback_batch> c2d_queues::receive_feedback(std::chrono::milliseconds wait) {
  std::unique_lock lk(mu_);
  auto pick = [&]() -> fb_entry* {
    for (auto& [id, f] : fb_batches_)
      if (f.lock_token.empty()) return &f;
    return nullptr;
  };
  fb_entry* f = nullptr;
  fb_cv_.wait_for(lk, wait, [&] { return closed_ || (f = pick()) != nullptr; });
  if (!f) return std::nullopt;
  f->lock_token = new_uuid();
  f->lock_until_ms = now_() + options_.feedback_lock.count();
  fb_locks_[f->lock_token] = f->id;
  return feedback_batch{f->id, f->lock_token, f->enqueued_ms, f->delivery_count, f->body, hub_name_};
}

result<void> c2d_queues::complete_feedback(std::string_view lock_token) {
  store::write_batch b;
  auto done = std::make_shared<std::promise<store::commit_result>>();
  auto fut = done->get_future();
  {
    std::lock_guard lk(mu_);
    auto l = fb_locks_.find(std::string(lock_token));
    if (l == fb_locks_.end()) return lock_lost("feedback");
    auto it = fb_batches_.find(l->second);
    fb_locks_.erase(l);
    if (it == fb_batches_.end() || it->second.lock_until_ms <= now_()) return lock_lost("feedback");
    b.ops.push_back(store::erase_op{store::table::c2d_feedback, be64(it->first)});
    fb_batches_.erase(it);
    submit_locked(std::move(b), [done](const store::commit_result& r) { done->set_value(r); });
  }
  auto c = fut.get();
  if (!c.ok()) return c.err;
  return {};
}

result<void> c2d_queues::abandon_feedback(std::string_view lock_token) {
  store::write_batch b;
  {
    std::lock_guard lk(mu_);
    auto l = fb_locks_.find(std::string(lock_token));
    if (l == fb_locks_.end()) return lock_lost("feedback");
    auto it = fb_batches_.find(l->second);
    fb_locks_.erase(l);
    if (it == fb_batches_.end()) return lock_lost("feedback");
    auto& f = it->second;
    if (f.lock_until_ms <= now_()) return lock_lost("feedback");
    f.lock_token.clear();
    ++f.delivery_count;
    if (f.delivery_count >= options_.feedback_max_delivery_count) {
      b.ops.push_back(store::erase_op{store::table::c2d_feedback, be64(f.id)});
      fb_batches_.erase(it);
    } else {
      b.ops.push_back(store::put_op{store::table::c2d_feedback, be64(f.id),
                                    encode_batch(f.enqueued_ms, f.delivery_count, f.body)});
    }
    submit_locked(std::move(b));
  }
  fb_cv_.notify_all();
  return {};
}

void c2d_queues::close() {
  {
    std::lock_guard lk(mu_);
    closed_ = true;
  }
  fb_cv_.notify_all();
}

c2d_queues::stats c2d_queues::counters() const {
  std::lock_guard lk(mu_);
  return stats_;
}

std::string c2d_topic(const c2d_delivery& d) {
  property_list app = d.msg.app_properties;
  if (d.ack != c2d_ack::none) app.push_back({"iothub-ack", to_string(d.ack)});
  return "devices/" + d.msg.device_id + "/messages/devicebound/" +
         proto::mqtt::encode_property_bag(d.msg.system_properties, app);
}

}  // namespace fleethub::hub
