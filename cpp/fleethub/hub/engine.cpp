#include "fleethub/hub/engine.hpp"

#include <algorithm>
#include <utility>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"
#include "fleethub/core/json.hpp"
#include "fleethub/core/message_codec.hpp"
#include "fleethub/hub/sas.hpp"
#include "fleethub/hub/topics.hpp"
#include "fleethub/proto/mqtt/codec.hpp"
#include "fleethub/proto/mqtt/property_bag.hpp"

namespace fleethub::hub {

using proto::mqtt::connack_code;

namespace {

struct parsed_username {
  std::string host;
  std::string device_id;
  std::string module_id;
};

// "{host}/{deviceId}[/{moduleId}]/?{query}" or "{host}/{deviceId}[/{moduleId}]" (the query is ignored).
std::optional<parsed_username> parse_username(std::string_view u) {
  if (auto q = u.find("/?"); q != std::string_view::npos) u = u.substr(0, q);
  else if (auto q2 = u.find('?'); q2 != std::string_view::npos) u = u.substr(0, q2);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  auto s1 = u.find('/');
  if (s1 == std::string_view::npos || s1 == 0) return std::nullopt;
  parsed_username p;
  p.host = std::string(u.substr(0, s1));
  auto rest = u.substr(s1 + 1);
  auto s2 = rest.find('/');
  p.device_id = std::string(rest.substr(0, s2));
  if (s2 != std::string_view::npos) {
    p.module_id = std::string(rest.substr(s2 + 1));
    if (p.module_id.empty() || p.module_id.find('/') != std::string::npos) return std::nullopt;
  }
  if (p.device_id.empty()) return std::nullopt;
  return p;
}

connect_decision refuse(connack_code c, std::string reason) {
  connect_decision d;
  d.code = c;
  d.reason = std::move(reason);
  return d;
}


}  // namespace

namespace {
std::int64_t now_ms() { return to_unix_ms(std::chrono::system_clock::now()); }

// IoT Hub's error body for twin responses and REST errors (semantics.md §10, the newer envelope).
std::string error_body(int code, const std::string& message) {
  json::object o;
  o.set("errorCode", json::value(static_cast<std::int64_t>(code)));
  o.set("trackingId", json::value(new_uuid()));
  o.set("message", json::value(message));
  o.set("timestampUtc", json::value(format_iso8601(now_ms())));
  return json::serialize(json::value(std::move(o)));
}

// HTTP-like status and IoT Hub error code for an engine error on a device-side twin request.
std::pair<int, int> status_of(const error& e) {
  switch (e.code) {
    case errc::invalid_argument: return {400, 400004};
    case errc::too_large: return {400, 400004};
    case errc::not_found: return {404, 404001};
    case errc::precondition_failed: return {412, 412001};
    case errc::unavailable: return {503, 503001};
    default: return {500, 500001};
  }
}
}  // namespace

engine::engine(engine_options options, store::backend& store, registry& reg, logger log)
    : options_(std::move(options)),
      store_(store),
      registry_(reg),
      log_(std::move(log)),
      events_(options_.hostname),
      twins_(store, reg, events_, options_.twin, now_ms),
      methods_([this](const std::string& cid, std::string topic, bytes payload) {
                 return deliver_live(cid, std::move(topic), std::move(payload));
               },
               options_.methods),
      c2d_(store, reg, options_.c2d, now_ms, events_.hub_name()) {
  c2d_.on_available([this](const std::string& device_id) { c2d_pump(device_id); });
  registry_.on_change([this](const registry_change& c) { on_registry_change(c); });
  registry_.on_batch(
      [this](store::write_batch& b, const registry_change& c) {
        twins_.on_identity_batch(b, c);
        if (c.what == registry_change::kind::deleted && c.record.module_id.empty()) c2d_.drop_device(c.record.device_id, b);
      },
                     [this](const registry_change& c) { twins_.on_identity_committed(c); });
  twins_.on_desired_change([this](const std::string& client_id, std::int64_t version, std::string body) {
    // QoS 0 and only while connected and subscribed: IoT Hub keeps no desired notifications for offline
    // devices; a device GETs the twin after reconnecting (semantics.md §1.6).
    (void)publish_to_client(client_id, "$iothub/twin/PATCH/properties/desired/?$version=" + std::to_string(version),
                            bytes(body.begin(), body.end()), 0);
  });
}

engine::~engine() {
  registry_.on_change(nullptr);
  registry_.on_batch(nullptr);
  c2d_.close();  // (its availability listener stays: the barrier below runs the last commit callbacks)
  methods_.cancel_all("the hub is stopping");
  // Commit callbacks of session erases refer to this engine: let them run before it goes away.
  store_.submit_and_wait({});
}

connect_decision engine::authenticate(const connect_request& req, wall_time now) {
  if (req.client_id.empty()) return refuse(connack_code::identifier_rejected, "empty client id");
  std::string device_id = req.client_id, module_id;
  if (auto slash = req.client_id.find('/'); slash != std::string::npos) {
    device_id = req.client_id.substr(0, slash);
    module_id = req.client_id.substr(slash + 1);
  }
  if (!req.username) return refuse(connack_code::bad_username_or_password, "no username");
  auto user = parse_username(*req.username);
  if (!user) return refuse(connack_code::bad_username_or_password, "malformed username '" + *req.username + "'");
  if (user->device_id != device_id || user->module_id != module_id)
    return refuse(connack_code::identifier_rejected,
                  "client id '" + req.client_id + "' does not match the username '" + *req.username + "'");

  auto rec = registry_.get(device_id, module_id);
  if (!rec) {
    if (rec.err().code == errc::not_found) return refuse(connack_code::not_authorized, rec.err().message);
    return refuse(connack_code::server_unavailable, "registry: " + rec.err().message);
  }
  auto dev = rec.value();
  if (!module_id.empty()) {
    auto parent = registry_.get(device_id);
    if (parent && !parent->enabled) dev.enabled = false;
  }
  if (!dev.enabled) return refuse(connack_code::not_authorized, "device '" + device_id + "' is disabled");

  client_identity id;
  id.client_id = req.client_id;
  id.device_id = device_id;
  id.module_id = module_id;
  id.generation_id = dev.generation_id;

  if (!req.password) {
    // X.509: the TLS layer already proved possession of the key; match the registered thumbprint.
    if (req.client_cert_sha1.empty() && req.client_cert_sha256.empty())
      return refuse(connack_code::not_authorized, "no password and no client certificate");
    if (dev.auth == auth_type::self_signed) {
      auto match = [&](const std::string& tp) {
        return !tp.empty() && (iequals(tp, req.client_cert_sha1) || iequals(tp, req.client_cert_sha256));
      };
      if (!match(dev.primary_thumbprint) && !match(dev.secondary_thumbprint))
        return refuse(connack_code::not_authorized, "client certificate thumbprint is not registered for the device");
      id.auth = connection_auth::x509;
      return connect_decision{connack_code::accepted, std::move(id), {}};
    }
    return refuse(connack_code::not_authorized,
                  std::string("device authentication type '") + to_string(dev.auth) +
                      "' does not accept a client certificate here");
  }

  auto token = parse_sas_token(*req.password);
  if (!token) return refuse(connack_code::bad_username_or_password, "password is not a SAS token: " + token.err().message);
  auto target = user->host + "/devices/" + device_id + (module_id.empty() ? "" : "/modules/" + module_id);
  if (!resource_covers(token->resource, target))
    return refuse(connack_code::not_authorized, "SAS token resource '" + token->resource + "' does not cover '" + target + "'");
  std::vector<std::string> keys;
  auto auth = connection_auth::sas;
  if (token->key_name.empty()) {
    if (dev.auth != auth_type::sas) return refuse(connack_code::not_authorized, "device does not use SAS authentication");
    keys = {dev.primary_key, dev.secondary_key};
  } else {
    auto pol = registry_.get_policy(token->key_name);
    if (!pol) return refuse(connack_code::not_authorized, pol.err().message);
    if (!(pol->rights & device_connect))
      return refuse(connack_code::not_authorized, "policy '" + token->key_name + "' lacks DeviceConnect");
    keys = {pol->primary_key, pol->secondary_key};
    auth = connection_auth::sas_token;
  }
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (auto v = verify_sas_token(*token, keys, now_s); !v) return refuse(connack_code::not_authorized, v.err().message);
  id.token_expiry_s = token->expiry;
  id.auth = auth;
  return connect_decision{connack_code::accepted, std::move(id), {}};
}

void engine::erase_stored_session_locked(const std::string& client_id) {
  store::write_batch b;
  b.ops.push_back(store::erase_op{store::table::sessions, client_id});
  b.ops.push_back(store::erase_prefix_op{store::table::session_outbound, outbound_prefix(client_id)});
  ++erasing_[client_id];
  store_.submit(std::move(b), [this, client_id](const store::commit_result&) {
    std::lock_guard lk(mu_);
    if (auto it = erasing_.find(client_id); it != erasing_.end() && --it->second == 0) erasing_.erase(it);
  });
}

session_state* engine::load_session_locked(const std::string& client_id) {
  if (auto it = sessions_.find(client_id); it != sessions_.end()) return &it->second;
  if (erasing_.count(client_id)) return nullptr;
  auto rec = store_.get(store::table::sessions, client_id);
  if (!rec || !*rec) return nullptr;
  auto s = decode_session(**rec);
  if (!s) {
    log_.log(log_level::error, "session", "corrupt_session", s.err().message, {{"client_id", client_id}});
    return nullptr;
  }
  // Reload the unacknowledged outbound messages in order.
  auto prefix = outbound_prefix(client_id);
  std::string after;
  for (;;) {
    auto rows = store_.scan(store::table::session_outbound, prefix, after, 1000);
    if (!rows || rows->empty()) break;
    for (auto& kv : *rows) {
      auto m = decode_outbound(kv.value);
      if (!m || kv.key.size() != prefix.size() + 8) continue;
      std::uint64_t seq = 0;
      for (std::size_t i = prefix.size(); i < kv.key.size(); ++i) seq = (seq << 8) | static_cast<std::uint8_t>(kv.key[i]);
      s->inflight.emplace(seq, std::move(*m));
    }
    after = rows->back().key;
    if (rows->size() < 1000) break;
  }
  // After a restart nothing is known about what reached the client: treat the first window as delivered
  // (resent with DUP on attach) and the rest as not yet sent.
  s->durable_end = s->next_seq;
  std::size_t n = 0;
  for (auto& [seq, m] : s->inflight) {
    if (n++ == options_.max_inflight_outbound) break;
    s->delivered_end = seq + 1;
  }
  auto [it, _] = sessions_.emplace(client_id, std::move(*s));
  return &it->second;
}

attach_result engine::attach(const client_identity& id, bool clean_session, std::shared_ptr<connection_link> link) {
  attach_result r;
  std::shared_ptr<connection_link> old;
  {
    std::lock_guard lk(mu_);
    session_state* s = load_session_locked(id.client_id);
    if (s && s->link) old = std::move(s->link);
    if (clean_session) {
      if (s && s->persistent) erase_stored_session_locked(id.client_id);
      sessions_.erase(id.client_id);
      s = nullptr;
    }
    if (!s) {
      session_state fresh;
      fresh.client_id = id.client_id;
      fresh.device_id = id.device_id;
      fresh.module_id = id.module_id;
      fresh.persistent = !clean_session;
      if (fresh.persistent) {
        store::write_batch b;
        b.ops.push_back(store::put_op{store::table::sessions, id.client_id, encode_session(fresh)});
        store_.submit(std::move(b), {});
      }
      s = &sessions_.emplace(id.client_id, std::move(fresh)).first->second;
    } else {
      r.session_present = true;
      for (auto& [seq, m] : s->inflight) {
        if (seq >= s->delivered_end) break;
        auto copy = m;
        copy.dup = true;
        r.resend.push_back(std::move(copy));
      }
    }
    release_c2d_locked(*s);  // a taken-over connection's C2D messages go to the new one
    s->link = std::move(link);
    pump_locked(*s);  // posted deliveries go out after the CONNACK and the resends
    auto& cs = connection_states_[id.client_id];
    if (!cs.connected) {
      connected_.fetch_add(1, std::memory_order_relaxed);
      // Made and submitted under the lock: sequence numbers and log order follow the state changes.
      if (options_.connection_events)
        append_event(events_.connection_state(id.device_id, id.module_id, true, now_ms()));
    }
    cs.connected = true;
    cs.updated_ms = now_ms();
  }
  if (old) old->kick("session taken over by a new connection with the same client id");
  // A restored session may already be subscribed to methods: calls waiting for this device can go now.
  methods_.on_reachable(id.client_id, std::chrono::steady_clock::now());
  if (id.module_id.empty()) c2d_pump(id.device_id);  // queued C2D messages flow to a returning session
  return r;
}

void engine::detach(const client_identity& id, const connection_link* link, std::string_view reason) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(id.client_id);
  if (it == sessions_.end() || it->second.link.get() != link) return;  // taken over: the new link owns it
  it->second.link.reset();
  release_c2d_locked(it->second);
  if (!it->second.persistent) sessions_.erase(it);
  auto& cs = connection_states_[id.client_id];
  if (cs.connected) {
    connected_.fetch_sub(1, std::memory_order_relaxed);
    if (options_.connection_events)
      append_event(events_.connection_state(id.device_id, id.module_id, false, now_ms()));
  }
  cs.connected = false;
  cs.updated_ms = now_ms();
}

