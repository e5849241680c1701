#include "fleethub/net/io_pool.hpp"

namespace fleethub::net {

io_pool::io_pool(std::size_t threads, std::chrono::milliseconds tick_interval) : tick_interval_(tick_interval) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (std::size_t i = 0; i < threads; ++i) {
    ticks_.push_back(std::make_unique<tick_list>());
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    timers_.push_back(std::make_unique<boost::asio::steady_timer>(*contexts_.back()));
  }
}

io_pool::~io_pool() {
  stop();
  timers_.clear();
}

void io_pool::arm(std::size_t i) {
  timers_[i]->expires_after(tick_interval_);
  timers_[i]->async_wait([this, i](const boost::system::error_code& ec) {
    if (ec) return;
    ticks_[i]->tick(std::chrono::steady_clock::now());
    arm(i);
  });
}

void io_pool::start() {
  if (!threads_.empty()) return;
  for (std::size_t i = 0; i < contexts_.size(); ++i) {
    guards_.emplace_back(contexts_[i]->get_executor());
    arm(i);
    threads_.emplace_back([ctx = contexts_[i].get()] { ctx->run(); });
  }
}

void io_pool::stop() {
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

std::size_t io_pool::next_index() { return next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size(); }

}  // namespace fleethub::net
