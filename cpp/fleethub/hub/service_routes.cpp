// http_api: the service REST API handlers (wire-protocol.md §3.2): registry CRUD and bulk, twins, direct
// methods, queries, statistics, C2D purge and feedback. Routing and authorization are in http_api.cpp.
// Thread safety: as http_api (any thread); registry writes, bulk items, purge and feedback settlement wait for
// their store commit on the calling thread, twin writes and method calls answer from a hub thread.
#include <cmath>
#include <future>
#include <limits>
#include <utility>

#include "fleethub/core/encoding.hpp"
#include "fleethub/hub/http_api.hpp"
#include "fleethub/hub/rest_views.hpp"

namespace fleethub::hub {

namespace {

using proto::http::iequals;

std::string header_value(const proto::http::request& req, std::string_view name) {
  const auto* v = req.find(name);
  return v ? *v : std::string();
}

// If-Match as the SDK sends it ("\"<etag>\"", "\"*\"", maybe weak W/"..."): the bare etag or "*".
std::string if_match_of(const proto::http::request& req) {
  const auto* h = req.find("If-Match");
  return h ? unquote_etag(*h) : std::string();
}

// The JSON body, or a 400 answer (and nullopt).
std::optional<json::value> parse_body(const proto::http::request& req, const http_api::respond_fn& respond) {
  if (req.body.empty()) {
    respond(error_response(400, 400004, "ArgumentInvalid", "the request needs a JSON body"));
    return std::nullopt;
  }
  auto v = json::parse(req.body);
  if (!v) {
    respond(error_response(400, 400004, "ArgumentInvalid", "the body is not valid JSON: " + v.err().message));
    return std::nullopt;
  }
  return std::move(*v);
}

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(ch - '0');
  }
  return v;
}

// A timeout field of a method call: whole seconds (a fraction rounds up), `fallback` when absent or null.
result<std::chrono::seconds> seconds_field(const json::value& body, std::string_view key, std::chrono::seconds fallback) {
  const auto* v = body.find(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_number() || v->as_double() < 0 || v->as_double() > 1e6)
    return make_error(errc::invalid_argument, "'" + std::string(key) + "' must be a non-negative number of seconds");
  return std::chrono::seconds(static_cast<std::int64_t>(std::ceil(v->as_double())));
}

// One failed item of a bulk registry operation (DeviceRegistryOperationError).
json::value bulk_error(const std::string& device_id, const std::string& module_id, const rest_error& e,
                       const std::string& operation) {
  json::object o;
  o.emplace_back("deviceId", device_id);
  o.emplace_back("errorCode", e.name);
  o.emplace_back("errorStatus", e.message);
  o.emplace_back("moduleId", module_id.empty() ? json::value(nullptr) : json::value(module_id));
  o.emplace_back("operation", operation);
  return o;
}

}  // namespace

void http_api::list_devices(call& c) {
  std::size_t top = 1000;  // outside 1..1000 means 1000 (semantics §6.2)
  if (const auto* t = c.target.query_value("top"))
    if (auto n = parse_uint(*t); n && *n >= 1 && *n <= 1000) top = static_cast<std::size_t>(*n);
  auto rows = reg_.list({}, top);
  if (!rows) return c.respond(error_for(reg_, rows.err(), {}, {}));
  json::array out;
  out.reserve(rows->size());
  for (const auto& d : *rows) out.push_back(device_json(d, eng_));
  c.respond(json_response(200, out));
}

void http_api::get_identity(call& c, const std::string& device_id, const std::string& module_id) {
  auto rec = reg_.get(device_id, module_id);
  if (!rec) return c.respond(error_for(reg_, rec.err(), device_id, module_id));
  c.respond(json_response(200, module_id.empty() ? device_json(*rec, eng_) : module_json(*rec, eng_)));
}

