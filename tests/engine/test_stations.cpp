// The engine's room for rural stations (engine/stations.cpp), in-process with a fixed
// clock: sightings placed at their station, hazards (idempotent per token, cleared once),
// and the signals computed at the report and again at the liability decision.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

constexpr Millis t0 = 1'764'300'000'000, minute = 60'000;
const geo::LatLon X{29.560, 106.550};

geo::LatLon east_km(geo::LatLon p, double km) {
  return {p.lat, p.lon + km / (111.195 * std::cos(geo::deg2rad(p.lat)))};
}

class Stations : public Geography {
 public:
  std::optional<DistrictRef> district(geo::LatLon) const override { return std::nullopt; }
  std::optional<PlaceRef> trauma_hospital(geo::LatLon) const override { return std::nullopt; }
  std::optional<PlaceRef> helipad_hospital(geo::LatLon) const override { return std::nullopt; }
  std::optional<PlaceRef> landing_zone(geo::LatLon) const override { return std::nullopt; }
  std::optional<PlaceRef> station(std::string_view id) const override {
    if (id == "ST-FAR") return PlaceRef{"ST-FAR", "far", east_km(X, 300)};
    return std::nullopt;
  }
};

template <class T>
std::vector<const T*> all(const Output& out) {
  std::vector<const T*> v;
  for (const auto& m : out.messages)
    if (auto* p = std::get_if<T>(&m.payload)) v.push_back(p);
  return v;
}

template <class T>
std::size_t writes(const Output& out) {
  std::size_t n = 0;
  for (const auto& w : out.writes) n += std::holds_alternative<T>(w);
  return n;
}

}  // namespace

TEST_CASE("engine: sightings, hazards and signals") {
  Engine e;
  Stations geo;
  e.set_geography(&geo);
  Principal far{"station", "far", false, {}, {}, "ST-FAR"};
  Principal nowhere{"station", "nowhere", false, {}, {}, "ST-NONE"};
  Principal console{"console", "desk1", false, {}, {}};
  Output out;

  // A sighting is placed at the token's station; an unknown station is refused.
  e.handle(cmd::Sighting{"log-1", "渝A12345", t0 - 10 * minute, "东向", ""}, Origin{1, &far}, t0, out);
  REQUIRE(writes<rec::Sighting>(out) == 1);
  const auto& s = std::get<rec::Sighting>(out.writes[0]);
  CHECK(s.station == "ST-FAR");
  CHECK(s.lon == doctest::Approx(east_km(X, 300).lon));
  REQUIRE(all<ev::SightingAccepted>(out).size() == 1);
  CHECK(out.must_wait);
  out.clear();
  e.handle(cmd::Sighting{"", "渝A1", t0, "", ""}, Origin{2, &nowhere}, t0, out);
  REQUIRE(all<ev::Error>(out).size() == 1);
  CHECK(all<ev::Error>(out)[0]->code == ErrorCode::bad_message);
  CHECK(out.writes.empty());
  out.clear();

  // Hazards: the same id from the same token is the same hazard; cleared once.
  e.handle(cmd::Hazard{"hz-1", 29.6, 106.6, t0, "landslide", ""}, Origin{1, &far}, t0, out);
  REQUIRE(all<ev::HazardAccepted>(out).size() == 1);
  const std::string hid = all<ev::HazardAccepted>(out)[0]->hazard;
  CHECK(all<ev::HazardChanged>(out).size() == 1);
  CHECK(writes<rec::Hazard>(out) == 1);
  CHECK(writes<rec::HazardEvent>(out) == 1);
  out.clear();
  e.handle(cmd::Hazard{"hz-1", 29.6, 106.6, t0, "landslide", ""}, Origin{1, &far}, t0, out);
  REQUIRE(all<ev::HazardAccepted>(out).size() == 1);
  CHECK(all<ev::HazardAccepted>(out)[0]->hazard == hid);
  CHECK(out.writes.empty());
  CHECK(e.open_hazards().size() == 1);
  out.clear();
  e.handle(cmd::ClearHazard{hid}, Origin{3, &console}, t0 + 1, out);
  CHECK(all<ev::HazardChanged>(out).size() == 1);
  CHECK(e.hazard(hid)->cleared);
  CHECK(e.hazard(hid)->cleared_by == "console:desk1");
  CHECK(e.open_hazards().empty());
  out.clear();
  e.handle(cmd::ClearHazard{hid}, Origin{3, &console}, t0 + 2, out);
  REQUIRE(all<ev::Error>(out).size() == 1);
  CHECK(all<ev::Error>(out)[0]->code == ErrorCode::conflict);
  out.clear();

  // A report whose vehicle was seen 300 km away 10 minutes before: impossible travel.
  cmd::Report r;
  r.id = "r-1";
  r.lat = X.lat;
  r.lon = X.lon;
  r.ts = t0;
  r.drivable = r.parties_agree = true;
  r.vehicles = {{"渝A12345", "PICC"}, {"渝B2", ""}};
  e.handle(r, Origin{3, &console}, t0, out);
  REQUIRE(all<ev::Accepted>(out).size() == 1);
  const Incident* inc = e.incident(all<ev::Accepted>(out)[0]->incident);
  REQUIRE(inc);
  REQUIRE(inc->signals.size() == 1);
  CHECK(inc->signals[0].kind == "impossible_travel");
  CHECK(writes<rec::IncidentSignals>(out) == 1);
  CHECK(writes<rec::IncidentPlate>(out) == 2);
  out.clear();

  // An ordinary one: no signal, no signals record (its plates are kept).
  r.id = "r-2";
  r.vehicles = {{"渝C3", "PICC"}};
  e.handle(r, Origin{3, &console}, t0, out);
  const Incident* plain = e.incident(all<ev::Accepted>(out)[0]->incident);
  CHECK(plain->signals.empty());
  CHECK(writes<rec::IncidentSignals>(out) == 0);
  CHECK(writes<rec::IncidentPlate>(out) == 1);
  out.clear();

  // At the liability decision: a later sighting counts; the claim is opened after it.
  e.handle(cmd::Sighting{"", "渝C3", t0 + 4 * minute, "", ""}, Origin{1, &far}, t0 + 4 * minute, out);
  out.clear();
  e.handle(cmd::Liability{plain->rec.id, "none", ""}, Origin{3, &console}, t0 + 5 * minute, out);
  REQUIRE(plain->signals.size() == 1);
  CHECK(plain->signals[0].detail.find("after the report") != std::string::npos);
  CHECK(writes<rec::IncidentSignals>(out) == 1);
  std::size_t signals_at = 0, claim_at = 0;
  for (std::size_t i = 0; i < out.writes.size(); ++i) {
    if (std::holds_alternative<rec::IncidentSignals>(out.writes[i])) signals_at = i;
    if (std::holds_alternative<rec::Claim>(out.writes[i])) claim_at = i;
  }
  CHECK(signals_at < claim_at);
  CHECK(e.stats().sightings == 2);
  CHECK(e.stats().hazards == 1);
}
