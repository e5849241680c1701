// Per-thread deadline checks: instead of one Asio timer per connection (~200 bytes each, plus a pending
// wait), each io_context thread ticks its connections a few times a second. Thread safety: one list per
// io_context, touched only from that context's thread.
#pragma once
#include <cstddef>
#include <limits>
#include <vector>

#include "fleethub/core/clock.hpp"

namespace fleethub::net {

class ticking {
 public:
  virtual ~ticking() = default;
  virtual void on_tick(steady_time now) = 0;

 private:
  friend class tick_list;
  std::size_t tick_slot_ = std::numeric_limits<std::size_t>::max();
};

class tick_list {
 public:
  void add(ticking* t) {
    t->tick_slot_ = items_.size();
    items_.push_back(t);
  }
  void remove(ticking* t) {
    auto i = t->tick_slot_;
    if (i >= items_.size() || items_[i] != t) return;
    items_[i] = items_.back();
    items_[i]->tick_slot_ = i;
    items_.pop_back();
    t->tick_slot_ = std::numeric_limits<std::size_t>::max();
  }
  // Backwards, so an item that removes itself during its tick only swaps in one already ticked.
  void tick(steady_time now) {
    for (std::size_t i = items_.size(); i-- > 0;)
      if (i < items_.size()) items_[i]->on_tick(now);
  }
  std::size_t size() const { return items_.size(); }

 private:
  std::vector<ticking*> items_;
};

}  // namespace fleethub::net
