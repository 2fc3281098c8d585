// Fraud signals (wire contract v2 section 10), a pure room of the engine: no I/O, no
// clock (`now` is an input), one thread.
//
// It keeps what the checks need and nothing more:
// - a window of sightings per plate. Only sightings within `sighting_window_ms` (5 h) of
//   a report can prove impossible travel in Chongqing: the municipality's widest extent
//   (its district boundaries, Rongchang's western edge at 105.32 E 29.45 N to Wushan's
//   eastern edge at 110.14 E 31.39 N) is about 510 km of great circle, which at 120 km/h
//   takes 510 / 120 = 4.25 h. A vehicle seen 5 h (600 km at 120 km/h) or more before or
//   after a report could have driven from any station to any scene in the municipality,
//   so older sightings can never raise the signal and are evicted (the store keeps them).
// - per plate and per pair of plates, the incidents of the last `history_ms` (30 days).
//
// Memory is bounded by time (windows are evicted as `now` moves) and by count
// (`max_sightings`, `max_per_plate`, `max_history_per_key`); everything is deterministic:
// the same calls in the same order give the same signals.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/station_records.hpp"
#include "geo/geo.hpp"

namespace dispatch::engine {

struct SignalConfig {
  double max_speed_kmh = 120;                       // contract: impossible at 120 km/h
  Millis sighting_window_ms = 5LL * 3600 * 1000;    // see the top of this file
  Millis history_ms = 30LL * 24 * 3600 * 1000;      // contract: within 30 days
  std::size_t repeat_plate_min = 3;                 // a plate in 3 or more incidents
  std::size_t repeat_pair_min = 2;                  // two plates together in 2 or more
  // A reported scene is where the caller said it was (a phone's fix, an address): the
  // distance a vehicle must have covered is taken this much shorter, so that a sighting
  // at the scene's own station a minute before the report is never "impossible".
  double position_slack_m = 500;
  // Bounds: at most this many sightings in memory (the oldest go first), this many per
  // plate (its oldest go first), this many incidents per plate or pair.
  std::size_t max_sightings = 4'000'000;
  std::size_t max_per_plate = 256;
  std::size_t max_history_per_key = 1024;
};

class SignalBook {
 public:
  explicit SignalBook(SignalConfig config = {});

  // A plate as a key: ASCII letters upper-cased, spaces, dots, middle dots and hyphens
  // dropped ("渝a·12345" and "渝A12345" are one vehicle).
  static std::string normalize_plate(std::string_view plate);

  // A vehicle seen passing a station at `at`. Not kept (false) when it lies outside the
  // window around `now`, or the same station saw the same plate at the same ts already.
  bool add_sighting(std::string_view station, std::string_view plate, Millis ts, geo::LatLon at,
                    Millis now);
  // An incident's plates enter the history (when reported, and at restore). Incidents
  // reported outside [now - history, now + window] are not kept.
  void add_incident(std::string_view incident, Millis reported_ts, std::span<const std::string> plates,
                    Millis now);
  // The signals of an incident (its own id, scene, report time and plates), in a fixed
  // order: impossible_travel by plate, repeat_plate by plate, repeat_pair by pair (the
  // plates in the order the incident lists them).
  std::vector<Signal> check(std::string_view incident, geo::LatLon scene, Millis reported_ts,
                            std::span<const std::string> plates) const;
  // A recomputation keeps what was raised before: a signal once raised stays (its
  // evidence may have left the windows since), replaced by a new one of the same kind
  // and plates.
  static std::vector<Signal> merge(const std::vector<Signal>& before, std::vector<Signal> now);
  // Drops what has left the windows. Cheap when nothing has: call it on every tick.
  void evict(Millis now);

  std::size_t sightings() const { return sightings_; }
  std::size_t plates() const { return by_plate_.size(); }
  std::size_t pairs() const { return pairs_.size(); }
  const SignalConfig& config() const { return config_; }

 private:
  struct Seen {
    Millis ts;
    geo::LatLon pos;
    std::uint32_t station;
  };
  struct Hist {
    Millis ts;
    std::string incident;
  };
  struct Plate {
    std::string key;
    std::vector<Seen> seen;         // by ts
    std::vector<Hist> incidents;    // by (ts, id)
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <class V>
  using Map = std::unordered_map<std::string, V, Hash, std::equal_to<>>;

  std::uint32_t plate_slot(const std::string& key);
  const Plate* find_plate(std::string_view key) const;
  void release_if_empty(std::uint32_t slot);
  std::uint32_t station_id(std::string_view s);
  void drop_oldest_seen(Plate& p);
  static void insert_hist(std::vector<Hist>& v, Millis ts, std::string_view incident, std::size_t cap);
  // The incidents in the best window of `history_ms` holding (reported_ts, incident).
  std::vector<Hist> window_of(const std::vector<Hist>& hist, std::string_view incident,
                                     Millis reported_ts) const;

  SignalConfig config_;
  std::vector<Plate> slots_;
  std::vector<std::uint32_t> free_;
  Map<std::uint32_t> by_plate_;
  Map<std::vector<Hist>> pairs_;
  std::vector<std::string> stations_;  // interned ids (a few thousand stations at most)
  Map<std::uint32_t> station_index_;
  // In arrival order: when each sighting (plate slot) and history entry leaves its window.
  std::deque<std::pair<Millis, std::uint32_t>> seen_queue_;
  std::deque<std::pair<Millis, std::uint32_t>> hist_queue_;
  std::deque<std::pair<Millis, std::string>> pair_queue_;
  std::size_t sightings_ = 0;
};

// "2026-11-29 09:41" in China Standard Time (UTC+8, no daylight saving), for details.
std::string china_time(Millis ts);

}  // namespace dispatch::engine
