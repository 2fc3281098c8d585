// A token bucket that counts messages (contract v2 section 2: a batch of 500 positions is
// 500 messages; a binary frame counts as one). Time is an input, so it is testable
// without sleeping. Pure; no Beast.
#pragma once

#include <algorithm>
#include <cstdint>

namespace dispatch::net {

class RateLimiter {
 public:
  RateLimiter(double per_s, double burst) : per_s_(per_s), burst_(std::max(1.0, burst)), tokens_(burst_) {}

  // Takes `n` messages at `now_us`; false (and nothing taken) when the bucket holds fewer.
  bool take(std::uint64_t n, std::int64_t now_us) {
    refill(now_us);
    if (tokens_ < static_cast<double>(n)) return false;
    tokens_ -= static_cast<double>(n);
    return true;
  }
  // Is the bucket empty (a frame may be dropped before it is parsed)?
  bool empty(std::int64_t now_us) {
    refill(now_us);
    return tokens_ < 1;
  }
  // `rate_limited` is answered at most once a second per connection: true when one may go.
  bool may_tell(std::int64_t now_us) {
    if (told_ && now_us - told_us_ < 1'000'000) return false;
    told_ = true;
    told_us_ = now_us;
    return true;
  }
  double burst() const { return burst_; }

 private:
  void refill(std::int64_t now_us) {
    if (!started_) {  // the first call starts the clock (zero is a time like any other)
      started_ = true;
      last_us_ = now_us;
    }
    if (now_us > last_us_) {
      tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_us - last_us_) / 1e6 * per_s_);
      last_us_ = now_us;
    }
  }
  double per_s_;
  double burst_;
  double tokens_;
  std::int64_t last_us_ = 0;
  std::int64_t told_us_ = 0;
  bool started_ = false;
  bool told_ = false;
};

}  // namespace dispatch::net
