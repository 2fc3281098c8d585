// "Nobody is told anything the database does not yet hold" (contract v2 section 2).
//
// Everything the engine thread says about the state (answers, assigns, console changes,
// snapshots, REST reads of engine state) is rendered from the values of the moment and then
// held here until every write submitted before it has committed. Store batches commit in
// the order they were submitted, so one counter is enough: an item made after submission
// N leaves once commit N is known. Pure and single-threaded (the engine thread's); no Beast.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

namespace dispatch::net {

template <class Item>
class ReleaseGate {
 public:
  // Call when a batch of writes goes to the store; the number to report back to
  // committed() once it is durable.
  std::uint64_t submitted() { return ++submitted_; }

  // Sends `item` at once when nothing submitted is still uncommitted (and nothing is
  // held before it); else holds it behind the newest submission.
  template <class Send>
  void release(Item item, Send&& send) {
    if (committed_ >= submitted_ && held_.empty()) {
      send(item);
      return;
    }
    held_.emplace_back(submitted_, std::move(item));
  }

  // Submission `seq` (and so every one before it) has committed: sends what it held.
  template <class Send>
  void committed(std::uint64_t seq, Send&& send) {
    if (seq > committed_) committed_ = seq;
    while (!held_.empty() && held_.front().first <= committed_) {
      send(held_.front().second);
      held_.pop_front();
    }
  }

  // True while anything submitted has not committed (the store is behind or failing).
  bool behind() const { return committed_ < submitted_; }
  std::size_t held() const { return held_.size(); }
  std::uint64_t last_submitted() const { return submitted_; }
  std::uint64_t last_committed() const { return committed_; }

 private:
  std::uint64_t submitted_ = 0;
  std::uint64_t committed_ = 0;
  std::deque<std::pair<std::uint64_t, Item>> held_;
};

}  // namespace dispatch::net
