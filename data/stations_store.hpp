// The store's part for rural stations (wire contract v2 section 10): sightings, hazards
// and their history, the incidents' plates and signals. Private to data/: the writer
// thread owns StationWrites on the write connection, StationReads lives behind the read
// connection's mutex; store.cpp wires them in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/sqlite.hpp"
#include "data/store.hpp"
#include "engine/station_records.hpp"

namespace dispatch::data {

std::string signals_json(const std::vector<engine::Signal>& signals);
std::vector<engine::Signal> parse_signals(const std::string& text);

class StationWrites {
 public:
  explicit StationWrites(sql::Db& db);
  int apply(const engine::rec::Sighting& s);
  int apply(const engine::rec::Hazard& h);
  int apply(const engine::rec::HazardEvent& e);
  int apply(const engine::rec::IncidentSignals& s);
  // Deletes up to `chunk` sightings older than `cutoff`; the rows deleted, -1 on error.
  std::int64_t prune(engine::Millis cutoff, std::int64_t chunk);

 private:
  sql::Db& db_;
  sql::Statement insert_sighting_, upsert_hazard_, insert_hazard_event_, upsert_signals_,
      insert_plate_, prune_;
};

class StationReads {
 public:
  explicit StationReads(sql::Db& db);
  // What the engine needs at start (StationSnapshot), as of `now`.
  void load(engine::StationSnapshot& s, engine::Millis now);
  std::vector<engine::Signal> signals_of(const std::string& incident);
  std::vector<HazardRecord> hazards(const HazardQuery& q);
  VehicleHistory vehicle(const VehicleQuery& q);

 private:
  sql::Statement recent_sightings_, recent_plates_, open_hazards_, hazard_keys_, max_hazard_seq_,
      open_signals_, signals_of_, hazards_all_, hazards_open_, hazard_events_, vehicle_sightings_,
      vehicle_incidents_;
};

}  // namespace dispatch::data