void engine::append_event(message m) {
  store::write_batch b;
  auto p = partition_for(m.device_id, store_.partition_count());
  b.ops.push_back(store::append_op{p, encode_message(m)});
  store_.submit(std::move(b), {});
}

bool engine::deliver_live(const std::string& client_id, std::string topic, bytes payload) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(client_id);
  if (it == sessions_.end() || !it->second.link) return false;
  bool subscribed = false;
  for (auto& sub : it->second.subscriptions)
    if (proto::mqtt::topic_matches(sub.filter, topic)) subscribed = true;
  if (!subscribed) return false;
  it->second.link->deliver(outbound_message{std::move(topic), std::move(payload), 0, 0, false});
  return true;
}

void engine::twin_reply(const std::string& client_id, int status, std::string_view rid, std::string body,
                        std::int64_t version) {
  // $rid first and every query element k=v: csdk and pydev parse these topics strictly (wire-protocol §1.4).
  std::string topic = "$iothub/twin/res/" + std::to_string(status) + "/?$rid=" + std::string(rid);
  if (version >= 0) topic += "&$version=" + std::to_string(version);
  (void)publish_to_client(client_id, std::move(topic), bytes(body.begin(), body.end()), 0);
}

void engine::invoke_method(method_request req, method_callback cb) {
  if (auto v = validate_method_request(req, options_.methods); !v) {
    cb(v.err());
    return;
  }
  if (auto rec = registry_.get(req.device_id, req.module_id); !rec) {
    cb(rec.err());
    return;
  }
  methods_.invoke(std::move(req), std::chrono::steady_clock::now(), std::move(cb));
}

