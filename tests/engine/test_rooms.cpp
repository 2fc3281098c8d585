// Scenario tests for the engine's rooms that had none of their own: the one retire path
// (lifecycle), the policy as a pure function, and the policy with road travel times.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "engine/engine.hpp"
#include "engine/policy.hpp"
#include "tests/engine/world.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

using engine_test::offset_km;
using engine_test::t0;
using engine_test::unit;

const geo::LatLon X{29.560, 106.550};

struct World : engine_test::World {
  using engine_test::World::World;
  static std::size_t writes_of(const Output& o, const std::string& assignment) {
    std::size_t n = 0;
    for (const auto& w : o.writes)
      if (auto* a = std::get_if<rec::Assignment>(&w); a && a->id == assignment) ++n;
    return n;
  }
  static bool has_line(const Incident& inc, const std::string& event, const std::string& unit) {
    return std::any_of(inc.timeline.begin(), inc.timeline.end(), [&](const rec::Timeline& t) {
      return t.event == event && t.detail.find(unit) != std::string::npos;
    });
  }
};

}  // namespace

TEST_CASE("retire: every way an assignment ends is counted, written, in the timeline, and frees the unit") {
  Config c;
  c.ack_within_ms = 30'000;
  World w(c);
  w.roster({unit("M1", UnitKind::moto), unit("M2", UnitKind::moto), unit("M3", UnitKind::moto)});
  w.pos("M1", offset_km(X, 0, 1));
  w.pos("M2", offset_km(X, 0, 2));
  w.pos("M3", offset_km(X, 0, 3));
  const Stats s0 = w.engine.stats();

  // Declined: counted, written, the next nearest at once.
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  CHECK(a1.unit == "M1");
  auto& d = w.run(cmd::Decline{a1.assignment, "flat tyre"}, w.gateway);
  CHECK(w.engine.stats().assignments_declined == s0.assignments_declined + 1);
  CHECK(World::writes_of(d, a1.assignment) == 1);
  CHECK(w.sent<ev::Assign>(d).at(0).unit == "M2");
  CHECK(w.engine.unit("M1")->status == UnitStatus::available);
  const Incident& i1 = *w.engine.incident(a1.incident);
  CHECK(World::has_line(i1, "declined", "M1"));

  // Lapsed (no ack): counted, the unit told, the next one (M3; M1 declined it).
  w.pos("M1", offset_km(X, 0, 1.001));
  w.pos("M2", offset_km(X, 0, 2.001));
  w.pos("M3", offset_km(X, 0, 3.001));
  auto& l = w.tick(31'000);
  CHECK(w.engine.stats().assignments_lapsed == s0.assignments_lapsed + 1);
  CHECK(w.sent<ev::Cancel>(l).at(0).unit == "M2");
  CHECK(w.sent<ev::Assign>(l).at(0).unit == "M3");
  CHECK(World::has_line(i1, "lapsed", "M2"));

  // Replaced by hand: counted as cancelled, the old unit told and freed, not put back.
  const auto cancelled0 = w.engine.stats().assignments_cancelled;
  auto& r = w.run(cmd::Assign{a1.incident, "M1"}, w.console);
  CHECK(w.engine.stats().assignments_cancelled == cancelled0 + 1);
  CHECK(w.sent<ev::Cancel>(r).at(0).unit == "M3");
  CHECK(w.engine.unit("M3")->status == UnitStatus::available);
  CHECK(World::has_line(i1, "cancelled", "M3"));

  // Closing the incident retires the active assignment the same way: counted (it was not
  // before), written, a timeline line, the unit told and freed.
  const std::string active = i1.needs[0].active->rec.id;
  auto& cl = w.run(cmd::Close{a1.incident}, w.console);
  CHECK(w.engine.stats().assignments_cancelled == cancelled0 + 2);
  CHECK(World::writes_of(cl, active) == 1);
  CHECK(w.sent<ev::Cancel>(cl).at(0).reason == "incident closed");
  CHECK(World::has_line(*w.engine.incident(a1.incident), "cancelled", "M1"));
  CHECK(w.engine.unit("M1")->status == UnitStatus::available);

  // Cleared: counted as cleared, the need done, the incident closed, the unit free.
  auto a2 = w.sent<ev::Assign>(w.report("r2", X)).at(0);
  auto& ok = w.run(cmd::Cleared{a2.assignment}, w.gateway);
  CHECK(w.engine.stats().assignments_cleared == s0.assignments_cleared + 1);
  CHECK(World::writes_of(ok, a2.assignment) == 1);
  CHECK(w.engine.incident(a2.incident)->rec.state == IncidentState::closed);
  CHECK(w.engine.unit(a2.unit)->status == UnitStatus::available);
  CHECK(w.engine.unit(a2.unit)->active == nullptr);
}

namespace {

// A small drawn world for the pure policy: rural north of 29.9.
class Map : public Geography {
 public:
  std::optional<PlaceRef> lz;
  std::optional<DistrictRef> district(geo::LatLon p) const override {
    return DistrictRef{p.lat > 29.9 ? "北部县" : "渝中区", p.lat <= 29.9};
  }
  std::optional<PlaceRef> trauma_hospital(geo::LatLon) const override {
    return PlaceRef{"T", "西南医院", {29.5636, 106.55}};
  }
  std::optional<PlaceRef> helipad_hospital(geo::LatLon) const override {
    return PlaceRef{"T", "西南医院", {29.5636, 106.55}};
  }
  std::optional<PlaceRef> landing_zone(geo::LatLon) const override { return lz; }
};

}  // namespace

TEST_CASE("policy: a pure function of the incident, the map and the fleet's answer") {
  Map map;
  map.lz = PlaceRef{"LZ", "北部停机坪", {30.30, 106.5104}};
  rec::Incident inc;
  inc.lat = 30.30;
  inc.lon = 106.50;
  inc.severity = Severity::injury;
  int asked = 0;
  policy::Inputs in;
  in.geography = &map;
  in.nearest = [&](UnitKind k, geo::LatLon, const std::vector<std::uint32_t>&) -> std::optional<policy::Choice> {
    ++asked;
    if (k == UnitKind::heli) return policy::Choice{7, 50'000, geo::air_eta_s(50'000)};
    return policy::Choice{1, 1'000, geo::ground_eta_s(1'000)};
  };
  // An injury: one motorcycle team to the scene.
  auto p = policy::plan(inc, in);
  REQUIRE(p.needs.size() == 1);
  CHECK(p.needs[0].kind == UnitKind::moto);
  CHECK(p.needs[0].task == Task::scene);
  CHECK(p.needs[0].target.lat == inc.lat);
  CHECK(p.reasons.empty());
  // Critical and rural: a helicopter too, with its reasons; the same inputs, the same plan.
  inc.severity = Severity::critical;
  auto p1 = policy::plan(inc, in);
  auto p2 = policy::plan(inc, in);
  REQUIRE(p1.needs.size() >= 2);
  CHECK(std::any_of(p1.needs.begin(), p1.needs.end(), [](auto& n) { return n.kind == UnitKind::heli; }));
  REQUIRE(p1.hospital.has_value());
  CHECK(p1.hospital->name == "西南医院");
  CHECK_FALSE(p1.reasons.empty());
  CHECK(p1.needs.size() == p2.needs.size());
  CHECK(p1.reasons.size() == p2.reasons.size());
  for (std::size_t i = 0; i < p1.reasons.size(); ++i) CHECK(p1.reasons[i].detail == p2.reasons[i].detail);
  CHECK(asked > 0);
}

