// A pool of io_contexts, one thread each (architecture.md §3): a connection lives on one context for its
// whole life, so its state needs no locks; cross-connection work is posted to the owning context.
#pragma once
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without including it
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace fleethub::net {

class io_pool {
 public:
  explicit io_pool(std::size_t threads);
  ~io_pool();
  void start();
  void stop();  // stops every context and joins the threads; idempotent
  boost::asio::io_context& next();  // round robin
  boost::asio::io_context& at(std::size_t i) { return *contexts_[i]; }
  std::size_t size() const { return contexts_.size(); }

 private:
  using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<guard> guards_;
  std::vector<std::thread> threads_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace fleethub::net
