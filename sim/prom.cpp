// The server's /metrics as the simulator reads it (prom.hpp).
#include "sim/prom.hpp"

#include <cmath>
#include <exception>
#include <limits>
#include <sstream>

namespace dispatch::sim {

double metric(const std::string& text, const std::string& name) {
  auto p = text.find("\n" + name + " ");
  if (p == std::string::npos) return 0;
  return std::stod(text.substr(p + name.size() + 2));
}

std::map<std::string, PromHistogram> parse_histograms(const std::string& text) {
  std::map<std::string, PromHistogram> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    double value = 0;
    try {
      value = std::stod(line.substr(sp + 1));
    } catch (const std::exception&) {
      continue;
    }
    const std::string key = line.substr(0, sp);
    if (auto b = key.find("_bucket{le=\""); b != std::string::npos && key.back() == '}') {
      const std::string le = key.substr(b + 12, key.size() - b - 14);
      const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le);
      out[key.substr(0, b)].buckets.emplace_back(bound, value);
    } else if (key.size() > 4 && key.ends_with("_sum") && key.find('{') == std::string::npos) {
      out[key.substr(0, key.size() - 4)].sum = value;
    } else if (key.size() > 6 && key.ends_with("_count") && key.find('{') == std::string::npos) {
      out[key.substr(0, key.size() - 6)].count = value;
    }
  }
  return out;
}

PromHistogram histogram_delta(const PromHistogram& end, const PromHistogram* start) {
  PromHistogram d = end;
  if (!start || start->buckets.size() != end.buckets.size()) return d;
  for (std::size_t i = 0; i < d.buckets.size(); ++i) d.buckets[i].second -= start->buckets[i].second;
  d.sum -= start->sum;
  d.count -= start->count;
  return d;
}

double histogram_quantile(const PromHistogram& h, double q) {
  if (h.buckets.empty()) return 0;
  const double total = h.buckets.back().second;
  if (total <= 0) return 0;
  const double rank = q * total;
  double lower = 0, below = 0;
  for (const auto& [le, cum] : h.buckets) {
    if (cum >= rank) {
      if (std::isinf(le)) return lower;
      if (cum <= below) return le;
      return lower + (le - lower) * (rank - below) / (cum - below);
    }
    lower = le;
    below = cum;
  }
  return lower;
}
}  // namespace dispatch::sim
