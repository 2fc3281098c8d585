// The consoles' position feed: which units each console has yet to hear about, coalesced
// (a unit that moved five times since the last flush is sent once, newest position), and
// what happens at the limits: above `soft_bytes` queued, positions wait (still
// coalesced, so the pending set never exceeds the fleet); above `hard_bytes` the console
// is dropped. Status and incident changes do not pass here (they always go). Pure code
// on the engine thread; rendering, queue sizes and delivery are callbacks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dispatch::net {

// WebSocket messages sent one after another out of one buffer: a console flush's positions
// without a string (and a shared_ptr) per message. `text` may be shared by the runs of
// several consoles (a flush renders each unit once).
struct FrameRun {
  std::shared_ptr<const std::string> text;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> spans;  // offset and size of each message
  std::size_t bytes = 0;                                       // the sizes' sum
  std::size_t size() const { return spans.size(); }
  std::string_view at(std::size_t i) const { return {text->data() + spans[i].first, spans[i].second}; }
};

// Unit objects rendered back to back into one buffer: object i is text[begin[i], begin[i+1]).
struct RenderedUnits {
  std::shared_ptr<const std::string> text;
  std::vector<std::uint32_t> begin;  // one more than there are objects
};

class ConsoleFeed {
 public:
  using ConnId = std::uint64_t;
  using Text = std::shared_ptr<const std::string>;

  struct Limits {
    std::size_t soft_bytes = 1 << 20;
    std::size_t hard_bytes = 16 << 20;
    std::size_t batch_frame_bytes = 48 * 1024;  // ?batch=1 consoles: arrays up to this size
    // Units one flush sends a console at most (the oldest pending first; the rest wait,
    // coalesced, for the next flush): a flush's copies and text stay below about 12 MB
    // however many units moved, and its bytes (about 220 a unit) below hard_bytes. At 4
    // flushes a second, 131k units a second per console.
    std::size_t max_flush_units = 32768;
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

  // One flush, planned on the engine thread without rendering anything: for each console,
  // by its queued bytes, its pending units go (listed in `sends`), wait, or the console is
  // dropped (removed here and listed in `dropped`). `slots` holds every unit to render,
  // once, however many consoles take it.
  struct Plan {
    std::vector<std::uint32_t> slots;
    struct Send {
      ConnId console;
      bool batch;
      std::vector<std::uint32_t> slots;
    };
    std::vector<Send> sends;
    std::vector<ConnId> dropped;
  };
  template <class Queued>
  void plan(Queued&& queued, Plan& p) {
    plan(queued, [](ConnId) { return true; }, p);
  }
  // ready(id) false: that console still has a flush on its way (its positions wait,
  // coalesced), so that at most one flush per console is planned and not yet delivered.
  template <class Queued, class Ready>
  void plan(Queued&& queued, Ready&& ready, Plan& p) {
    p.slots.clear();
    p.sends.clear();
    p.dropped.clear();
    for (auto& [id, c] : consoles_) {
      if (c.pending.empty()) continue;
      const std::size_t q = queued(id);
      if (q > limits_.hard_bytes) {
        p.dropped.push_back(id);
        continue;
      }
      if (q > limits_.soft_bytes || !ready(id)) continue;  // newest positions wait, coalesced
      const std::size_t take = std::min(c.pending.size(), std::max<std::size_t>(1, limits_.max_flush_units));
      for (std::size_t i = 0; i < take; ++i) {
        const auto slot = c.pending[i];
        c.is_pending[slot] = false;
        if (!in_plan(slot)) p.slots.push_back(slot);
      }
      if (take == c.pending.size()) {
        p.sends.push_back({id, c.batch, std::move(c.pending)});
        c.pending.clear();
      } else {
        p.sends.push_back({id, c.batch, {c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(take)}});
        c.pending.erase(c.pending.begin(), c.pending.begin() + static_cast<std::ptrdiff_t>(take));
      }
    }
    for (auto slot : p.slots) planned_[slot] = false;
    for (ConnId id : p.dropped) consoles_.erase(id);
  }

