#include "fleethub/net/io_pool.hpp"

namespace fleethub::net {

io_pool::io_pool(std::size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (std::size_t i = 0; i < threads; ++i) contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
}

io_pool::~io_pool() { stop(); }

void io_pool::start() {
  if (!threads_.empty()) return;
  for (auto& c : contexts_) {
    guards_.emplace_back(c->get_executor());
    threads_.emplace_back([ctx = c.get()] { ctx->run(); });
  }
}

void io_pool::stop() {
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

boost::asio::io_context& io_pool::next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

}  // namespace fleethub::net