void engine::expire(steady_time now) {
  methods_.expire(now);
  c2d_.tick();
}

publish_outcome engine::on_publish(const client_identity& id, proto::mqtt::publish_packet p, wall_time now) {
  auto c = classify_publish(p.topic, id.device_id, id.module_id);
  switch (c.kind) {
    case topic_kind::forbidden:
      return publish_close{"publish to topic '" + p.topic + "' is not allowed for '" + id.client_id + "'"};
    case topic_kind::twin_get: {
      auto t = twins_.get(id.device_id, id.module_id);
      if (!t) {
        auto [status, code] = status_of(t.err());
        twin_reply(id.client_id, status, c.rid, error_body(code, t.err().message));
      } else {
        twin_reply(id.client_id, 200, c.rid, json::serialize(device_view(*t)));
      }
      return publish_handled{};
    }
    case topic_kind::twin_patch_reported: {
      twins_.patch_reported(id.device_id, id.module_id, p.payload,
                            [this, client_id = id.client_id, rid = std::string(c.rid)](result<std::int64_t> r) {
                              if (r) {
                                twin_reply(client_id, 204, rid, {}, *r);
                                return;
                              }
                              auto [status, code] = status_of(r.err());
                              log_.log(log_level::info, "twin", "reported_patch_refused", r.err().message,
                                       {{"client_id", client_id}, {"status", std::to_string(status)}});
                              twin_reply(client_id, status, rid, error_body(code, r.err().message));
                            });
      return publish_handled{};
    }
    case topic_kind::method_response: {
      auto status = std::string(c.status), rid = std::string(c.rid);
      if (!methods_.on_response(id.client_id, status, rid, std::move(p.payload)))
        log_.log(log_level::info, "methods", "response_dropped",
                 "method response for an unknown, finished or timed-out request; dropped",
                 {{"client_id", id.client_id}, {"rid", rid}, {"status", status}});
      return publish_handled{};
    }
    case topic_kind::telemetry:
      break;
  }
  auto bag = proto::mqtt::parse_property_bag(c.property_bag);
  if (!bag) return publish_close{"bad property bag: " + bag.err().message};
  publish_telemetry t;
  message& m = t.msg;
  m.device_id = id.device_id;
  m.module_id = id.module_id;
  m.body = std::move(p.payload);
  m.system_properties = std::move(bag->system_properties);
  m.app_properties = std::move(bag->app_properties);
  // IoT Hub keeps RETAIN out of the broker and tells the consumer instead.
  if (p.retain) m.app_properties.push_back({"mqtt-retain", "true"});
  std::size_t size = m.body.size();
  for (auto& pr : m.system_properties) size += pr.value.size();
  for (auto& pr : m.app_properties) size += pr.key.size() + pr.value.size();
  if (size > options_.max_message_size)
    return publish_close{"message of " + std::to_string(size) + " bytes exceeds the " +
                         std::to_string(options_.max_message_size) + "-byte limit"};
  m.enqueued_time_ms = to_unix_ms(now);
  if (!find_property(m.system_properties, sysprop::message_id))
    m.system_properties.push_back({std::string(sysprop::message_id), new_uuid()});
  // The iothub-connection-* and iothub-enqueuedtime properties are derived from these when read.
  m.auth = id.auth;
  m.auth_generation_id = id.generation_id;
  t.partition = partition_for(id.device_id, store_.partition_count());
  return t;
}

