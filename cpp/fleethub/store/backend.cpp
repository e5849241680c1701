#include "fleethub/store/backend.hpp"

#include <future>

namespace fleethub::store {

const char* table_name(table t) {
  switch (t) {
    case table::devices: return "devices";
    case table::modules: return "modules";
    case table::policies: return "policies";
    case table::sessions: return "sessions";
    case table::session_outbound: return "session_outbound";
    case table::meta: return "meta";
    case table::twins: return "twins";
    case table::c2d: return "c2d";
    case table::c2d_feedback_pending: return "c2d_feedback_pending";
    case table::c2d_feedback: return "c2d_feedback";
  }
  return "unknown";
}

// Must not be called from a commit callback (the writer thread would wait for itself).
commit_result backend::submit_and_wait(write_batch batch) {
  auto done = std::make_shared<std::promise<commit_result>>();
  auto fut = done->get_future();
  submit(std::move(batch), [done](const commit_result& r) { done->set_value(r); });
  return fut.get();
}

}  // namespace fleethub::store
