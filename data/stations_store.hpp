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

// The core's read (under its read lock): a statement, its parameters, a row callback.
using ReadFn = std::function<bool(rows::R, const Params&, const EachRow&)>;

// What the engine needs at start (engine::StationSnapshot), as of `now`.
void load(const ReadFn& read, engine::StationSnapshot& s, engine::Millis now);
std::vector<engine::Signal> signals_of(const ReadFn& read, const std::string& incident);
std::vector<HazardRecord> hazards(const ReadFn& read, const HazardQuery& q);
VehicleHistory vehicle(const ReadFn& read, const VehicleQuery& q);

}  // namespace dispatch::data::stations
