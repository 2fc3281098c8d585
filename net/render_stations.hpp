// Rendering for rural stations (wire contract v2 section 10, docs/protocol.md "Rural
// stations, sightings, hazards, fraud signals (v2)"): hazards, the answers to a station,
// incidents' fraud signals, and the REST bodies of /api/hazards and /api/vehicles/{plate}.
#pragma once

#include <string>
#include <vector>

#include "data/store.hpp"
#include "engine/engine.hpp"

namespace dispatch::net {

class JsonWriter;

// "signals":[{"kind","detail","plates",("sighting":{...}),("incidents":[...])}]
void signals_field(JsonWriter& w, const std::vector<engine::Signal>& signals);
// A hazard object's fields (without "type").
void hazard_fields(JsonWriter& w, const engine::rec::Hazard& h);
// "hazards":[...] the engine's open hazards (the console snapshot).
void open_hazards_field(JsonWriter& w, const engine::Engine& e);

// {"type":"hazard","hazard","station","lat","lon","ts","kind","note","state","cleared_ts",...}
std::string render_hazard(const engine::rec::Hazard& h);
// {"type":"accepted","id":ID,"hazard":HAZARD_ID}
std::string render_hazard_accepted(const engine::ev::HazardAccepted& a);
// {"type":"accepted","id":ID,"plate":PLATE,"ts":TS}
std::string render_sighting_accepted(const engine::ev::SightingAccepted& a);
// GET /api/hazards: an array of hazard objects, each with its "events".
std::string render_hazard_records(const std::vector<data::HazardRecord>& hazards);
// GET /api/vehicles/{plate}
std::string render_vehicle(const std::string& plate, const data::VehicleHistory& v);

}  // namespace dispatch::net
