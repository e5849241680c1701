#include "fleethub/core/result.hpp"

namespace fleethub {

const char* to_string(errc c) {
  switch (c) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_found: return "not_found";
    case errc::already_exists: return "already_exists";
    case errc::precondition_failed: return "precondition_failed";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::too_large: return "too_large";
    case errc::storage: return "storage";
    case errc::schema_mismatch: return "schema_mismatch";
    case errc::unavailable: return "unavailable";
    case errc::not_connected: return "not_connected";
    case errc::timeout: return "timeout";
  }
  return "unknown";
}

}  // namespace fleethub
