// Telemetry of every connection of one io thread (MQTT publishes and HTTPS event POSTs alike), collected
// during one turn of its event loop and handed to the store as one write batch: a thousand devices each
// sending one message per read cost one store submission and one commit callback, not a thousand.
// Thread safety: one stage per io thread (thread_local); add() only from that thread.
#pragma once
#include <utility>
#include <boost/asio/any_io_executor.hpp>
#include <vector>

#include "fleethub/hub/engine.hpp"
#include "fleethub/store/backend.hpp"

namespace fleethub::net {

class telemetry_stage {
 public:
  // The calling thread's stage.
  static telemetry_stage& here();

  // Queues `messages` (moved out) for the batch this loop turn flushes; `done` (may be empty) runs on the
  // store's writer thread once that batch is durable or failed. The first add of a turn posts the flush to
  // `ex` (the calling thread's io_context), so it runs after the turn's other ready handlers.
  void add(hub::engine& engine, const boost::asio::any_io_executor& ex, std::vector<hub::publish_telemetry>& messages,
           store::commit_callback done);

 private:
  void flush();
  std::vector<hub::publish_telemetry> messages_;
  std::vector<store::commit_callback> callbacks_;
  hub::engine* engine_ = nullptr;
  bool posted_ = false;
};

}  // namespace fleethub::net