void engine::ingest(std::vector<publish_telemetry> messages, store::commit_callback done) {
  store::write_batch b;
  b.ops.reserve(messages.size());
  for (auto& t : messages) b.ops.push_back(store::append_op{t.partition, encode_message(t.msg)});
  store_.submit(std::move(b), std::move(done));
}

void engine::subscribe(const client_identity& id, const std::vector<proto::mqtt::subscription>& subs,
                       std::function<void(std::vector<std::uint8_t>)> done) {
  std::vector<std::uint8_t> codes;
  codes.reserve(subs.size());
  bool persist = false;
  store::write_batch b;
  {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(id.client_id);
    if (it == sessions_.end()) {
      done(std::vector<std::uint8_t>(subs.size(), proto::mqtt::suback_failure));
      return;
    }
    auto& s = it->second;
    for (auto& sub : subs) {
      if (!subscription_allowed(sub.filter, id.device_id, id.module_id)) {
        log_.log(log_level::warning, "mqtt", "subscribe_refused", "subscription outside the device's topics",
                 {{"client_id", id.client_id}, {"filter", sub.filter}});
        codes.push_back(proto::mqtt::suback_failure);
        continue;
      }
      // IoT Hub grants QoS 1 at most.
      std::uint8_t q = std::min<std::uint8_t>(sub.qos, 1);
      auto existing = std::find_if(s.subscriptions.begin(), s.subscriptions.end(),
                                   [&](auto& x) { return x.filter == sub.filter; });
      if (existing != s.subscriptions.end()) {
        existing->qos = q;
      } else if (s.subscriptions.size() >= options_.max_subscriptions) {
        codes.push_back(proto::mqtt::suback_failure);
        continue;
      } else {
        s.subscriptions.push_back({sub.filter, q});
      }
      codes.push_back(q);
    }
    if (s.persistent) {
      persist = true;
      b.ops.push_back(store::put_op{store::table::sessions, s.client_id, encode_session(s)});
    }
  }
  if (!persist) {
    done(std::move(codes));
    methods_.on_reachable(id.client_id, std::chrono::steady_clock::now());
    if (id.module_id.empty()) c2d_pump(id.device_id);
    return;
  }
  // SUBACK only once the subscription is durable, so a crash cannot forget an acknowledged subscription.
  store_.submit(std::move(b), [this, client_id = id.client_id, codes = std::move(codes),
                               done = std::move(done)](const store::commit_result& r) mutable {
    if (!r.ok()) std::fill(codes.begin(), codes.end(), proto::mqtt::suback_failure);
    done(std::move(codes));
    // After the SUBACK is on its way: method calls waiting for this subscription go out behind it.
    if (r.ok()) {
      methods_.on_reachable(client_id, std::chrono::steady_clock::now());
      if (client_id.find('/') == std::string::npos) c2d_pump(client_id);
    }
  });
}

