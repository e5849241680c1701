#include "fleethub/net/io_pool.hpp"

#include <sched.h>

namespace fleethub::net {

io_pool::io_pool(std::size_t threads, std::chrono::milliseconds tick_interval) : tick_interval_(tick_interval) {
  if (threads == 0) {
    // A hub pinned to one core (taskset) gains nothing from a second I/O thread, only context switches.
    cpu_set_t set;
    CPU_ZERO(&set);
    threads = sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<std::size_t>(CPU_COUNT(&set))
                                                          : std::max(1u, std::thread::hardware_concurrency());
    threads = std::max<std::size_t>(threads, 1);
  }
  for (std::size_t i = 0; i < threads; ++i) {
    ticks_.push_back(std::make_unique<tick_list>());
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    timers_.push_back(std::make_unique<boost::asio::steady_timer>(*contexts_.back()));
    commits_.push_back(std::make_unique<commit_queue>(*contexts_.back()));
  }
}

io_pool::~io_pool() {
  stop();
  timers_.clear();
  commits_.clear();
}

void io_pool::arm(std::size_t i) {
  timers_[i]->expires_after(tick_interval_);
  timers_[i]->async_wait([this, i](const boost::system::error_code& ec) {
    if (ec) return;
    ticks_[i]->tick(std::chrono::steady_clock::now());
    arm(i);
  });
}

namespace {
thread_local boost::asio::io_context* current_context = nullptr;
}  // namespace

boost::asio::io_context* io_pool::current() { return current_context; }

void io_pool::start() {
  if (!threads_.empty()) return;
  for (std::size_t i = 0; i < contexts_.size(); ++i) {
    guards_.emplace_back(contexts_[i]->get_executor());
    arm(i);
    threads_.emplace_back([ctx = contexts_[i].get()] {
      current_context = ctx;
      ctx->run();
      current_context = nullptr;
    });
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
