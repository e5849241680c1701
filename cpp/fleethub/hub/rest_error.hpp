// IoT Hub's REST error model (semantics.md §10) and the response builders of the REST API: an error is an
// HTTP status, an `iothub-errorcode` header with the symbolic name, and the JSON envelope
// {"errorCode":<6 digits>,"trackingId":"<uuid>","message":"...","info":{},"timestampUtc":"<iso>"}.
// to_rest_error() maps the core's errc (result.hpp) to IoT Hub's code for the context the error came from.
// Pure functions; thread-safe.
#pragma once
#include <string>

#include "fleethub/core/json.hpp"
#include "fleethub/core/result.hpp"
#include "fleethub/proto/http/message.hpp"

namespace fleethub::hub {

struct rest_error {
  int status = 500;
  int code = 500001;
  std::string name = "ServerError";
  std::string message;
};

// What the failing operation was about; picks the IoT Hub code where one errc means different things.
enum class error_scope {
  device,     // not_found -> 404001 DeviceNotFound, already_exists -> 409001 DeviceAlreadyExists
  module,     // not_found -> 404010 ModuleNotFound, already_exists -> 409301 ModuleAlreadyExistsOnDevice
  method,     // forbidden -> 403800 DeviceMaximumInflightMethodExceeded
  c2d,        // forbidden -> 403004 DeviceMaximumQueueDepthExceeded; precondition_failed -> 412002 lock lost
};

rest_error to_rest_error(const error& e, error_scope scope = error_scope::device);

inline constexpr const char* json_content_type = "application/json; charset=utf-8";

proto::http::response error_response(const rest_error& e);
proto::http::response error_response(int status, int code, std::string name, std::string message);
// 401 IotHubUnauthorized (401003).
proto::http::response unauthorized_response(std::string message);
// `status` with the compact JSON body and the JSON content type.
proto::http::response json_response(int status, const json::value& body);
// A bodiless answer (204).
proto::http::response empty_response(int status);

}  // namespace fleethub::hub