void http_api::put_identity(call& c, const std::string& device_id, const std::string& module_id) {
  auto body = parse_body(c.req, c.respond);
  if (!body) return;
  auto spec = device_spec_from_json(*body, device_id, module_id);
  if (!spec) return c.respond(error_for(reg_, spec.err(), device_id, module_id));
  // If-Match applies to updates ("*" or quoted etags; the body's etag field is not used for concurrency).
  const auto if_match = if_match_of(c.req);
  auto cur = reg_.get(device_id, module_id);
  if (!cur && cur.err().code != errc::not_found) return c.respond(error_for(reg_, cur.err(), device_id, module_id));
  const bool creating = !cur;
  auto rec = creating ? reg_.create(*spec) : reg_.update(*spec, if_match);
  if (!rec) return c.respond(error_for(reg_, rec.err(), device_id, module_id));
  if (module_id.empty()) return c.respond(json_response(200, device_json(*rec, eng_)));  // the SDK wants 200 only
  c.respond(json_response(creating ? 201 : 200, module_json(*rec, eng_)));
}

void http_api::delete_identity(call& c, const std::string& device_id, const std::string& module_id) {
  auto r = reg_.remove(device_id, module_id, if_match_of(c.req));
  if (!r) return c.respond(error_for(reg_, r.err(), device_id, module_id));
  c.respond(empty_response(204));
}

void http_api::list_modules(call& c, const std::string& device_id) {
  if (auto dev = reg_.get(device_id); !dev) return c.respond(error_for(reg_, dev.err(), device_id, {}));
  auto rows = reg_.list_modules(device_id);
  if (!rows) return c.respond(error_for(reg_, rows.err(), device_id, {}));
  json::array out;
  for (const auto& m : *rows) out.push_back(module_json(m, eng_));
  c.respond(json_response(200, out));
}

void http_api::get_twin(call& c, const std::string& device_id, const std::string& module_id) {
  auto t = eng_.twins().get(device_id, module_id);
  if (!t) return c.respond(error_for(reg_, t.err(), device_id, module_id));
  c.respond(json_response(200, service_twin_json(eng_, reg_, *t)));
}

void http_api::update_twin(call& c, const std::string& device_id, const std::string& module_id, bool replace) {
  auto body = parse_body(c.req, c.respond);
  if (!body) return;
  auto u = parse_twin_update(*body, replace);
  if (!u) return c.respond(error_for(reg_, u.err(), device_id, module_id));
  u->if_match = if_match_of(c.req);
  // Answered after the commit, with the full twin as stored (semantics §1.3).
  eng_.twins().update(device_id, module_id, std::move(*u),
                      [eng = &eng_, reg = &reg_, respond = c.respond, device_id, module_id](result<twin_document> r) {
                        if (!r) return respond(error_for(*reg, r.err(), device_id, module_id));
                        respond(json_response(200, service_twin_json(*eng, *reg, *r)));
                      });
}

void http_api::invoke_method(call& c, const std::string& device_id, const std::string& module_id) {
  auto body = parse_body(c.req, c.respond);
  if (!body) return;
  auto bad = [&](std::string msg) { c.respond(error_response(400, 400004, "ArgumentInvalid", std::move(msg))); };
  if (!body->is_object()) return bad("the method call must be a JSON object");
  const auto* name = body->find("methodName");
  if (!name || !name->is_string() || name->as_string().empty()) return bad("'methodName' must be a non-empty string");
  method_request req;
  req.device_id = device_id;
  req.module_id = module_id;
  req.method_name = name->as_string();
  // A missing payload reaches the device as JSON null (the device SDKs parse the body as JSON).
  const auto* payload = body->find("payload");
  req.payload = to_bytes(json::serialize(payload ? *payload : json::value(nullptr)));
  auto rt = seconds_field(*body, "responseTimeoutInSeconds", std::chrono::seconds(30));
  if (!rt) return bad(rt.err().message);
  auto ct = seconds_field(*body, "connectTimeoutInSeconds", std::chrono::seconds(0));
  if (!ct) return bad(ct.err().message);
  req.response_timeout = *rt;
  req.connect_timeout = *ct;
  eng_.invoke_method(std::move(req), [reg = &reg_, respond = c.respond, device_id,
                                      module_id](result<method_response> r) {
    if (!r) return respond(error_for(*reg, r.err(), device_id, module_id, error_scope::method));
    json::value payload = nullptr;
    if (!r->payload.empty()) {
      auto text = as_string_view(r->payload);
      auto parsed = json::parse(text);
      // A device answer that is not JSON is passed on as a JSON string rather than failing the call.
      payload = parsed ? std::move(*parsed) : json::value(std::string(text));
    }
    json::object out;
    out.emplace_back("status", r->status);
    out.emplace_back("payload", std::move(payload));
    respond(json_response(200, out));
  });
}

