#include "fleethub/hub/rest_error.hpp"

#include <chrono>
#include <utility>

#include "fleethub/core/clock.hpp"
#include "fleethub/core/crypto.hpp"
#include "fleethub/core/encoding.hpp"

namespace fleethub::hub {

rest_error to_rest_error(const error& e, error_scope scope) {
  auto make = [&](int status, int code, const char* name) { return rest_error{status, code, name, e.message}; };
  switch (e.code) {
    case errc::invalid_argument: return make(400, 400004, "ArgumentInvalid");
    case errc::not_found:
      return scope == error_scope::module ? make(404, 404010, "ModuleNotFound") : make(404, 404001, "DeviceNotFound");
    case errc::already_exists:
      return scope == error_scope::module ? make(409, 409301, "ModuleAlreadyExistsOnDevice")
                                          : make(409, 409001, "DeviceAlreadyExists");
    case errc::precondition_failed:
      return scope == error_scope::c2d ? make(412, 412002, "DeviceMessageLockLost")
                                       : make(412, 412001, "PreconditionFailed");
    case errc::unauthorized: return make(401, 401003, "IotHubUnauthorized");
    case errc::forbidden:
      if (scope == error_scope::c2d) return make(403, 403004, "DeviceMaximumQueueDepthExceeded");
      if (scope == error_scope::method) return make(403, 403800, "DeviceMaximumInflightMethodExceeded");
      return make(403, 403000, "Forbidden");
    case errc::too_large: return make(413, 413001, "MessageTooLarge");
    case errc::not_connected: return make(404, 404103, "DeviceNotOnline");
    case errc::timeout: return make(504, 504101, "GatewayTimeout");
    case errc::unavailable: return make(503, 503001, "ServiceUnavailable");
    case errc::ok:
    case errc::storage:
    case errc::schema_mismatch: break;
  }
  return make(500, 500001, "ServerError");
}

proto::http::response error_response(int status, int code, std::string name, std::string message) {
  json::object body;
  body.emplace_back("errorCode", code);
  body.emplace_back("trackingId", new_uuid());
  body.emplace_back("message", std::move(message));
  body.emplace_back("info", json::object{});
  body.emplace_back("timestampUtc", format_iso8601(to_unix_ms(std::chrono::system_clock::now())));
  proto::http::response r;
  r.status = status;
  r.headers.push_back({"iothub-errorcode", std::move(name)});
  r.headers.push_back({"Content-Type", json_content_type});
  r.body = json::serialize(json::value(std::move(body)));
  return r;
}

proto::http::response error_response(const rest_error& e) { return error_response(e.status, e.code, e.name, e.message); }

proto::http::response unauthorized_response(std::string message) {
  return error_response(401, 401003, "IotHubUnauthorized", std::move(message));
}

proto::http::response json_response(int status, const json::value& body) {
  proto::http::response r;
  r.status = status;
  r.headers.push_back({"Content-Type", json_content_type});
  r.body = json::serialize(body);
  return r;
}

proto::http::response empty_response(int status) {
  proto::http::response r;
  r.status = status;
  return r;
}

}  // namespace fleethub::hub
