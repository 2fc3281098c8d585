// The store's part for rural stations (wire contract v2 section 10): sightings, hazards
// and their history, the incidents' plates and signals. Private to data/. The SQL (one
// text for SQLite and PostgreSQL, like rows.cpp's) is reached through rows::W and rows::R;
// the functions below build the Store's answers from reads the core runs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/backend.hpp"
#include "data/store.hpp"
#include "engine/station_records.hpp"

namespace dispatch::data::stations {

// Under the core's read lock (Store::Impl::read_locked, store_reads.cpp).
// What the engine needs at start (engine::StationSnapshot), as of `now`.
void load(Backend& db, engine::StationSnapshot& s, engine::Millis now);
std::vector<engine::Signal> signals_of(Backend& db, const std::string& incident);
std::vector<HazardRecord> hazards(Backend& db, const HazardQuery& q);
VehicleHistory vehicle(Backend& db, const VehicleQuery& q);

}  // namespace dispatch::data::stations