void http_api::run_query(call& c) {
  auto body = parse_body(c.req, c.respond);
  if (!body) return;
  const auto* text = body->find("query");
  if (!text || !text->is_string() || text->as_string().empty())
    return c.respond(error_response(400, 400004, "ArgumentInvalid", "the body must be {\"query\": \"SELECT ...\"}"));
  std::size_t page = std::min(query_runner::default_page_size, opt_.max_page_items);
  if (const auto* m = c.req.find("x-ms-max-item-count"); m && !m->empty()) {
    auto n = parse_uint(*m);
    if (!n) return c.respond(error_response(400, 400004, "ArgumentInvalid", "x-ms-max-item-count must be a number"));
    // The service may use another page size than asked (semantics §2.4): the cap wins, 0 means the default.
    if (*n > 0) page = static_cast<std::size_t>(std::min<std::uint64_t>(*n, opt_.max_page_items));
  }
  auto r = queries_.run(text->as_string(), header_value(c.req, "x-ms-continuation"), page);
  if (!r) return c.respond(error_for(reg_, r.err(), {}, {}));
  auto resp = json_response(200, json::value(std::move(r->items)));
  resp.headers.push_back({"x-ms-item-type", r->item_type});
  if (!r->continuation.empty()) resp.headers.push_back({"x-ms-continuation", r->continuation});
  c.respond(std::move(resp));
}

void http_api::device_statistics(call& c) {
  auto s = reg_.stats();
  if (!s) return c.respond(error_for(reg_, s.err(), {}, {}));
  json::object o;
  o.emplace_back("totalDeviceCount", s->total);
  o.emplace_back("enabledDeviceCount", s->enabled);
  o.emplace_back("disabledDeviceCount", s->disabled);
  c.respond(json_response(200, o));
}

void http_api::service_statistics(call& c) {
  c.respond(json_response(200, json::object{{"connectedDeviceCount", eng_.connected_device_count()}}));
}

void http_api::purge_c2d(call& c, const std::string& device_id) {
  auto n = eng_.c2d().purge(device_id);
  if (!n) return c.respond(error_for(reg_, n.err(), device_id, {}));
  json::object o;
  o.emplace_back("totalMessagesPurged", *n);
  o.emplace_back("deviceId", device_id);
  o.emplace_back("moduleId", nullptr);
  c.respond(json_response(200, o));
}

void http_api::receive_feedback(call& c) {
  // Never blocks an I/O thread: no batch now means 204 (the SDK accepts 200 or 204 and polls again).
  auto f = eng_.c2d().receive_feedback(std::chrono::milliseconds(0));
  if (!f) return c.respond(empty_response(204));
  proto::http::response r;
  r.status = 200;
  r.headers.push_back({"Content-Type", "application/vnd.microsoft.iothub.feedback.json"});
  r.headers.push_back({"ETag", "\"" + f->lock_token + "\""});  // the lock token, quoted as for C2D receive
  r.headers.push_back({"iothub-messageid", std::to_string(f->id)});
  r.headers.push_back({"iothub-enqueuedtime", rest_timestamp(f->enqueued_ms)});
  r.headers.push_back({"iothub-deliverycount", std::to_string(f->delivery_count)});
  r.headers.push_back({"iothub-userid", f->user_id});
  r.body = std::move(f->body);
  c.respond(std::move(r));
}

void http_api::settle_feedback(call& c, const std::string& lock_token, bool abandon) {
  auto token = unquote_etag(lock_token);
  auto r = abandon ? eng_.c2d().abandon_feedback(token) : eng_.c2d().complete_feedback(token);
  if (!r) return c.respond(error_for(reg_, r.err(), {}, {}, error_scope::c2d));
  c.respond(empty_response(204));
}