void engine::unsubscribe(const client_identity& id, const std::vector<std::string>& filters) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(id.client_id);
  if (it == sessions_.end()) return;
  auto& s = it->second;
  std::erase_if(s.subscriptions, [&](auto& sub) {
    return std::find(filters.begin(), filters.end(), sub.filter) != filters.end();
  });
  if (s.persistent) {
    store::write_batch b;
    b.ops.push_back(store::put_op{store::table::sessions, s.client_id, encode_session(s)});
    store_.submit(std::move(b), {});
  }
}

void engine::on_puback(const client_identity& id, std::uint16_t packet_id) { on_pubacks(id, {packet_id}); }

void engine::on_pubacks(const client_identity& id, const std::vector<std::uint16_t>& packet_ids) {
  std::vector<std::string> completed;  // C2D lock tokens
  {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(id.client_id);
    if (it == sessions_.end()) return;
    auto& s = it->second;
    bool pump = false;
    store::write_batch b;
    for (auto packet_id : packet_ids) {
      if (auto c = s.c2d_inflight.find(packet_id); c != s.c2d_inflight.end()) {
        // PUBACK of a cloud-to-device message completes it (MQTT has no abandon or reject).
        completed.push_back(std::move(c->second.second));
        s.c2d_inflight.erase(c);
        continue;
      }
      for (auto m = s.inflight.begin(); m != s.inflight.end(); ++m) {
        if (m->second.packet_id != packet_id) continue;
        if (s.persistent)
          b.ops.push_back(store::erase_op{store::table::session_outbound, outbound_key(s.client_id, m->first)});
        s.inflight.erase(m);
        pump = true;
        break;
      }
    }
    if (!b.ops.empty()) store_.submit(std::move(b), {});
    if (!completed.empty()) c2d_.complete_many(id.device_id, completed);
    if (pump) pump_locked(s);
  }
  if (!completed.empty()) c2d_pump(id.device_id);
}

