// Decisions that explain themselves (issue 14 item 3; protocol.md "Candidates"): every
// assignment keeps the units weighed, with why each was or was not chosen.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <cmath>
#include <limits>
#include <map>

#include "engine/engine.hpp"
#include "tests/engine/world.hpp"

using namespace dispatch;
using namespace dispatch::engine;
namespace json = boost::json;

namespace {

using engine_test::offset_km;
using engine_test::t0;
using engine_test::unit;

const geo::LatLon X{29.560, 106.550};

struct World : engine_test::World {
  using engine_test::World::World;
  // An injury at p, and the assign it got.
  ev::Assign report(const std::string& id, geo::LatLon p) {
    return first_assign(engine_test::World::report(id, p));
  }
  static ev::Assign first_assign(const Output& o) {
    for (const auto& m : o.messages)
      if (auto* p = std::get_if<ev::Assign>(&m.payload)) return *p;
    FAIL("no assign sent");
    return {};
  }
  // The assignment's candidates as the engine keeps them (and renders and stores them).
  json::array candidates(const ev::Assign& a) const {
    const Incident* inc = engine.incident(a.incident);
    REQUIRE(inc);
    for (const auto& x : inc->assignments)
      if (x->rec.id == a.assignment) return json::parse(x->rec.candidates).as_array();
    FAIL("no such assignment");
    return {};
  }
};

// unit id -> the candidate object
std::map<std::string, json::object> by_unit(const json::array& list) {
  std::map<std::string, json::object> m;
  for (const auto& v : list) m[std::string(v.at("unit").as_string())] = v.as_object();
  return m;
}

std::string why(const json::object& o) { return std::string(o.at("why").as_string()); }

class HandRoads : public geo::TravelTimes {
 public:
  std::map<double, double> seconds_by_lat;  // unlisted: unreachable
  void to_target(geo::LatLon, std::span<const geo::LatLon> from, std::span<double> out) const override {
    for (std::size_t i = 0; i < from.size(); ++i) {
      auto it = seconds_by_lat.find(from[i].lat);
      out[i] = it == seconds_by_lat.end() ? std::numeric_limits<double>::infinity() : it->second;
    }
  }
};

}  // namespace

TEST_CASE("candidates: the chosen unit, those farther, and the nearer ones that could not go, each with why") {
  World w;
  w.roster({unit("BUSY"), unit("OFF"), unit("STALE"), unit("NEAR"), unit("FAR"), unit("FAR2"),
            unit("H1", UnitKind::heli)});
  const auto p_busy = offset_km(X, 0.2, 0), p_off = offset_km(X, 0, 0.3), p_stale = offset_km(X, -0.4, 0);
  const auto p_near = offset_km(X, 1, 0), p_far = offset_km(X, 2, 0), p_far2 = offset_km(X, 9, 0);
  w.pos("STALE", p_stale);
  w.now += 61'000;  // STALE's fix is now older than stale_after_ms (60 s)
  w.pos("BUSY", p_busy);
  w.pos("OFF", p_off);
  w.pos("NEAR", p_near);
  w.pos("FAR", p_far);
  w.pos("FAR2", p_far2);
  w.pos("H1", offset_km(X, 0.1, 0));
  w.run(cmd::Status{"OFF", UnitStatus::off_duty}, w.gateway);
  // BUSY takes an accident at its own position.
  CHECK(w.report("r0", p_busy).unit == "BUSY");

  const auto a = w.report("r1", X);
  REQUIRE(a.unit == "NEAR");
  const auto list = w.candidates(a);
  CHECK(list.size() <= policy::max_candidates);
  CHECK(list.at(0).at("unit").as_string() == "NEAR");  // the chosen one first
  auto c = by_unit(list);
  REQUIRE(c.count("NEAR"));
  CHECK(why(c["NEAR"]) == "chosen");
  CHECK(c["NEAR"].at("distance_m").to_number<double>() == doctest::Approx(1000).epsilon(0.01));
  CHECK(c["NEAR"].at("eta_s").to_number<double>() == doctest::Approx(a.eta_s).epsilon(0.01));
  REQUIRE(c.count("FAR"));
  CHECK(why(c["FAR"]) == "farther");
  CHECK(c["FAR"].at("eta_s").to_number<double>() > a.eta_s);
  REQUIRE(c.count("BUSY"));
  CHECK(why(c["BUSY"]) == "busy");
  CHECK(c["BUSY"].at("eta_s").is_null());
  CHECK(c["BUSY"].at("distance_m").to_number<double>() == doctest::Approx(200).epsilon(0.02));
  REQUIRE(c.count("OFF"));
  CHECK(why(c["OFF"]) == "off_duty");
  REQUIRE(c.count("STALE"));
  CHECK(why(c["STALE"]) == "stale");
  CHECK_FALSE(c.count("H1"));  // another kind
  // Sorted by distance after the chosen one.
  for (std::size_t i = 2; i < list.size(); ++i)
    CHECK(list[i - 1].at("distance_m").to_number<double>() <= list[i].at("distance_m").to_number<double>());

  SUBCASE("a decline: the next assignment shows the unit that declined as declined") {
    auto& d = w.run(cmd::Decline{a.assignment, "flat tyre"}, w.gateway);
    const auto b = World::first_assign(d);
    REQUIRE(b.unit == "FAR");
    auto c2 = by_unit(w.candidates(b));
    CHECK(why(c2["FAR"]) == "chosen");
    REQUIRE(c2.count("NEAR"));
    CHECK(why(c2["NEAR"]) == "declined");
    CHECK(c2["NEAR"].at("eta_s").is_null());
    CHECK(why(c2["BUSY"]) == "busy");
    // The first assignment keeps what it weighed.
    CHECK(why(by_unit(w.candidates(a))["NEAR"]) == "chosen");
  }
  SUBCASE("a manual assignment: the dispatcher's unit, manual") {
    auto& m = w.run(cmd::Assign{a.incident, "H1"}, w.console);
    const auto h = World::first_assign(m);
    REQUIRE(h.unit == "H1");
    const auto l = w.candidates(h);
    REQUIRE(l.size() == 1);
    CHECK(l[0].at("unit").as_string() == "H1");
    CHECK(l[0].at("why").as_string() == "manual");
    CHECK(l[0].at("eta_s").to_number<double>() == doctest::Approx(h.eta_s).epsilon(0.01));
  }
}

