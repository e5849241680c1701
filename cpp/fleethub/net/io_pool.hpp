// A pool of io_contexts, one thread each (architecture.md §3): a connection lives on one context for its
// whole life, so its state needs no locks; cross-connection work is posted to the owning context.
// Each context also ticks its connections' deadlines (tick_list) every `tick_interval`.
#pragma once
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without including it
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "fleethub/net/commit_queue.hpp"
#include "fleethub/net/tick_list.hpp"

namespace fleethub::net {

class io_pool {
 public:
  // threads == 0: one per CPU this process may run on (its affinity mask, not the machine's core count).
  explicit io_pool(std::size_t threads, std::chrono::milliseconds tick_interval = std::chrono::milliseconds(250));
  ~io_pool();
  void start();
  void stop();  // stops every context and joins the threads; idempotent
  std::size_t next_index();  // round robin
  boost::asio::io_context& at(std::size_t i) { return *contexts_[i]; }
  tick_list& ticks(std::size_t i) { return *ticks_[i]; }
  commit_queue& commits(std::size_t i) { return *commits_[i]; }
  std::size_t size() const { return contexts_.size(); }
  // The io_context whose thread is calling (null on any other thread).
  static boost::asio::io_context* current();

 private:
  using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  void arm(std::size_t i);
  // Declaration order is destruction order reversed: timers go before their contexts, and the tick lists
  // outlive the contexts (sessions destroyed with a context's pending handlers still unregister).
  std::vector<std::unique_ptr<tick_list>> ticks_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> timers_;
  std::vector<std::unique_ptr<commit_queue>> commits_;
  std::vector<guard> guards_;
  std::vector<std::thread> threads_;
  std::chrono::milliseconds tick_interval_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace fleethub::net
