#include "fleethub/hub/twin_manager.hpp"

#include <utility>

#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/topics.hpp"

namespace fleethub::hub {

std::string client_id_of(std::string_view device_id, std::string_view module_id) {
  std::string id(device_id);
  if (!module_id.empty()) {
    id.push_back('/');
    id.append(module_id);
  }
  return id;
}

result<twin_update> parse_twin_update(const json::value& body, bool replace) {
  if (!body.is_object()) return make_error(errc::invalid_argument, "the twin must be a JSON object");
  twin_update u;
  u.replace = replace;
  const auto& root = body.as_object();
  if (const auto* t = root.find("tags"); t && !t->is_null()) {
    if (!t->is_object()) return make_error(errc::invalid_argument, "'tags' must be a JSON object");
    u.tags = *t;
  }
  if (const auto* p = root.find("properties"); p && !p->is_null()) {
    if (!p->is_object()) return make_error(errc::invalid_argument, "'properties' must be a JSON object");
    const auto& props = p->as_object();
    if (props.find("reported"))
      return make_error(errc::invalid_argument,
                        "'properties.reported' cannot be written by the back end; only the device reports "
                        "properties (send 'tags' and 'properties.desired')");
    if (const auto* d = props.find("desired"); d && !d->is_null()) {
      if (!d->is_object()) return make_error(errc::invalid_argument, "'properties.desired' must be a JSON object");
      u.desired = *d;
    }
  }
  return u;
}

twin_manager::twin_manager(store::backend& store, registry& reg, system_events& events, twin_limits limits,
                           now_fn now)
    : store_(store), registry_(reg), events_(events), limits_(limits), now_(std::move(now)) {}

std::string twin_manager::key_of(std::string_view device_id, std::string_view module_id) {
  return module_id.empty() ? std::string(device_id) : module_key(device_id, module_id);
}

result<twin_document> twin_manager::load_locked(const std::string& key, std::string_view device_id,
                                                std::string_view module_id) {
  auto missing = [&] {
    if (module_id.empty())
      return make_error(errc::not_found, "device '" + std::string(device_id) + "' is not registered");
    return make_error(errc::not_found, "module '" + std::string(module_id) + "' is not registered on device '" +
                                           std::string(device_id) + "'");
  };
  if (deleting_.count(key) || (!module_id.empty() && deleting_.count(std::string(device_id)))) return missing();
  if (auto it = pending_.find(key); it != pending_.end()) return *it->second.doc;
  auto v = store_.get(store::table::twins, key);
  if (!v) return v.err();
  if (*v) return decode_twin(**v);
  // An identity without a stored twin (created before twins were kept): its twin is a fresh one.
  auto rec = registry_.get(device_id, module_id);
  if (!rec) return rec.err().code == errc::not_found ? missing() : rec.err();
  return new_twin(std::string(device_id), std::string(module_id), rec->created_ms);
}

result<twin_document> twin_manager::get(std::string_view device_id, std::string_view module_id) {
  auto key = key_of(device_id, module_id);
  std::lock_guard lk(mu_);
  return load_locked(key, device_id, module_id);
}

void twin_manager::submit_locked(const std::string& key, twin_document doc, std::string event_body, bool replaced,
                                 std::function<void(const store::commit_result&, const twin_document&)> then) {
  store::write_batch b;
  b.ops.push_back(store::put_op{store::table::twins, key, encode_twin(doc)});
  auto ev = events_.twin_change(doc.device_id, doc.module_id, replaced, std::move(event_body), now_());
  b.ops.push_back(store::append_op{partition_for(doc.device_id, store_.partition_count()), encode_message(ev)});
  auto shared = std::make_shared<const twin_document>(std::move(doc));
  auto& p = pending_[key];
  p.doc = shared;
  ++p.pending;
  store_.submit(std::move(b), [this, key, shared, then = std::move(then)](const store::commit_result& r) {
    {
      std::lock_guard lk(mu_);
      if (auto it = pending_.find(key); it != pending_.end() && --it->second.pending == 0) pending_.erase(it);
    }
    then(r, *shared);
  });
}

void twin_manager::update(std::string_view device_id, std::string_view module_id, twin_update u, done_fn done) {
  auto key = key_of(device_id, module_id);
  std::unique_lock lk(mu_);
  auto cur = load_locked(key, device_id, module_id);
  if (!cur) {
    lk.unlock();
    done(cur.err());
    return;
  }
  twin_document doc = std::move(*cur);
  // The SDKs send If-Match: "*" (quoted) when the caller gave no etag; compare without quotes.
  if (auto want = unquote_etag(u.if_match); !want.empty() && want != "*") {
    if (want != twin_etag(doc)) {
      lk.unlock();
      done(make_error(errc::precondition_failed, "the twin's etag is " + twin_etag(doc) + ", not " + want +
                                                     ": it changed since it was read; read it again and retry"));
      return;
    }
  }
  const auto now = now_();
  const auto version_before = doc.version;
  json::value event_body;
  std::optional<json::value> notification;
  error fail;
  if (u.replace) {
    json::value empty = json::object{};
    if (auto r = replace_section(doc, twin_section::tags, u.tags ? *u.tags : empty, now, limits_); !r) fail = r.err();
    else if (auto r2 = replace_section(doc, twin_section::desired, u.desired ? *u.desired : empty, now, limits_); !r2)
      fail = r2.err();
    if (fail.code == errc::ok) {
      event_body = twin_change_replace_body(doc);
      notification = desired_notification(doc.desired, doc.desired_version);
    }
  } else {
    std::optional<json::value> applied_tags, applied_desired;
    if (u.tags) {
      auto r = apply_patch(doc, twin_section::tags, *u.tags, now, limits_);
      if (!r) fail = r.err();
      else applied_tags = std::move(*r);
    }
    if (fail.code == errc::ok && u.desired) {
      auto r = apply_patch(doc, twin_section::desired, *u.desired, now, limits_);
      if (!r) fail = r.err();
      else applied_desired = std::move(*r);
    }
    if (fail.code == errc::ok) {
      if (applied_desired) {
        event_body = twin_change_update_body(doc, twin_section::desired, *applied_desired);
        notification = desired_notification(*applied_desired, doc.desired_version);
        if (applied_tags) {
          auto tb = twin_change_update_body(doc, twin_section::tags, *applied_tags);
          if (const auto* t = tb.as_object().find("tags")) event_body.as_object().set("tags", *t);
        }
      } else if (applied_tags) {
        event_body = twin_change_update_body(doc, twin_section::tags, *applied_tags);
      } else {
        fail = make_error(errc::invalid_argument,
                          "the update has neither 'tags' nor 'properties.desired'; nothing to change");
      }
    }
  }
  if (fail.code != errc::ok) {
    lk.unlock();
    done(std::move(fail));
    return;
  }
  // One back-end write is one twin version, however many sections it touched.
  if (doc.version != version_before + 1) {
    doc.version = version_before + 1;
    if (event_body.is_object())
      if (auto* v = event_body.as_object().find("version")) *v = json::value(doc.version);
    if (u.replace) event_body = twin_change_replace_body(doc);
  }
  auto client_id = client_id_of(device_id, module_id);
  std::string note = notification ? json::serialize(*notification) : std::string();
  submit_locked(key, std::move(doc), json::serialize(event_body), u.replace,
                [this, client_id, note = std::move(note), has_note = notification.has_value(),
                 done = std::move(done)](const store::commit_result& r, const twin_document& d) {
                  if (!r.ok()) {
                    done(r.err);
                    return;
                  }
                  // Notified only once durable, from the writer thread, so devices see versions in order.
                  if (has_note && desired_listener_) desired_listener_(client_id, d.desired_version, note);
                  done(d);
                });
}

void twin_manager::patch_reported(std::string_view device_id, std::string_view module_id, bytes_view body,
                                  reported_done_fn done) {
  auto patch = json::parse(as_string_view(body));
  if (!patch) {
    done(make_error(errc::invalid_argument, "the reported properties patch is not valid JSON: " + patch.err().message));
    return;
  }
  auto key = key_of(device_id, module_id);
  std::unique_lock lk(mu_);
  auto cur = load_locked(key, device_id, module_id);
  if (!cur) {
    lk.unlock();
    done(cur.err());
    return;
  }
  twin_document doc = std::move(*cur);
  auto applied = apply_patch(doc, twin_section::reported, *patch, now_(), limits_);
  if (!applied) {
    lk.unlock();
    done(applied.err());
    return;
  }
  auto event_body = json::serialize(twin_change_update_body(doc, twin_section::reported, *applied));
  submit_locked(key, std::move(doc), std::move(event_body), false,
                [done = std::move(done)](const store::commit_result& r, const twin_document& d) {
                  if (!r.ok()) done(r.err);
                  else done(d.reported_version);
                });
}

void twin_manager::on_identity_batch(store::write_batch& b, const registry_change& c) {
  const auto& d = c.record;
  if (c.what == registry_change::kind::updated) return;  // status changes are not lifecycle events
  auto key = key_of(d.device_id, d.module_id);
  const auto now = now_();
  const auto partition = partition_for(d.device_id, store_.partition_count());
  std::lock_guard lk(mu_);
  if (c.what == registry_change::kind::created) {
    auto t = new_twin(d.device_id, d.module_id, d.created_ms ? d.created_ms : now);
    b.ops.push_back(store::put_op{store::table::twins, key, encode_twin(t)});
    auto ev = events_.lifecycle(d.device_id, d.module_id, true, json::serialize(twin_change_replace_body(t)), now);
    b.ops.push_back(store::append_op{partition, encode_message(ev)});
    return;
  }
  // Deleted: the body is the twin as it was.
  auto t = load_locked(key, d.device_id, d.module_id);
  auto body = t ? json::serialize(twin_change_replace_body(*t))
                : json::serialize(twin_change_replace_body(new_twin(d.device_id, d.module_id, d.created_ms)));
  b.ops.push_back(store::erase_op{store::table::twins, key});
  if (d.module_id.empty()) {
    std::string prefix = d.device_id;
    prefix.push_back('\0');
    // The device's modules go with it: each gets its own deleteDeviceIdentity event (with its moduleId).
    std::string after;
    for (;;) {
      auto rows = store_.scan(store::table::twins, prefix, after, 256);
      if (!rows || rows->empty()) break;
      for (auto& kv : *rows) {
        auto mt = decode_twin(kv.value);
        if (!mt) continue;
        auto mev = events_.lifecycle(d.device_id, mt->module_id, false,
                                     json::serialize(twin_change_replace_body(*mt)), now);
        b.ops.push_back(store::append_op{partition, encode_message(mev)});
      }
      after = rows->back().key;
      if (rows->size() < 256) break;
    }
    b.ops.push_back(store::erase_prefix_op{store::table::twins, std::move(prefix)});
  }
  auto ev = events_.lifecycle(d.device_id, d.module_id, false, std::move(body), now);
  b.ops.push_back(store::append_op{partition, encode_message(ev)});
  // Until the delete commits, writes to this twin must not start (they would land after the erase).
  ++deleting_[key];
}

void twin_manager::on_identity_committed(const registry_change& c) {
  if (c.what != registry_change::kind::deleted) return;
  auto key = key_of(c.record.device_id, c.record.module_id);
  std::lock_guard lk(mu_);
  if (auto it = deleting_.find(key); it != deleting_.end() && --it->second == 0) deleting_.erase(it);
  // Module twins of a deleted device were erased by prefix; forget their pending versions too.
  if (c.record.module_id.empty()) {
    std::string prefix = c.record.device_id;
    prefix.push_back('\0');
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->first == key || it->first.rfind(prefix, 0) == 0) it = pending_.erase(it);
      else ++it;
    }
  } else {
    pending_.erase(key);
  }
}

}  // namespace fleethub::hub
