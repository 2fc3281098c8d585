// Rural traffic-safety stations (wire contract v2 section 10): the commands a station (or
// a console) sends and what the engine says about hazards. The Engine's members for them
// are in engine/stations.cpp; the fraud signals' room is engine/signals.hpp.
#pragma once

#include <string>

#include "engine/station_records.hpp"
#include "engine/types.hpp"

namespace dispatch::engine {

namespace cmd {
// A vehicle seen passing the station of the sender's token (placed at that station).
struct Sighting {
  std::string id;  // optional: the station's own log number; answered `accepted` when given
  std::string plate;
  Millis ts = 0;
  std::string direction;
  std::string note;
};
// A road hazard found by a station. `id` is the station's own key (scoped to its token:
// the same id again is the same hazard).
struct Hazard {
  std::string id;
  double lat = 0, lon = 0;
  Millis ts = 0;
  std::string kind;
  std::string note;
};
// Console: the hazard is gone (cleared).
struct ClearHazard {
  std::string hazard;
};
}  // namespace cmd

namespace ev {
// For the sender of a hazard: {"type":"accepted","id":ID,"hazard":HAZARD_ID}.
struct HazardAccepted {
  std::string report_id;
  std::string hazard;
};
// For the sender of a sighting with an id, once durable: {"type":"accepted","id","plate","ts"}.
struct SightingAccepted {
  std::string id;
  std::string plate;
  Millis ts = 0;
};
// For consoles: the hazard's current state is rendered when released.
struct HazardChanged {
  std::string hazard;
};
}  // namespace ev

}  // namespace dispatch::engine