namespace {

// Road travel times drawn by hand: seconds per unit position (by latitude key), or
// unreachable. Records what it was asked.
class HandRoads : public geo::TravelTimes {
 public:
  std::map<double, double> seconds_by_lat;  // unlisted: unreachable
  mutable std::size_t asked = 0;
  mutable std::size_t calls = 0;
  void to_target(geo::LatLon, std::span<const geo::LatLon> from, std::span<double> out) const override {
    ++calls;
    REQUIRE(out.size() == from.size());
    for (std::size_t i = 0; i < from.size(); ++i) {
      ++asked;
      auto it = seconds_by_lat.find(from[i].lat);
      out[i] = it == seconds_by_lat.end() ? std::numeric_limits<double>::infinity() : it->second;
    }
  }
};

}  // namespace

TEST_CASE("roads: ground units by least road ETA among the nearest by line; unreachable skipped") {
  // M1 is nearest by line but across the river (900 s by road); M2 is farther by line
  // and 300 s by road; M3 cannot reach the scene at all.
  const auto p1 = offset_km(X, 0.5, 0), p2 = offset_km(X, 2, 0), p3 = offset_km(X, 0.2, 0);
  HandRoads roads;
  roads.seconds_by_lat = {{p1.lat, 900}, {p2.lat, 300}};
  World w;
  w.engine.set_travel_times(&roads);
  w.roster({unit("M1", UnitKind::moto), unit("M2", UnitKind::moto), unit("M3", UnitKind::moto)});
  w.pos("M1", p1);
  w.pos("M2", p2);
  w.pos("M3", p3);
  SUBCASE("the least road ETA wins, and is the assign's eta_s") {
    auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);
    CHECK(a.unit == "M2");
    CHECK(a.eta_s == 300);  // the road ETA, not the straight line's
    CHECK(roads.asked >= 3);
  }
  SUBCASE("ties on road ETA go to the nearer by line") {
    roads.seconds_by_lat[p1.lat] = 300;
    CHECK(w.sent<ev::Assign>(w.report("r1", X)).at(0).unit == "M1");
  }
  SUBCASE("nobody reachable: the straight line decides") {
    roads.seconds_by_lat.clear();
    auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);
    CHECK(a.unit == "M3");
    CHECK(a.eta_s == doctest::Approx(geo::ground_eta_s(geo::distance_m(p3, X))).epsilon(0.01));
  }
}

TEST_CASE("roads: only road_candidates nearest by line are asked; helicopters fly straight") {
  Config c;
  c.road_candidates = 2;
  HandRoads roads;
  World w(c);
  w.engine.set_travel_times(&roads);
  std::vector<rec::Unit> units;
  for (int i = 0; i < 6; ++i) units.push_back(unit("M" + std::to_string(i), UnitKind::moto));
  units.push_back(unit("H1", UnitKind::heli));
  w.roster(units);
  for (int i = 0; i < 6; ++i) {
    const auto p = offset_km(X, 1.0 + i, 0);
    w.pos("M" + std::to_string(i), p);
    roads.seconds_by_lat[p.lat] = 1000.0 - 100 * i;  // the farther, the faster by road
  }
  w.pos("H1", offset_km(X, 40, 0));
  auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  // Among the 2 nearest by line (M0, M1), M1 is faster by road; M5 was never asked.
  CHECK(a.unit == "M1");
  CHECK(a.eta_s == 900);
  CHECK(roads.asked == 2);
  // A manual helicopter assignment: the straight-line air ETA, no road asked.
  const auto calls = roads.calls;
  auto& m = w.run(cmd::Assign{a.incident, "H1"}, w.console);
  auto h = w.sent<ev::Assign>(m);
  REQUIRE(!h.empty());
  CHECK(h.at(0).unit == "H1");
  CHECK(h.at(0).eta_s == doctest::Approx(geo::air_eta_s(geo::distance_m(offset_km(X, 40, 0), X))).epsilon(0.01));
  CHECK(roads.calls == calls);
}