TEST_CASE("candidates with roads: the unit across the river is farther, with its road ETA; unreachable ones say so") {
  // ACROSS is nearest by line but 900 s by the one bridge; SAME is farther by line and
  // 300 s by road; NOWAY cannot reach the scene at all.
  const auto p_across = offset_km(X, 0.5, 0), p_same = offset_km(X, 2, 0), p_noway = offset_km(X, 0.2, 0);
  HandRoads roads;
  roads.seconds_by_lat = {{p_across.lat, 900}, {p_same.lat, 300}};
  World w;
  w.engine.set_travel_times(&roads);
  w.roster({unit("ACROSS"), unit("SAME"), unit("NOWAY")});
  w.pos("ACROSS", p_across);
  w.pos("SAME", p_same);
  w.pos("NOWAY", p_noway);
  const auto a = w.report("r1", X);
  REQUIRE(a.unit == "SAME");
  auto c = by_unit(w.candidates(a));
  CHECK(why(c["SAME"]) == "chosen");
  CHECK(c["SAME"].at("eta_s").to_number<double>() == 300);
  REQUIRE(c.count("ACROSS"));
  CHECK(why(c["ACROSS"]) == "farther");
  CHECK(c["ACROSS"].at("eta_s").to_number<double>() == 900);
  CHECK(c["ACROSS"].at("distance_m").to_number<double>() == doctest::Approx(500).epsilon(0.01));
  REQUIRE(c.count("NOWAY"));
  CHECK(why(c["NOWAY"]) == "unreachable");
  CHECK(c["NOWAY"].at("eta_s").is_null());
}

TEST_CASE("candidates: the list is capped, the chosen one always in it") {
  Config cfg;
  cfg.road_candidates = 16;
  HandRoads roads;
  World w(cfg);
  w.engine.set_travel_times(&roads);
  std::vector<rec::Unit> units;
  for (int i = 0; i < 30; ++i) units.push_back(unit("M" + std::to_string(i)));
  w.roster(units);
  for (int i = 0; i < 30; ++i) {
    const auto p = offset_km(X, 0.1 * (i + 1), 0);
    w.pos("M" + std::to_string(i), p);
    roads.seconds_by_lat[p.lat] = 2000.0 - 10 * i;  // the farther by line, the faster by road
  }
  // The ten nearest become busy, each on an accident at its position.
  for (int i = 0; i < 10; ++i) {
    roads.seconds_by_lat[offset_km(X, 0.1 * (i + 1), 0).lat] = 1;  // sure to win its own
    const auto b = w.report("b" + std::to_string(i), offset_km(X, 0.1 * (i + 1), 0));
    REQUIRE(b.unit == "M" + std::to_string(i));
  }
  const auto a = w.report("r1", X);
  CHECK(a.unit == "M25");  // the fastest of the 16 nearest assignable (M10..M25)
  const auto list = w.candidates(a);
  CHECK(list.size() == policy::max_candidates);
  auto c = by_unit(list);
  CHECK(why(c["M25"]) == "chosen");
  int busy = 0, farther = 0;
  for (const auto& [id, o] : c) {
    busy += why(o) == "busy";
    farther += why(o) == "farther";
  }
  CHECK(busy == 4);  // the 4 nearest that could not go
  CHECK(farther == 3);
  CHECK(why(c["M24"]) == "farther");  // the next best by road
  CHECK(why(c["M0"]) == "busy");
}
