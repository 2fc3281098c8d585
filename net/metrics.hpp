// Counters and histograms for /metrics (Prometheus text exposition). Lock-free: relaxed
// atomics, so the hot path pays one uncontended increment.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace dispatch::net {

class Histogram {
 public:
  // Upper bounds in seconds; finer between 1 and 5 ms, where the latency targets are
  // (report -> assign p99 <= 2 ms and <= 5 ms), so a p99 there is not interpolated
  // across a bucket as wide as the target.
  static constexpr std::array<double, 18> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002,
                                                 0.0025, 0.003,   0.004,  0.005, 0.01,   0.025,
                                                 0.05,   0.1,     0.25,   0.5,   1.0,    5.0};
  void observe_us(std::int64_t micros) {
    const double s = static_cast<double>(micros) / 1e6;
    std::size_t i = 0;
    while (i < bounds.size() && s > bounds[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<std::uint64_t>(micros < 0 ? 0 : micros), std::memory_order_relaxed);
  }
  void render(std::string& out, std::string_view name, std::string_view help) const;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

using Counter = std::atomic<std::uint64_t>;

inline void inc(Counter& c, std::uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

void render_counter(std::string& out, std::string_view name, std::string_view help,
                    std::uint64_t value, std::string_view type = "counter");
// One sample line of a labelled family (the HELP/TYPE lines come from render_family_head).
void render_family_head(std::string& out, std::string_view name, std::string_view help,
                        std::string_view type = "counter");
void render_sample(std::string& out, std::string_view name, std::string_view label,
                   std::string_view label_value, std::uint64_t value);

}  // namespace dispatch::net
