// http_api: the device HTTPS API handlers (wire-protocol.md §4): telemetry (single and batch), and C2D
// receive, complete, reject and abandon. Routing and the device token check are in http_api.cpp.
// Thread safety: as http_api (any thread); telemetry answers from the store's writer thread after the commit.
#include <utility>

#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"
#include "fleethub/hub/http_api.hpp"
#include "fleethub/hub/rest_views.hpp"
#include "fleethub/hub/topics.hpp"

namespace fleethub::hub {

namespace {

using proto::http::iequals;

constexpr std::string_view app_prefix = "iothub-app-";
constexpr std::string_view batch_content_type = "application/vnd.microsoft.iothub.json";

bool starts_with_i(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// The system property an iothub-* HTTP header (or batch property) carries; empty when it is none of them.
std::string_view system_property_of(std::string_view name) {
  if (iequals(name, "iothub-messageid")) return sysprop::message_id;
  if (iequals(name, "iothub-correlationid")) return sysprop::correlation_id;
  if (iequals(name, "iothub-contenttype")) return sysprop::content_type;
  if (iequals(name, "iothub-contentencoding")) return sysprop::content_encoding;
  if (iequals(name, "iothub-userid")) return sysprop::user_id;
  if (iequals(name, "iothub-creation-time-utc")) return sysprop::creation_time_utc;
  return {};
}

// Header values cannot carry CR or LF; a property value with them (from an AMQP sender) is flattened.
std::string header_safe(std::string v) {
  for (char& ch : v)
    if (ch == '\r' || ch == '\n') ch = ' ';
  return v;
}


}  // namespace

void http_api::send_events(call& c, const device_caller& who) {
  const auto limit = eng_.options().max_message_size;
  auto too_large = [&](std::size_t size) {
    c.respond(error_response(413, 413001, "MessageTooLarge",
                             "message of " + std::to_string(size) + " bytes exceeds the " + std::to_string(limit) +
                                 "-byte limit (body plus properties)"));
  };
  if (c.req.body.size() > limit) return too_large(c.req.body.size());
  const auto* ctype = c.req.find("Content-Type");
  const bool batch = ctype && starts_with_i(*ctype, batch_content_type);

  std::vector<publish_telemetry> out;
  auto stamp = [&](message m) {
    // As engine::on_publish stamps MQTT telemetry: enqueued time, a message id when the device sent none,
    // the connection's auth facts (iothub-connection-* derive from them), the device's partition.
    m.device_id = who.record.device_id;
    m.module_id = who.record.module_id;
    m.enqueued_time_ms = to_unix_ms(std::chrono::system_clock::now());
    if (!find_property(m.system_properties, sysprop::message_id))
      m.system_properties.push_back({std::string(sysprop::message_id), new_uuid()});
    m.auth = who.auth;
    m.auth_generation_id = who.record.generation_id;
    publish_telemetry t;
    t.partition = partition_for(m.device_id, eng_.store().partition_count());
    t.msg = std::move(m);
    out.push_back(std::move(t));
  };
  auto add_property = [](message& m, std::string_view name, std::string value) {
    if (auto sys = system_property_of(name); !sys.empty()) set_property(m.system_properties, sys, std::move(value));
    else if (starts_with_i(name, app_prefix) && name.size() > app_prefix.size())
      m.app_properties.push_back({std::string(name.substr(app_prefix.size())), std::move(value)});
    else
      return false;
    return true;
  };

  if (!batch) {
    message m;
    m.body = to_bytes(c.req.body);
    for (const auto& h : c.req.headers) add_property(m, h.name, h.value);
    std::size_t size = m.body.size();
    for (auto& p : m.system_properties) size += p.value.size();
    for (auto& p : m.app_properties) size += p.key.size() + p.value.size();
    if (size > limit) return too_large(size);
    stamp(std::move(m));
  } else {
    // [{"body":"...","base64Encoded":true,"properties":{"iothub-app-k":"v","iothub-messageid":"..."}}, ...]
    auto bad = [&](std::string msg) {
      c.respond(error_response(400, 400004, "ArgumentInvalid", "batch body: " + std::move(msg)));
    };
    auto parsed = json::parse(c.req.body);
    if (!parsed) return bad("not valid JSON: " + parsed.err().message);
    if (!parsed->is_array() || parsed->as_array().empty()) return bad("must be a non-empty JSON array of messages");
    std::size_t total = 0;
    for (const auto& item : parsed->as_array()) {
      if (!item.is_object()) return bad("every message must be a JSON object");
      message m;
      const auto* b = item.find("body");
      if (b && !b->is_null() && !b->is_string()) return bad("'body' must be a string");
      std::string text = b && b->is_string() ? b->as_string() : std::string();
      const auto* enc = item.find("base64Encoded");
      if (enc && enc->is_bool() && enc->as_bool()) {
        auto raw = base64_decode(text);
        if (!raw) return bad("'body' is not valid base64 although base64Encoded is true");
        m.body = std::move(*raw);
      } else {
        m.body = to_bytes(text);
      }
      if (const auto* props = item.find("properties"); props && props->is_object()) {
        for (const auto& [k, pv] : props->as_object()) {
          std::string value = pv.is_string() ? pv.as_string() : json::serialize(pv);
          // Bare names are application properties too (the iothub-app- prefix is the header convention).
          if (!add_property(m, k, value) && !starts_with_i(k, "iothub-")) m.app_properties.push_back({k, value});
        }
      } else if (props && !props->is_null()) {
        return bad("'properties' must be a JSON object");
      }
      total += m.body.size();
      for (auto& p : m.system_properties) total += p.value.size();
      for (auto& p : m.app_properties) total += p.key.size() + p.value.size();
      if (total > limit) return too_large(total);
      stamp(std::move(m));
    }
  }
  // 204 only once the messages are durable (architecture: acknowledged only after the commit).
  store::commit_callback done = [respond = c.respond](const store::commit_result& r) {
    if (r.ok()) return respond(empty_response(204));
    respond(error_response(to_rest_error(r.err)));
  };
  if (ingest_) return ingest_(std::move(out), std::move(done));
  eng_.ingest(std::move(out), std::move(done));
}

void http_api::receive_c2d(call& c, const device_caller& who) {
  auto lock_for = std::chrono::duration_cast<std::chrono::milliseconds>(opt_.c2d_lock_timeout);
  if (const auto* t = c.req.find("IotHub-MessageLockTimeout"); t && !t->empty()) {
    std::int64_t s = 0;
    bool ok = t->size() <= 6;
    for (char ch : *t) {
      if (ch < '0' || ch > '9') ok = false;
      else s = s * 10 + (ch - '0');
    }
    if (!ok || s < 1 || s > 300)
      return c.respond(error_response(400, 400004, "ArgumentInvalid",
                                      "IotHub-MessageLockTimeout must be a whole number of seconds from 1 to 300"));
    lock_for = std::chrono::seconds(s);
  }
  auto got = eng_.c2d().lock_next(who.record.device_id, 1, lock_for);
  if (got.empty()) return c.respond(empty_response(204));
  auto& d = got.front();
  proto::http::response r;
  r.status = 200;
  auto add = [&](std::string name, std::string value) { r.headers.push_back({std::move(name), header_safe(std::move(value))}); };
  auto sys = [&](std::string_view key) {
    const auto* v = find_property(d.msg.system_properties, key);
    return v ? *v : std::string();
  };
  add("ETag", "\"" + d.lock_token + "\"");  // quoted: csdk checks for the quotes
  add("iothub-messageid", sys(sysprop::message_id));
  if (auto v = sys(sysprop::correlation_id); !v.empty()) add("iothub-correlationid", v);
  add("iothub-sequencenumber", std::to_string(d.sequence_number));
  add("iothub-to", sys(sysprop::to));
  if (auto v = sys(sysprop::user_id); !v.empty()) add("iothub-userid", v);
  add("iothub-ack", to_string(d.ack));
  add("iothub-expiry", sys(sysprop::absolute_expiry_time));
  add("iothub-deliverycount", std::to_string(d.delivery_count));
  add("iothub-enqueuedtime", rest_timestamp(d.msg.enqueued_time_ms));
  if (auto v = sys(sysprop::content_type); !v.empty()) add("ContentType", v);
  if (auto v = sys(sysprop::content_encoding); !v.empty()) add("ContentEncoding", v);
  for (auto& p : d.msg.app_properties) add(std::string(app_prefix) + p.key, p.value);
  r.body.assign(d.msg.body.begin(), d.msg.body.end());
  c.respond(std::move(r));
}

void http_api::settle_c2d(call& c, const device_caller& who, const std::string& lock_token, settle how) {
  auto token = unquote_etag(lock_token);
  auto& q = eng_.c2d();
  const auto& id = who.record.device_id;
  auto r = how == settle::complete ? q.complete(id, token) : how == settle::reject ? q.reject(id, token) : q.abandon(id, token);
  if (!r) return c.respond(error_for(reg_, r.err(), id, {}, error_scope::c2d));
  c.respond(empty_response(204));
}

}  // namespace fleethub::hub