result<void> engine::publish_to_client(std::string_view client_id, std::string topic, bytes payload,
                                       std::uint8_t qos) {
  std::lock_guard lk(mu_);
  auto* s = load_session_locked(std::string(client_id));
  if (!s) return make_error(errc::not_found, "no session for client '" + std::string(client_id) + "'");
  int granted = -1;
  for (auto& sub : s->subscriptions)
    if (proto::mqtt::topic_matches(sub.filter, topic)) granted = std::max<int>(granted, sub.qos);
  if (granted < 0)
    return make_error(errc::not_found, "client '" + std::string(client_id) + "' is not subscribed to '" + topic + "'");
  outbound_message m{std::move(topic), std::move(payload), static_cast<std::uint8_t>(std::min<int>(qos, granted)), 0, false};
  send_locked(*s, std::move(m));
  return {};
}

void engine::send_locked(session_state& s, outbound_message m) {
  if (m.qos == 0) {
    if (s.link) s.link->deliver(std::move(m));  // QoS 0 to an offline client is dropped, as in MQTT
    return;
  }
  m.packet_id = alloc_packet_id_locked(s);
  auto seq = s.next_seq++;
  s.inflight.emplace(seq, m);
  if (!s.persistent) {
    s.durable_end = s.next_seq;
    pump_locked(s);
    return;
  }
  store::write_batch b;
  b.ops.push_back(store::put_op{store::table::session_outbound, outbound_key(s.client_id, seq), encode_outbound(m)});
  b.ops.push_back(store::put_op{store::table::sessions, s.client_id, encode_session(s)});
  // Deliver only once the message is durable, so a PUBACK can never precede the record it deletes.
  store_.submit(std::move(b), [this, client_id = s.client_id, seq](const store::commit_result& r) {
    if (!r.ok()) return;
    std::lock_guard lk(mu_);
    auto it = sessions_.find(client_id);
    if (it == sessions_.end()) return;
    it->second.durable_end = std::max(it->second.durable_end, seq + 1);
    pump_locked(it->second);
  });
}

