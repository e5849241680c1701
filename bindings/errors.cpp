#include "errors.hpp"

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fleethub::bindings {

const char* error_class_name(errc c) {
  const char* cls = "Error";
  switch (c) {
    case errc::invalid_argument: cls = "InvalidArgumentError"; break;
    case errc::not_found: cls = "NotFoundError"; break;
    case errc::already_exists: cls = "AlreadyExistsError"; break;
    case errc::precondition_failed: cls = "PreconditionFailedError"; break;
    case errc::unauthorized: cls = "UnauthorizedError"; break;
    case errc::forbidden: cls = "ForbiddenError"; break;
    case errc::too_large: cls = "TooLargeError"; break;
    case errc::storage: cls = "StorageError"; break;
    case errc::schema_mismatch: cls = "SchemaMismatchError"; break;
    case errc::unavailable: cls = "UnavailableError"; break;
    case errc::not_connected: cls = "DeviceNotOnlineError"; break;
    case errc::timeout: cls = "MethodTimeoutError"; break;
    case errc::ok: break;
  }
  return cls;
}

void raise(const error& e) {
  const char* cls = error_class_name(e.code);
  py::object type = py::module_::import("fleethub.errors").attr(cls);
  PyErr_SetObject(type.ptr(), py::str(e.message).ptr());
  throw py::error_already_set();
}

}  // namespace fleethub::bindings
