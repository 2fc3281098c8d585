// Fleets for the simulator: units placed inside Chongqing's real districts, denser in the
// urban core, with motorcycle teams, survey cars and a few helicopters at real airfields.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "geo/geo.hpp"

namespace dispatch::geo {
class Zones;
}

namespace dispatch::sim {

struct SimUnit {
  std::string id;
  std::string kind;  // moto, car, heli
  std::string callsign;
  std::string capcode;
  geo::LatLon start;
  std::optional<geo::LatLon> base;
  std::size_t zone = 0;
};

// N units: about 87% moto, 10% car, and one helicopter per 200 units (at least one, at most
// four), at the real airfields. Deterministic for a seed.
std::vector<SimUnit> make_fleet(const geo::Zones& zones, std::size_t n, std::uint64_t seed);

// fleet.json as the server's --fleet reads it, with the simulator's start positions in
// an extra "start" member.
std::string fleet_json(const std::vector<SimUnit>& units);
std::vector<SimUnit> parse_fleet_json(const std::string& text);

// A tokens file with every role the simulator and a console need.
std::string tokens_json();

// The steady clock in microseconds: what the simulator's timings and traces use (the
// server's --trace-reports uses the same clock).
std::int64_t mono_us();

// Log-scaled latency histogram (microseconds), for percentiles without keeping samples:
// 100 buckets a decade, so a percentile is read at most 2.4% above the true value (never
// below it), fine enough to hold a p99 against a target in milliseconds.
class Histogram {
 public:
  void add(std::int64_t micros);
  std::int64_t percentile(double p) const;  // upper bound of the bucket holding p (capped at max)
  std::int64_t max() const { return max_; }
  std::uint64_t count() const { return count_; }

 private:
  static constexpr int per_decade = 100;
  static constexpr int buckets = 10 * per_decade + 1;  // 1 us .. 10^10 us
  static int bucket_of(std::int64_t us);
  static std::int64_t upper(int b);
  std::uint64_t counts_[buckets] = {};
  std::uint64_t count_ = 0;
  std::int64_t max_ = 0;
};

}  // namespace dispatch::sim
