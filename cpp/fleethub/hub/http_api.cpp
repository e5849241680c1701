#include "fleethub/hub/http_api.hpp"

#include <atomic>
#include <exception>
#include <memory>
#include <utility>

#include "fleethub/hub/sas.hpp"

namespace fleethub::hub {

namespace {

using proto::http::iequals;


proto::http::response not_found_route(const proto::http::request& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  return error_response(404, 404000, "NotFound",
                        "no such resource: " + req.method + " " + path +
                            " is not part of the IoT Hub service or device REST API served here");
}

proto::http::response not_allowed(const proto::http::request& req, std::string allow) {
  std::string path = req.target.substr(0, req.target.find('?'));
  auto r = error_response(405, 405000, "MethodNotAllowed",
                          "method " + req.method + " is not allowed on " + path + " (allowed: " + allow + ")");
  r.headers.push_back({"Allow", std::move(allow)});
  return r;
}

proto::http::response not_supported(std::string feature) {
  return error_response(501, 501000, "NotImplemented",
                        feature + " are not supported by this hub yet; the registry, twins, direct methods, "
                                  "queries, statistics, cloud-to-device purge and feedback, and the device "
                                  "telemetry and cloud-to-device endpoints are");
}

// "ServiceConnect or RegistryRead" for an any-of rights mask.
std::string rights_any(std::uint32_t rights) {
  std::string s = rights_to_string(rights);
  for (std::size_t p; (p = s.find(", ")) != std::string::npos;) s.replace(p, 2, " or ");
  return s;
}

// The host part of a token resource ("hub.local:8443/devices/d" -> "hub.local:8443").
std::string_view resource_host(std::string_view resource) { return resource.substr(0, resource.find('/')); }

}  // namespace

http_api::http_api(engine& eng, registry& reg, http_api_options opt)
    : eng_(eng), reg_(reg), opt_(std::move(opt)), queries_(eng, reg, opt_.continuation_ttl) {}

void http_api::handle(const proto::http::request& req, std::string_view remote_address, respond_fn respond) {
  (void)remote_address;
  // Once-only: a handler that answered and then failed, or a late duplicate callback, cannot answer twice.
  auto answered = std::make_shared<std::atomic<bool>>(false);
  respond_fn once = [answered, respond = std::move(respond)](proto::http::response r) {
    if (!answered->exchange(true)) respond(std::move(r));
  };
  auto target = proto::http::parse_target(req.target);
  if (!target) {
    once(error_response(400, 400004, "ArgumentInvalid", "bad request target: " + target.err().message));
    return;
  }
  call c{req, std::move(*target), once};
  try {
    dispatch(c);
  } catch (const std::exception& e) {
    once(error_response(500, 500001, "ServerError", std::string("internal error: ") + e.what()));
  } catch (...) {
    once(error_response(500, 500001, "ServerError", "internal error"));
  }
}

bool http_api::may_block(const proto::http::request& req) {
  auto t = proto::http::parse_target(req.target);
  if (!t || t->segments.empty()) return false;
  const auto& s = t->segments;
  const auto& m = req.method;
  if (iequals(s[0], "messages")) return m == "DELETE" || m == "POST";  // feedback complete / abandon
  if (!iequals(s[0], "devices")) return false;
  if (m == "PUT" || m == "DELETE") return true;  // identities, modules, purge, C2D complete / reject
  if (s.size() == 1) return true;                // GET /devices (list), POST /devices (bulk)
  if (m == "POST") {
    if (s.size() == 2 && iequals(s[1], "query")) return true;
    for (auto& seg : s)
      if (iequals(seg, "devicebound")) return true;  // C2D abandon
  }
  return false;
}

void http_api::dispatch(call& c) {
  const auto& s = c.target.segments;
  if (s.empty()) return c.respond(not_found_route(c.req));
  const auto& first = s[0];
  if (iequals(first, "devices")) return route_devices(c);
  if (iequals(first, "twins")) return route_twins(c);
  if (iequals(first, "messages")) return route_messages(c);
  if (iequals(first, "statistics") && s.size() == 2) {
    if (c.req.method != "GET") return c.respond(not_allowed(c.req, "GET"));
    if (iequals(s[1], "devices")) {
      if (authorize_service(c, registry_read, "GET /statistics/devices")) device_statistics(c);
      return;
    }
    if (iequals(s[1], "service")) {
      if (authorize_service(c, service_connect, "GET /statistics/service")) service_statistics(c);
      return;
    }
  }
  if (iequals(first, "jobs")) return c.respond(not_supported("jobs (import/export and scheduled jobs)"));
  if (iequals(first, "configurations")) return c.respond(not_supported("automatic device configurations"));
  if (iequals(first, "digitaltwins")) return c.respond(not_supported("digital twins (IoT Plug and Play)"));
  c.respond(not_found_route(c.req));
}

void http_api::route_devices(call& c) {
  const auto& s = c.target.segments;
  const auto& m = c.req.method;
  const auto n = s.size();
  if (n == 1) {
    if (m == "GET") {
      if (authorize_service(c, registry_read, "GET /devices")) list_devices(c);
    } else if (m == "POST") {
      if (authorize_service(c, registry_write, "POST /devices (bulk registry operation)")) bulk_registry(c);
    } else {
      c.respond(not_allowed(c.req, "GET, POST"));
    }
    return;
  }
  const std::string& id = s[1];
  if (n == 2) {
    if (m == "POST" && iequals(id, "query")) {
      if (authorize_service(c, service_connect, "POST /devices/query")) run_query(c);
    } else if (m == "GET") {
      if (authorize_service(c, registry_read, "GET /devices/{id}")) get_identity(c, id, {});
    } else if (m == "PUT") {
      if (authorize_service(c, registry_write, "PUT /devices/{id}")) put_identity(c, id, {});
    } else if (m == "DELETE") {
      if (authorize_service(c, registry_write, "DELETE /devices/{id}")) delete_identity(c, id, {});
    } else {
      c.respond(not_allowed(c.req, "GET, PUT, DELETE"));
    }
    return;
  }
  const auto& what = s[2];
  if (iequals(what, "modules")) {
    if (n == 3) {
      if (m != "GET") return c.respond(not_allowed(c.req, "GET"));
      if (authorize_service(c, registry_read, "GET /devices/{id}/modules")) list_modules(c, id);
      return;
    }
    const std::string& mid = s[3];
    if (n == 4) {
      if (m == "GET") {
        if (authorize_service(c, registry_read, "GET /devices/{id}/modules/{mid}")) get_identity(c, id, mid);
      } else if (m == "PUT") {
        if (authorize_service(c, registry_write, "PUT /devices/{id}/modules/{mid}")) put_identity(c, id, mid);
      } else if (m == "DELETE") {
        if (authorize_service(c, registry_write, "DELETE /devices/{id}/modules/{mid}")) delete_identity(c, id, mid);
      } else {
        c.respond(not_allowed(c.req, "GET, PUT, DELETE"));
      }
      return;
    }
    if (n == 6 && iequals(s[4], "messages") && iequals(s[5], "events")) {
      if (m != "POST") return c.respond(not_allowed(c.req, "POST"));
      if (auto who = authorize_device(c, id, mid)) send_events(c, *who);
      return;
    }
    return c.respond(not_found_route(c.req));
  }
  if (iequals(what, "commands") && n == 3) {
    if (m != "DELETE") return c.respond(not_allowed(c.req, "DELETE"));
    if (authorize_service(c, service_connect, "DELETE /devices/{id}/commands")) purge_c2d(c, id);
    return;
  }
  if (iequals(what, "messages") && n >= 4) {
    if (iequals(s[3], "events") && n == 4) {
      if (m != "POST") return c.respond(not_allowed(c.req, "POST"));
      if (auto who = authorize_device(c, id, {})) send_events(c, *who);
      return;
    }
    if (iequals(s[3], "devicebound")) {
      if (n == 4) {
        if (m != "GET") return c.respond(not_allowed(c.req, "GET"));
        if (auto who = authorize_device(c, id, {})) receive_c2d(c, *who);
        return;
      }
      if (n == 5) {
        if (m != "DELETE") return c.respond(not_allowed(c.req, "DELETE"));
        if (auto who = authorize_device(c, id, {}))
          settle_c2d(c, *who, s[4], c.target.has_query("reject") ? settle::reject : settle::complete);
        return;
      }
      if (n == 6 && iequals(s[5], "abandon")) {
        if (m != "POST") return c.respond(not_allowed(c.req, "POST"));
        if (auto who = authorize_device(c, id, {})) settle_c2d(c, *who, s[4], settle::abandon);
        return;
      }
    }
    return c.respond(not_found_route(c.req));
  }
  if (iequals(what, "files")) return c.respond(not_supported("file uploads"));
  if (iequals(what, "applyConfigurationContent")) return c.respond(not_supported("configurations"));
  c.respond(not_found_route(c.req));
}

void http_api::route_twins(call& c) {
  const auto& s = c.target.segments;
  const auto& m = c.req.method;
  const auto n = s.size();
  if (n < 2) return c.respond(not_found_route(c.req));
  const std::string& id = s[1];
  std::string mid;
  std::size_t rest = 2;  // index of the first segment after the identity
  if (n >= 4 && iequals(s[2], "modules")) {
    mid = s[3];
    rest = 4;
  }
  if (n == rest) {
    if (m == "GET") {
      // Twin reads: ServiceConnect, or RegistryRead as the SAS documentation allows (semantics §1.2).
      if (authorize_service(c, service_connect | registry_read, "GET /twins/{id}")) get_twin(c, id, mid);
    } else if (m == "PATCH" || m == "PUT") {
      if (authorize_service(c, service_connect, m + " /twins/{id}")) update_twin(c, id, mid, m == "PUT");
    } else {
      c.respond(not_allowed(c.req, "GET, PATCH, PUT"));
    }
    return;
  }
  if (n == rest + 1 && iequals(s[rest], "methods")) {
    if (m != "POST") return c.respond(not_allowed(c.req, "POST"));
    if (authorize_service(c, service_connect, "POST /twins/{id}/methods")) invoke_method(c, id, mid);
    return;
  }
  c.respond(not_found_route(c.req));
}

void http_api::route_messages(call& c) {
  const auto& s = c.target.segments;
  const auto& m = c.req.method;
  const auto n = s.size();
  if (n >= 3 && iequals(s[1], "serviceBound")) {
    if (iequals(s[2], "feedback")) {
      if (n == 3) {
        if (m != "GET") return c.respond(not_allowed(c.req, "GET"));
        if (authorize_service(c, service_connect, "GET /messages/serviceBound/feedback")) receive_feedback(c);
        return;
      }
      if (n == 4) {
        if (m != "DELETE") return c.respond(not_allowed(c.req, "DELETE"));
        if (authorize_service(c, service_connect, "DELETE /messages/serviceBound/feedback/{lockToken}"))
          settle_feedback(c, s[3], false);
        return;
      }
      if (n == 5 && iequals(s[4], "abandon")) {
        if (m != "POST") return c.respond(not_allowed(c.req, "POST"));
        if (authorize_service(c, service_connect, "POST /messages/serviceBound/feedback/{lockToken}/abandon"))
          settle_feedback(c, s[3], true);
        return;
      }
    }
    if (iequals(s[2], "filenotifications")) return c.respond(not_supported("file upload notifications"));
  }
  c.respond(not_found_route(c.req));
}

bool http_api::authorize_service(call& c, std::uint32_t rights, std::string_view what) {
  const auto* header = c.req.find("Authorization");
  if (!header || header->empty()) {
    c.respond(unauthorized_response(std::string(what) + " needs an Authorization header with a SharedAccessSignature "
                                                        "token of a shared access policy that has " +
                                    rights_any(rights)));
    return false;
  }
  auto token = parse_sas_token(*header);
  if (!token) {
    c.respond(unauthorized_response("the Authorization header is not a valid SAS token: " + token.err().message));
    return false;
  }
  if (token->key_name.empty()) {
    c.respond(unauthorized_response(std::string(what) + " needs a shared access policy token (with skn=<policy>); a "
                                                        "device or module key cannot call the service API"));
    return false;
  }
  auto policy = reg_.get_policy(token->key_name);
  if (!policy) {
    c.respond(unauthorized_response(policy.err().code == errc::not_found
                                        ? "no shared access policy named '" + token->key_name + "'"
                                        : "cannot check the token: " + policy.err().message));
    return false;
  }
  // Any host is accepted (the SDK signs quote_plus(HostName), port included). A token scoped below the hub
  // ("host/devices") covers only the requests under that path.
  std::string path;
  for (auto& seg : c.target.segments) path += "/" + seg;
  std::string target = std::string(resource_host(token->resource)) + path;
  if (!resource_covers(token->resource, target)) {
    c.respond(unauthorized_response("the SAS token's resource '" + token->resource + "' does not cover " + path));
    return false;
  }
  if (auto v = verify_sas_token(*token, {policy->primary_key, policy->secondary_key}, unix_now_s()); !v) {
    c.respond(unauthorized_response(v.err().message));
    return false;
  }
  if (!(policy->rights & rights)) {
    auto have = rights_to_string(policy->rights);
    c.respond(unauthorized_response(std::string(what) + " needs the " + rights_any(rights) +
                                    " permission; shared access policy '" + policy->name + "' has " +
                                    (have.empty() ? std::string("no permissions") : have)));
    return false;
  }
  return true;
}

std::optional<http_api::device_caller> http_api::authorize_device(call& c, const std::string& device_id,
                                                                  const std::string& module_id) {
  const std::string who = module_id.empty() ? "device '" + device_id + "'"
                                            : "module '" + module_id + "' of device '" + device_id + "'";
  const auto* header = c.req.find("Authorization");
  if (!header || header->empty()) {
    c.respond(unauthorized_response("the request has no Authorization header; send a SharedAccessSignature token "
                                    "for " + who));
    return std::nullopt;
  }
  auto token = parse_sas_token(*header);
  if (!token) {
    c.respond(unauthorized_response("the Authorization header is not a valid SAS token: " + token.err().message));
    return std::nullopt;
  }
  auto rec = reg_.get(device_id, module_id);
  if (!rec) {
    // Unknown identities fail like bad credentials: IoT Hub does not tell strangers which ids exist.
    c.respond(unauthorized_response(rec.err().code == errc::not_found ? who + " is not registered"
                                                                       : "cannot check the token: " +
                                                                             rec.err().message));
    return std::nullopt;
  }
  // As engine::authenticate does for MQTT: the token must cover the identity's resource on its own host.
  std::string target = std::string(resource_host(token->resource)) + "/devices/" + device_id;
  if (!module_id.empty()) target += "/modules/" + module_id;
  if (!resource_covers(token->resource, target)) {
    c.respond(unauthorized_response("the SAS token's resource '" + token->resource + "' does not cover " + who));
    return std::nullopt;
  }
  device_caller caller;
  std::vector<std::string> keys;
  if (token->key_name.empty()) {
    if (rec->auth != auth_type::sas) {
      c.respond(unauthorized_response(who + " does not use SAS authentication (it uses " + to_string(rec->auth) + ")"));
      return std::nullopt;
    }
    keys = {rec->primary_key, rec->secondary_key};
    caller.auth = connection_auth::sas;
  } else {
    auto policy = reg_.get_policy(token->key_name);
    if (!policy) {
      c.respond(unauthorized_response("no shared access policy named '" + token->key_name + "'"));
      return std::nullopt;
    }
    if (!(policy->rights & device_connect)) {
      c.respond(unauthorized_response("shared access policy '" + policy->name +
                                      "' lacks DeviceConnect, which the device API needs"));
      return std::nullopt;
    }
    keys = {policy->primary_key, policy->secondary_key};
    caller.auth = connection_auth::sas_token;
  }
  if (auto v = verify_sas_token(*token, keys, unix_now_s()); !v) {
    c.respond(unauthorized_response(v.err().message));
    return std::nullopt;
  }
  // Checked after the signature, so only a holder of valid credentials learns that the device is disabled.
  bool enabled = rec->enabled;
  if (enabled && !module_id.empty())
    if (auto parent = reg_.get(device_id); parent && !parent->enabled) enabled = false;
  if (!enabled) {
    c.respond(error_response(403, 403012, "DeviceDisabled",
                             "device '" + device_id + "' is disabled; enable it in the registry to use it"));
    return std::nullopt;
  }
  caller.record = std::move(*rec);
  return caller;
}

proto::http::response http_api::error_for(registry& reg, const error& e, std::string_view device_id,
                                          std::string_view module_id, error_scope scope) {
  if (e.code == errc::not_found && !module_id.empty()) {
    auto parent = reg.get(device_id);
    scope = parent ? error_scope::module : error_scope::device;
  } else if ((e.code == errc::already_exists) && !module_id.empty()) {
    scope = error_scope::module;
  }
  return error_response(to_rest_error(e, scope));
}

}  // namespace fleethub::hub