std::uint16_t engine::alloc_packet_id_locked(session_state& s) {
  // Packet ids must not collide with one still in flight (stored outbound or C2D).
  for (int tries = 0; tries < 65536; ++tries) {
    auto id = s.next_packet_id++;
    if (s.next_packet_id == 0) s.next_packet_id = 1;
    if (s.c2d_inflight.count(id)) continue;
    bool used = std::any_of(s.inflight.begin(), s.inflight.end(), [&](auto& kv) { return kv.second.packet_id == id; });
    if (!used) return id;
  }
  return 0;
}

void engine::release_c2d_locked(session_state& s) {
  for (auto& [pid, c] : s.c2d_inflight) c2d_.release(s.device_id, c.second);
  s.c2d_inflight.clear();
}

void engine::c2d_pump(const std::string& device_id) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(device_id);
  if (it == sessions_.end() || !it->second.link || !it->second.module_id.empty()) return;
  auto& s = it->second;
  const std::string probe = "devices/" + device_id + "/messages/devicebound/x";
  int granted = -1;
  for (auto& sub : s.subscriptions)
    if (proto::mqtt::topic_matches(sub.filter, probe)) granted = std::max<int>(granted, sub.qos);
  if (granted < 0) return;
  std::size_t unacked = s.c2d_inflight.size();
  for (auto& [seq, m] : s.inflight) {
    if (seq >= s.delivered_end) break;
    ++unacked;
  }
  if (unacked >= options_.max_inflight_outbound) return;
  auto batch = c2d_.lock_next(device_id, options_.max_inflight_outbound - unacked, std::chrono::milliseconds(0));
  for (auto& d : batch) {
    auto topic = c2d_topic(d);
    if (granted == 0) {
      // Subscribed at QoS 0: at most once, completed as it is sent.
      s.link->deliver(outbound_message{std::move(topic), std::move(d.msg.body), 0, 0, false});
      (void)c2d_.complete(device_id, d.lock_token);
      continue;
    }
    auto pid = alloc_packet_id_locked(s);
    s.c2d_inflight.emplace(pid, std::make_pair(d.sequence_number, d.lock_token));
    s.link->deliver(outbound_message{std::move(topic), std::move(d.msg.body), 1, pid, false});
  }
}

