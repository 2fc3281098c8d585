// The simulator's own pieces (the run itself is tests/sim/run_sim.sh against dispatchd).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sim/fleet.hpp"
#include "sim/prom.hpp"

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

TEST_CASE("sim prom: a run's stage quantile from the server's /metrics, end minus start") {
  // As net/metrics_page.cpp renders a histogram (cumulative buckets, seconds), before and
  // after a run, with a counter and a labelled sample that must not be mistaken for it.
  const std::string start =
      "# TYPE dispatch_stage_engine_seconds histogram\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.001\"} 10\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.002\"} 10\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.004\"} 10\n"
      "dispatch_stage_engine_seconds_bucket{le=\"+Inf\"} 10\n"
      "dispatch_stage_engine_seconds_sum 0.005\n"
      "dispatch_stage_engine_seconds_count 10\n"
      "dispatch_frames_in_total 7\n";
  const std::string end =
      "# TYPE dispatch_stage_engine_seconds histogram\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.001\"} 60\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.002\"} 100\n"
      "dispatch_stage_engine_seconds_bucket{le=\"0.004\"} 109\n"
      "dispatch_stage_engine_seconds_bucket{le=\"+Inf\"} 110\n"
      "dispatch_stage_engine_seconds_sum 0.2\n"
      "dispatch_stage_engine_seconds_count 110\n"
      "dispatch_messages_in_total{type=\"report\"} 99\n"
      "dispatch_frames_in_total 107\n";
  CHECK(dispatch::sim::metric(end, "dispatch_frames_in_total") - dispatch::sim::metric(start, "dispatch_frames_in_total") ==
        doctest::Approx(100));
  CHECK(dispatch::sim::metric(end, "dispatch_messages_in_total") == 0);  // only labelled: absent
  const auto hs = dispatch::sim::parse_histograms(start), he = dispatch::sim::parse_histograms(end);
  REQUIRE(he.count("dispatch_stage_engine_seconds") == 1);
  const auto d = dispatch::sim::histogram_delta(he.at("dispatch_stage_engine_seconds"), &hs.at("dispatch_stage_engine_seconds"));
  REQUIRE(d.buckets.size() == 4);
  CHECK(d.count == doctest::Approx(100));
  CHECK(d.sum == doctest::Approx(0.195));
  // The run's 100: 50 under 1 ms, 40 in (1, 2], 9 in (2, 4], 1 above.
  CHECK(dispatch::sim::histogram_quantile(d, 0.5) == doctest::Approx(0.001));
  CHECK(dispatch::sim::histogram_quantile(d, 0.7) == doctest::Approx(0.0015));   // 20 of the 40
  CHECK(dispatch::sim::histogram_quantile(d, 0.95) == doctest::Approx(0.002 + 0.002 * 5.0 / 9));  // 5 of the 9
  CHECK(dispatch::sim::histogram_quantile(d, 0.995) == doctest::Approx(0.004));  // in +Inf: the floor
  // Without the start (a server restarted in the run), the end alone.
  CHECK(dispatch::sim::histogram_delta(he.at("dispatch_stage_engine_seconds"), nullptr).count == doctest::Approx(110));
}
