// Rural traffic-safety stations (劝导站, wire contract v2 section 10): what they log and
// report, and the fraud signals raised on incidents, as plain values. The store persists
// them; the engine keeps the recent ones in memory (engine/signals.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/types.hpp"

namespace dispatch::engine {

// The sighting that makes an `impossible_travel` signal: where and when the vehicle was
// seen, how far that is from the scene, and how long it would have needed at least.
struct SignalSighting {
  std::string station;
  std::string plate;    // as the station wrote it
  Millis ts = 0;
  double lat = 0, lon = 0;
  double distance_m = 0;     // station to scene, great circle
  Millis elapsed_ms = 0;     // between the sighting and the report (either order)
  Millis min_travel_ms = 0;  // the distance (less the position slack) at the top speed
  bool operator==(const SignalSighting&) const = default;
};

// A fraud signal on an incident: {"kind","detail"} on the wire, plus its evidence.
struct Signal {
  std::string kind;    // impossible_travel, repeat_plate, repeat_pair
  std::string detail;  // why, in words
  std::vector<std::string> plates;        // the plate (two for repeat_pair), as reported
  std::optional<SignalSighting> sighting; // impossible_travel
  std::vector<std::string> incidents;     // repeat_*: the other incidents, oldest first
  bool operator==(const Signal&) const = default;
};

namespace rec {

// A vehicle seen passing a station (appended; the same station, plate and ts is the same
// sighting). Kept --sighting-retention-days.
struct Sighting {
  std::string station;
  std::string plate;
  Millis ts = 0;
  double lat = 0, lon = 0;  // the station's position
  std::string direction;
  std::string note;
  Millis received_ts = 0;
};

// A road hazard a station found (upserted on every change).
struct Hazard {
  std::uint64_t seq = 0;
  std::string id;         // H-000001
  std::string report_id;  // the station's own id for it (scoped to its token)
  std::string source;     // who reported: "role:name" of the token
  std::string station;    // the reporting station (empty when a console reported it)
  double lat = 0, lon = 0;
  Millis ts = 0;          // when found (the message's ts)
  std::string kind;
  std::string note;
  bool cleared = false;
  Millis received_ts = 0;
  Millis cleared_ts = 0;
  std::string cleared_by;  // "role:name"
};

// One line of a hazard's history (appended): reported, cleared.
struct HazardEvent {
  std::string hazard;
  Millis ts = 0;
  std::string event;
  std::string detail;
  std::string actor_role;
  std::string actor_name;
};

// An incident's signals as last computed (replaces the earlier set). Written when a
// computation raised one (at the report or the liability decision).
struct IncidentSignals {
  std::string incident;
  Millis computed_ts = 0;
  std::string stage;  // report, liability
  std::vector<Signal> signals;
};

// A plate of an incident (appended when it is reported): the vehicle's history, and the
// 30 days' window after a restart.
struct IncidentPlate {
  std::string plate;  // as reported
  std::string incident;
  Millis reported_ts = 0;
};

}  // namespace rec

// What the store hands the engine at start for the stations: the sightings of the last
// window, the plates of the incidents of the last 30 days, open hazards and every hazard
// key, and the signals of the open incidents.
struct StationSnapshot {
  std::vector<rec::Sighting> recent_sightings;  // oldest first
  struct IncidentPlates {
    std::string incident;
    Millis reported_ts = 0;
    std::vector<std::string> plates;
  };
  std::vector<IncidentPlates> recent_incidents;  // oldest first
  std::vector<rec::Hazard> open_hazards;
  struct HazardKey {
    std::string source;
    std::string report_id;
    std::string hazard;
  };
  std::vector<HazardKey> hazard_keys;
  std::uint64_t max_hazard_seq = 0;
  std::vector<rec::IncidentSignals> signals;  // of the open incidents
};

}  // namespace dispatch::engine
