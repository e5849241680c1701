// Hands store-commit completions back to an io_context in batches: the store's writer thread pushes one item
// per committed telemetry batch, and only the first push into an empty queue posts a drain. One group
// commit that covers many connections of a thread thus costs that thread one wake-up, not one per connection.
// The same holds for other completions computed off-thread (HTTPS responses after a commit or a method
// answer): push_task() queues a closure for the same drain.
// Thread safety: push() and push_task() from any thread; drain runs on the owning io_context.
#pragma once
#include <utility>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fleethub::net {

class commit_listener {
 public:
  virtual ~commit_listener() = default;
  virtual void on_committed(std::vector<std::uint16_t>& acks, bool ok, const std::string& error) = 0;
};

class commit_queue {
 public:
  explicit commit_queue(boost::asio::io_context& ctx) : ctx_(ctx) {}

  void push(std::shared_ptr<commit_listener> who, std::vector<std::uint16_t> acks, bool ok, std::string error) {
    bool post = false;
    {
      std::lock_guard lk(mu_);
      items_.push_back({std::move(who), std::move(acks), ok, std::move(error)});
      post = !posted_;
      posted_ = true;
    }
    if (post) boost::asio::post(ctx_, [this] { drain(); });
  }

  void push_task(std::function<void()> task) {
    bool post = false;
    {
      std::lock_guard lk(mu_);
      tasks_.push_back(std::move(task));
      post = !posted_;
      posted_ = true;
    }
    if (post) boost::asio::post(ctx_, [this] { drain(); });
  }

 private:
  struct item {
    std::shared_ptr<commit_listener> who;
    std::vector<std::uint16_t> acks;
    bool ok;
    std::string error;
  };
  void drain() {
    {
      std::lock_guard lk(mu_);
      draining_.swap(items_);
      draining_tasks_.swap(tasks_);
      posted_ = false;
    }
    for (auto& i : draining_) i.who->on_committed(i.acks, i.ok, i.error);
    draining_.clear();
    for (auto& t : draining_tasks_) t();
    draining_tasks_.clear();
  }

  boost::asio::io_context& ctx_;
  std::mutex mu_;
  std::vector<item> items_;
  std::vector<item> draining_;  // only touched on the io_context thread
  std::vector<std::function<void()>> tasks_;
  std::vector<std::function<void()>> draining_tasks_;
  bool posted_ = false;
};

}  // namespace fleethub::net