void engine::pump_locked(session_state& s) {
  if (!s.link) return;
  std::size_t unacked = s.c2d_inflight.size();
  for (auto& [seq, m] : s.inflight) {
    if (seq >= s.delivered_end) break;
    ++unacked;
  }
  for (auto it = s.inflight.lower_bound(s.delivered_end);
       it != s.inflight.end() && it->first < s.durable_end && unacked < options_.max_inflight_outbound; ++it) {
    s.link->deliver(it->second);
    s.delivered_end = it->first + 1;
    ++unacked;
  }
}

void engine::disconnect_device(std::string_view device_id, const std::string& reason, std::string_view module_id) {
  std::vector<std::shared_ptr<connection_link>> kick;
  {
    std::lock_guard lk(mu_);
    for (auto& [cid, s] : sessions_)
      if (s.device_id == device_id && (module_id.empty() || s.module_id == module_id) && s.link)
        kick.push_back(s.link);
  }
  for (auto& l : kick) l->kick(reason);
}

void engine::on_registry_change(const registry_change& c) {
  twins_.on_identity_committed(c);
  const auto& d = c.record;
  if (c.what == registry_change::kind::deleted) {
    disconnect_device(d.device_id, "identity deleted", d.module_id);
    // A deleted identity's persistent sessions (the device's, or its modules') go with it.
    std::lock_guard lk(mu_);
    std::vector<std::string> gone;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      bool match = it->second.device_id == d.device_id && (d.module_id.empty() || it->second.module_id == d.module_id);
      if (match) {
        if (it->second.persistent) gone.push_back(it->first);
        if (!it->second.link) { it = sessions_.erase(it); continue; }
        it->second.persistent = false;  // the live connection is being kicked; nothing of it is kept
      }
      ++it;
    }
    auto cid = d.module_id.empty() ? d.device_id : d.device_id + "/" + d.module_id;
    if (std::find(gone.begin(), gone.end(), cid) == gone.end()) gone.push_back(cid);
    for (auto& g : gone) erase_stored_session_locked(g);
  } else if (!d.enabled && d.module_id.empty()) {
    disconnect_device(d.device_id, "device disabled");
  }
}

engine::connection_info engine::connection_state(std::string_view device_id, std::string_view module_id) const {
  std::string cid(device_id);
  if (!module_id.empty()) cid += "/" + std::string(module_id);
  std::lock_guard lk(mu_);
  auto it = connection_states_.find(cid);
  return it == connection_states_.end() ? connection_info{} : it->second;
}

void engine::release_links() {
  std::vector<std::pair<std::string, std::string>> gone;  // device, module of each connection dropped
  {
    std::lock_guard lk(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.link) gone.emplace_back(it->second.device_id, it->second.module_id);
      it->second.link.reset();
      release_c2d_locked(it->second);
      if (!it->second.persistent) it = sessions_.erase(it); else ++it;
    }
    for (auto& [cid, cs] : connection_states_) cs.connected = false;
    connected_.store(0, std::memory_order_relaxed);
    if (options_.connection_events)
      for (auto& [d, m] : gone) append_event(events_.connection_state(d, m, false, now_ms()));
  }
  methods_.cancel_all("the hub is stopping");
}

std::size_t engine::connected_count() const { return connected_.load(std::memory_order_relaxed); }

std::size_t engine::connected_device_count() const {
  std::lock_guard lk(mu_);
  std::size_t n = 0;
  for (const auto& [client_id, cs] : connection_states_)
    if (cs.connected && client_id.find('/') == std::string::npos) ++n;  // "device/module" is a module
  return n;
}

}  // namespace fleethub::hub