void http_api::bulk_registry(call& c) {
  auto body = parse_body(c.req, c.respond);
  if (!body) return;
  if (!body->is_array())
    return c.respond(error_response(400, 400004, "ArgumentInvalid", "the body must be a JSON array of devices"));
  const auto& items = body->as_array();
  if (items.size() > 100)
    return c.respond(error_response(400, 400004, "ArgumentInvalid",
                                    "a bulk registry operation takes at most 100 devices, got " +
                                        std::to_string(items.size())));
  json::array errors;
  // Twin part of an item ("tags", "properties.desired"): applied as a patch, waiting for its commit so the
  // answer reflects every item (the registry writes are synchronous too).
  auto apply_twin = [&](const json::object& item, const std::string& id, const std::string& mid,
                        std::string if_match) -> result<void> {
    json::object t;
    if (const auto* tags = item.find("tags"); tags && !tags->is_null()) t.emplace_back("tags", *tags);
    if (const auto* p = item.find("properties"); p && p->is_object())
      if (const auto* d = p->find("desired"); d && !d->is_null())
        t.emplace_back("properties", json::object{{"desired", *d}});
    if (t.empty()) return {};
    auto u = parse_twin_update(json::value(std::move(t)), false);
    if (!u) return u.err();
    u->if_match = std::move(if_match);
    std::promise<result<twin_document>> done;
    auto fut = done.get_future();
    eng_.twins().update(id, mid, std::move(*u), [&done](result<twin_document> r) { done.set_value(std::move(r)); });
    auto r = fut.get();
    if (!r) return r.err();
    return {};
  };
  for (const auto& v : items) {
    std::string id, mid, mode = "createOrUpdate";
    auto fail = [&](const error& e) {
      auto scope = mid.empty() ? error_scope::device : error_scope::module;
      auto re = to_rest_error(e, scope);
      if (e.code == errc::not_found && !mid.empty() && !reg_.get(id)) re = to_rest_error(e, error_scope::device);
      errors.push_back(bulk_error(id, mid, re, mode));
    };
    if (!v.is_object()) {
      fail(make_error(errc::invalid_argument, "every item must be a JSON object"));
      continue;
    }
    const auto& item = v.as_object();
    auto str = [&](std::string_view key) {
      const auto* f = item.find(key);
      return f && f->is_string() ? f->as_string() : std::string();
    };
    id = str("id");
    mid = str("moduleId");
    if (auto m = str("importMode"); !m.empty()) mode = m;
    if (id.empty()) {
      fail(make_error(errc::invalid_argument, "'id' (the device id) is required"));
      continue;
    }
    const auto etag = str("eTag"), twin_etag = str("twinETag");
    const bool if_match_mode = mode.size() > 11 && iequals(mode.substr(mode.size() - 11), "IfMatchETag");
    const std::string base = if_match_mode ? mode.substr(0, mode.size() - 11) : mode;
    if (if_match_mode && (iequals(base, "updateTwin") ? twin_etag : etag).empty()) {
      fail(make_error(errc::invalid_argument, "importMode " + mode + " needs " +
                                                  (iequals(base, "updateTwin") ? "'twinETag'" : "'eTag'")));
      continue;
    }
    const std::string match = if_match_mode ? etag : std::string();
    result<void> outcome;
    if (iequals(base, "delete")) {
      outcome = reg_.remove(id, mid, match);
    } else if (iequals(base, "updateTwin")) {
      outcome = apply_twin(item, id, mid, if_match_mode ? twin_etag : std::string());
    } else if (iequals(base, "create") || iequals(base, "update") || iequals(base, "createOrUpdate")) {
      auto spec = device_spec_from_json(v, id, mid, "id");
      if (!spec) {
        fail(spec.err());
        continue;
      }
      auto rec = iequals(base, "create") ? reg_.create(*spec)
                 : iequals(base, "update") ? reg_.update(*spec, match)
                                           : reg_.create_or_update(*spec, match);
      outcome = rec ? apply_twin(item, id, mid, {}) : result<void>(rec.err());
    } else {
      outcome = make_error(errc::invalid_argument,
                           "unknown importMode '" + mode + "' (create, update, updateIfMatchETag, createOrUpdate, "
                           "createOrUpdateIfMatchETag, delete, deleteIfMatchETag, updateTwin, updateTwinIfMatchETag)");
    }
    if (!outcome) fail(outcome.err());
  }
  json::object out;
  const bool ok = errors.empty();
  out.emplace_back("isSuccessful", ok);
  out.emplace_back("errors", std::move(errors));
  out.emplace_back("warnings", json::array{});
  c.respond(json_response(ok ? 200 : 400, out));
}

}  // namespace fleethub::hub
