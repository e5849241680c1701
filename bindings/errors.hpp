// The one translator from C++ errors to Python exceptions (fleethub.errors): every binding that gets an
// `error` back calls raise(); nothing else in bindings/ builds Python exceptions.
#pragma once
#include "fleethub/core/result.hpp"

namespace fleethub::bindings {

[[noreturn]] void raise(const error& e);
// The fleethub.errors class name for a code (for errors handed to Python as values, e.g. async completions).
const char* error_class_name(errc c);

template <class T>
T unwrap(result<T>&& r) {
  if (!r) raise(r.err());
  return std::move(r).value();
}
inline void unwrap(result<void>&& r) {
  if (!r) raise(r.err());
}

}  // namespace fleethub::bindings
