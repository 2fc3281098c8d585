// Exponential back-off for reconnecting and retrying.
#pragma once

#include <algorithm>
#include <chrono>

namespace dispatch::gateways {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;
  Backoff(ms initial, ms max, double factor = 2.0)
      : initial_(std::max(initial, ms{1})), max_(std::max(max, initial_)), factor_(factor),
        next_(initial_) {}

  // The wait before the next attempt; each call makes the following one longer.
  ms next() {
    const ms now = next_;
    next_ = std::min(max_, ms{static_cast<ms::rep>(static_cast<double>(next_.count()) * factor_)});
    ++attempts_;
    return now;
  }
  // After a success the next failure waits only the initial delay again.
  void reset() {
    next_ = initial_;
    attempts_ = 0;
  }
  int attempts() const { return attempts_; }

 private:
  ms initial_, max_;
  double factor_;
  ms next_;
  int attempts_ = 0;
};

}  // namespace dispatch::gateways
