// The server's /metrics as the simulator reads it (Prometheus text): a counter's value,
// and histograms with their quantiles over a run (end minus start).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dispatch::sim {

// The value of an unlabelled sample `name` (0 when absent).
double metric(const std::string& text, const std::string& name);

// Cumulative buckets by upper bound.
struct PromHistogram {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count), +Inf last
  double sum = 0, count = 0;
};

// Every histogram in `text`, by name.
std::map<std::string, PromHistogram> parse_histograms(const std::string& text);
// `end` minus `start` (or `end` when start is missing or has other buckets).
PromHistogram histogram_delta(const PromHistogram& end, const PromHistogram* start);
// As Prometheus' histogram_quantile: linear within the bucket holding the rank; in the
// +Inf bucket, the largest finite bound (a floor). In the histogram's unit.
double histogram_quantile(const PromHistogram& h, double q);

}  // namespace dispatch::sim
