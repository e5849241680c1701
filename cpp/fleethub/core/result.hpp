// result<T>: a value or an error, for expected failures in proto/, store/ and hub/ (no exceptions on hot paths).
// Error strategy of the whole core: things that should never happen throw; expected misses and bad input
// come back as an `error` with a stable code and a human message that says what to do.
#pragma once
#include <string>
#include <utility>
#include <variant>

namespace fleethub {

enum class errc {
  ok = 0,
  invalid_argument,   // malformed input from a client or caller
  not_found,          // no such device / key / offset
  already_exists,     // create of an existing id
  precondition_failed,// etag mismatch
  unauthorized,       // bad credentials
  forbidden,          // authenticated, but not allowed
  too_large,          // size limit exceeded
  storage,            // the store failed (disk full, map full, corrupt)
  schema_mismatch,    // data dir written by an incompatible version
  unavailable,        // shutting down / overloaded
  not_connected,      // the device is offline or not subscribed (IoT Hub 404103 DeviceNotOnline)
  timeout,            // the device did not answer in time (IoT Hub 504101 GatewayTimeout)
};

struct error {
  errc code = errc::ok;
  std::string message;
};

template <class T>
class result {
 public:
  result(T v) : v_(std::move(v)) {}                 // NOLINT(implicit)
  result(error e) : v_(std::move(e)) {}             // NOLINT(implicit)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const error& err() const { return std::get<1>(v_); }

 private:
  std::variant<T, error> v_;
};

template <>
class result<void> {
 public:
  result() = default;
  result(error e) : e_(std::move(e)) {}             // NOLINT(implicit)
  bool ok() const { return e_.code == errc::ok; }
  explicit operator bool() const { return ok(); }
  const error& err() const { return e_; }

 private:
  error e_;
};

inline error make_error(errc c, std::string msg) { return error{c, std::move(msg)}; }
const char* to_string(errc c);

}  // namespace fleethub
