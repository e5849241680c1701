#include "fleethub/net/telemetry_stage.hpp"

#include <boost/asio/post.hpp>

namespace fleethub::net {

telemetry_stage& telemetry_stage::here() {
  thread_local telemetry_stage s;
  return s;
}

void telemetry_stage::add(hub::engine& engine, const boost::asio::any_io_executor& ex,
                          std::vector<hub::publish_telemetry>& messages, store::commit_callback done) {
  if (engine_ && engine_ != &engine) flush();  // another hub on this thread (tests): keep batches apart
  engine_ = &engine;
  if (messages_.empty()) {
    messages_.swap(messages);
  } else {
    for (auto& m : messages) messages_.push_back(std::move(m));
    messages.clear();
  }
  if (done) callbacks_.push_back(std::move(done));
  if (!posted_) {
    posted_ = true;
    boost::asio::post(ex, [this] { flush(); });
  }
}

void telemetry_stage::flush() {
  posted_ = false;
  if (messages_.empty() && callbacks_.empty()) return;
  std::vector<hub::publish_telemetry> batch;
  batch.swap(messages_);
  messages_.reserve(batch.capacity());
  store::commit_callback done;
  if (callbacks_.size() == 1) {
    done = std::move(callbacks_.front());
  } else if (!callbacks_.empty()) {
    done = [cbs = std::move(callbacks_)](const store::commit_result& r) {
      for (auto& cb : cbs) cb(r);
    };
  }
  callbacks_.clear();
  // QoS 0 alone needs no callback: nothing is acknowledged, and a lost QoS 0 message is within its contract.
  engine_->ingest(std::move(batch), std::move(done));
}

}  // namespace fleethub::net
