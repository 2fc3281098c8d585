// The simulator's own pieces (the run itself is tests/sim/run_sim.sh against dispatchd).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sim/fleet.hpp"

using dispatch::sim::Histogram;

TEST_CASE("sim histogram: a percentile is never below the true one, and at most 2.4% above it") {
  std::mt19937_64 rng(7);
  // Latencies as the load runs see them: most under a millisecond, a long tail.
  std::lognormal_distribution<double> lat(6.5, 0.9);
  std::vector<std::int64_t> samples;
  Histogram h;
  for (int i = 0; i < 20000; ++i) {
    const auto us = static_cast<std::int64_t>(lat(rng)) + 1;
    samples.push_back(us);
    h.add(us);
  }
  std::sort(samples.begin(), samples.end());
  CHECK(h.count() == samples.size());
  CHECK(h.max() == samples.back());
  for (double p : {0.5, 0.9, 0.99, 0.999}) {
    const auto want = samples[static_cast<std::size_t>(std::ceil(p * static_cast<double>(samples.size()))) - 1];
    const auto got = h.percentile(p);
    CAPTURE(p);
    CAPTURE(want);
    CHECK(got >= want);
    CHECK(static_cast<double>(got) <= static_cast<double>(want) * 1.024 + 1);
  }
  CHECK(h.percentile(1.0) == samples.back());
}

TEST_CASE("sim histogram: empty, and values past the last bucket") {
  Histogram h;
  CHECK(h.percentile(0.99) == 0);
  h.add(0);
  h.add(20'000'000'000'000);  // far past 10^10 us: the last bucket, read as the max
  CHECK(h.percentile(0.5) == 1);
  CHECK(h.percentile(1.0) == 20'000'000'000'000);
}
