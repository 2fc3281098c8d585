// The consoles' position feed: which units each console has yet to hear about, coalesced
// (a unit that moved five times since the last flush is sent once, newest position), and
// what happens at the limits: above `soft_bytes` queued, positions wait (still
// coalesced, so the pending set never exceeds the fleet); above `hard_bytes` the console
// is dropped. Status and incident changes do not pass here (they always go). Pure code
// on the engine thread; rendering, queue sizes and delivery are callbacks.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace dispatch::net {

class ConsoleFeed {
 public:
  using ConnId = std::uint64_t;
  using Text = std::shared_ptr<const std::string>;

  struct Limits {
    std::size_t soft_bytes = 1 << 20;
    std::size_t hard_bytes = 16 << 20;
    std::size_t batch_frame_bytes = 48 * 1024;  // ?batch=1 consoles: arrays up to this size
  };

  explicit ConsoleFeed(Limits limits) : limits_(limits) {}

  void add(ConnId id, bool batch_frames) { consoles_[id].batch = batch_frames; }
  void remove(ConnId id) { consoles_.erase(id); }
  bool contains(ConnId id) const { return consoles_.count(id) != 0; }
  std::size_t size() const { return consoles_.size(); }
  std::size_t pending(ConnId id) const {
    auto it = consoles_.find(id);
    return it == consoles_.end() ? 0 : it->second.pending.size();
  }
  std::vector<ConnId> ids() const {
    std::vector<ConnId> v;
    v.reserve(consoles_.size());
    for (const auto& [id, c] : consoles_) v.push_back(id);
    return v;
  }

  // Units (by slot) whose position changed since the last call.
  void moved(std::span<const std::uint32_t> slots) {
    for (auto& [id, c] : consoles_) mark(c, slots);
  }

  // One flush: for each console, by its queued bytes, sends its pending units, lets them
  // wait, or drops the console (removed here; `drop(id)` closes it).
  //   queued(id) -> std::size_t       bytes queued to that console now
  //   render(slot) -> Text            the unit object (called once per slot per flush)
  //   deliver(id, std::vector<Text>)  frames for that console
  //   drop(id)                        the console is too slow
  template <class Queued, class Render, class Deliver, class Drop>
  void flush(Queued&& queued, Render&& render, Deliver&& deliver, Drop&& drop) {
    cache_.clear();
    std::vector<ConnId> to_drop;
    for (auto& [id, c] : consoles_) {
      if (c.pending.empty()) continue;
      const std::size_t q = queued(id);
      if (q > limits_.hard_bytes) {
        to_drop.push_back(id);
        continue;
      }
      if (q > limits_.soft_bytes) continue;  // newest positions wait, coalesced
      std::vector<Text> frames;
      std::string arr;
      for (auto slot : c.pending) {
        c.is_pending[slot] = false;
        const Text& t = cached(slot, render);
        if (!t) continue;
        if (c.batch) {
          // Close the array before it would grow past the limit (one object alone may).
          if (!arr.empty() && arr.size() + t->size() + 2 > limits_.batch_frame_bytes) {
            arr += ']';
            frames.push_back(std::make_shared<const std::string>(std::move(arr)));
            arr.clear();
          }
          arr += arr.empty() ? '[' : ',';
          arr += *t;
        } else {
          frames.push_back(t);
        }
      }
      if (!arr.empty()) {
        arr += ']';
        frames.push_back(std::make_shared<const std::string>(std::move(arr)));
      }
      c.pending.clear();
      if (!frames.empty()) deliver(id, std::move(frames));
    }
    for (ConnId id : to_drop) {
      consoles_.erase(id);
      drop(id);
    }
    cache_.clear();
  }

 private:
  struct Console {
    bool batch = false;
    std::vector<std::uint32_t> pending;
    std::vector<bool> is_pending;
  };
  static void mark(Console& c, std::span<const std::uint32_t> slots) {
    for (auto slot : slots) {
      if (c.is_pending.size() <= slot) c.is_pending.resize(slot + 1, false);
      if (!c.is_pending[slot]) {
        c.is_pending[slot] = true;
        c.pending.push_back(slot);
      }
    }
  }
  template <class Render>
  const Text& cached(std::uint32_t slot, Render& render) {
    auto [it, fresh] = cache_.try_emplace(slot);
    if (fresh) it->second = render(slot);
    return it->second;
  }

  Limits limits_;
  std::unordered_map<ConnId, Console> consoles_;
  std::unordered_map<std::uint32_t, Text> cache_;
};

}  // namespace dispatch::net