  // The frames for one console: each unit's text as its own frame, or (batch consoles)
  // JSON arrays of at most batch_frame_bytes (a single larger unit goes alone).
  static std::vector<Text> frames(const std::vector<const Text*>& texts, bool batch, std::size_t batch_frame_bytes) {
    std::vector<Text> out;
    if (!batch) {
      out.reserve(texts.size());
      for (const Text* t : texts)
        if (*t) out.push_back(*t);
      return out;
    }
    std::string arr;
    for (const Text* t : texts) {
      if (!*t) continue;
      if (!arr.empty() && arr.size() + 1 + (*t)->size() + 1 > batch_frame_bytes) {
        arr += ']';
        out.push_back(std::make_shared<const std::string>(std::move(arr)));
        arr.clear();
      }
      arr += arr.empty() ? '[' : ',';
      arr += **t;
    }
    if (!arr.empty()) {
      arr += ']';
      out.push_back(std::make_shared<const std::string>(std::move(arr)));
    }
    return out;
  }

  // The same frames as frames(), as one run: `index` lists the console's objects in
  // `units`; each is its own message (a span of the shared text), or (batch consoles) the
  // arrays are built into the run's own text.
  static FrameRun run(const RenderedUnits& units, const std::vector<std::uint32_t>& index, bool batch,
                      std::size_t batch_frame_bytes) {
    FrameRun r;
    auto object = [&](std::uint32_t i) {
      return std::string_view(*units.text).substr(units.begin[i], units.begin[i + 1] - units.begin[i]);
    };
    if (!batch) {
      r.text = units.text;
      r.spans.reserve(index.size());
      for (auto i : index) {
        const std::uint32_t n = units.begin[i + 1] - units.begin[i];
        if (n == 0) continue;
        r.spans.emplace_back(units.begin[i], n);
        r.bytes += n;
      }
      return r;
    }
    std::string arr;
    std::size_t total = 0;
    for (auto i : index) total += object(i).size() + 1;
    arr.reserve(total + 1 + total / (batch_frame_bytes ? batch_frame_bytes : 1));
    std::size_t start = 0;
    auto close = [&] {
      arr += ']';
      r.spans.emplace_back(static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(arr.size() - start));
      start = arr.size();
    };
    for (auto i : index) {
      const std::string_view t = object(i);
      if (t.empty()) continue;
      const std::size_t open = arr.size() - start;
      if (open != 0 && open + 1 + t.size() + 1 > batch_frame_bytes) close();
      arr += arr.size() == start ? '[' : ',';
      arr += t;
    }
    if (arr.size() != start) close();
    r.bytes = arr.size();
    r.text = std::make_shared<const std::string>(std::move(arr));
    return r;
  }

  // One flush, planned and rendered in one go (tests, and small fleets):
  //   queued(id) -> std::size_t       bytes queued to that console now
  //   render(slot) -> Text            the unit object (called once per slot per flush)
  //   deliver(id, std::vector<Text>)  frames for that console
  //   drop(id)                        the console is too slow
  template <class Queued, class Render, class Deliver, class Drop>
  void flush(Queued&& queued, Render&& render, Deliver&& deliver, Drop&& drop) {
    Plan p;
    plan(queued, p);
    std::unordered_map<std::uint32_t, Text> cache;
    for (auto slot : p.slots) cache.emplace(slot, render(slot));
    for (auto& send : p.sends) {
      std::vector<const Text*> texts;
      texts.reserve(send.slots.size());
      for (auto slot : send.slots) texts.push_back(&cache.at(slot));
      auto f = frames(texts, send.batch, limits_.batch_frame_bytes);
      if (!f.empty()) deliver(send.console, std::move(f));
    }
    for (ConnId id : p.dropped) drop(id);
  }

  std::size_t batch_frame_bytes() const { return limits_.batch_frame_bytes; }

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
  bool in_plan(std::uint32_t slot) {
    if (planned_.size() <= slot) planned_.resize(slot + 1, false);
    if (planned_[slot]) return true;
    planned_[slot] = true;
    return false;
  }

  Limits limits_;
  std::unordered_map<ConnId, Console> consoles_;
  std::vector<bool> planned_;  // slots already in the plan being made
};

}  // namespace dispatch::net
