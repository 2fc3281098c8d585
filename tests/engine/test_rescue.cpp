// Air-ground rescue and remote handling scenarios, on a small drawn world.
//
//   north
//     ^     (rural above the line lat = 29.9)
//     |        R  rural scene, 30.30 N 106.50 E          LZ-R landing zone 1 km east of R
//     |        H1 helicopter base, 29.72 N 106.64 E (Jiangbei)
//   ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ lat 29.9
//     |   urban
//     |        U  urban scene, 29.560 N 106.550 E, 400 m from the trauma centre T
//     |        T  trauma centre with helipad, 29.5636 N 106.5500 E
//     |        F  far urban scene, 29.10 N 106.55 E (51 km south of T), LZ-F 500 m from F
//
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "tests/engine/world.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

using engine_test::t0;
using engine_test::unit;
const geo::LatLon R{30.30, 106.50}, LZR{30.30, 106.5104}, U{29.560, 106.550}, T{29.5636, 106.5500},
    F{29.10, 106.55}, LZF{29.1045, 106.55}, H1base{29.72, 106.64};

class DrawnWorld : public Geography {
 public:
  std::optional<DistrictRef> district(geo::LatLon p) const override {
    if (p.lat > 29.9) return DistrictRef{"北部县", false};
    return DistrictRef{"渝中区", true};
  }
  std::optional<PlaceRef> trauma_hospital(geo::LatLon) const override {
    return PlaceRef{"T", "西南医院", T};
  }
  std::optional<PlaceRef> helipad_hospital(geo::LatLon) const override {
    return PlaceRef{"T", "西南医院", T};
  }
  std::optional<PlaceRef> landing_zone(geo::LatLon p) const override {
    const PlaceRef zones[] = {{"LZ-R", "北部停机坪", LZR}, {"LZ-F", "南部停机坪", LZF}};
    const PlaceRef* best = nullptr;
    for (const auto& z : zones)
      if (!best || geo::distance_m(p, z.pos) < geo::distance_m(p, best->pos)) best = &z;
    return *best;
  }
};

struct World : engine_test::World {
  DrawnWorld map;

  World() {
    engine.set_geography(&map);
    roster({unit("M1", UnitKind::moto), unit("M2", UnitKind::moto), unit("H1", UnitKind::heli)});
    pos("M1", {U.lat + 0.01, U.lon});
    pos("M2", {R.lat - 0.01, R.lon});
    pos("H1", H1base);
  }
  Output& critical(const std::string& id, geo::LatLon p) {
    cmd::Report r;
    r.id = id;
    r.lat = p.lat;
    r.lon = p.lon;
    r.severity = Severity::critical;
    r.injured = 2;
    return run(r, console);
  }
  static std::vector<ev::Assign> assigns(const Output& o) { return sent<ev::Assign>(o); }
  bool has_event(const Incident& inc, const std::string& ev) const {
    for (const auto& t : inc.timeline)
      if (t.event == ev) return true;
    return false;
  }
};

}  // namespace

TEST_CASE("rural critical: the helicopter to a landing zone, a team to secure it, a team to the scene") {
  World w;
  auto& out = w.critical("rural-1", R);
  auto as = w.assigns(out);
  REQUIRE(as.size() == 3);
  auto by_unit = [&](const std::string& u) {
    for (const auto& a : as)
      if (a.unit == u) return a;
    FAIL("no assign to " << u);
    throw 0;
  };
  const auto heli = by_unit("H1");
  const auto moto = by_unit("M2");
  // The other motorcycle team (the only one left) secures the landing zone.
  const auto secure = by_unit("M1");
  CHECK(secure.task == Task::secure_lz);
  CHECK(secure.lat == doctest::Approx(LZR.lat));
  CHECK(secure.lon == doctest::Approx(LZR.lon));
  CHECK(heli.unit == "H1");
  CHECK(heli.task == Task::landing_zone);
  CHECK(heli.lat == doctest::Approx(LZR.lat));
  CHECK(heli.lon == doctest::Approx(LZR.lon));
  // heli ETA: 180 s readiness + flight to the landing zone.
  CHECK(heli.eta_s == doctest::Approx(geo::air_eta_s(geo::distance_m(H1base, LZR))).epsilon(0.01));
  CHECK(moto.unit == "M2");
  CHECK(moto.task == Task::scene);
  const Incident& inc = *w.engine.incident(heli.incident);
  CHECK(inc.rec.district == "北部县");
  CHECK(inc.rec.hospital == "西南医院");
  CHECK(w.has_event(inc, "air_rescue"));
}

TEST_CASE("urban critical next to a trauma centre: a motorcycle team only") {
  World w;
  auto& out = w.critical("urban-1", U);
  auto as = w.assigns(out);
  REQUIRE(as.size() == 1);
  CHECK(as[0].unit == "M1");
  const Incident& inc = *w.engine.incident(as[0].incident);
  CHECK(inc.rec.district == "渝中区");
  CHECK(inc.needs.size() == 1);
  CHECK(w.has_event(inc, "hospital"));
  CHECK_FALSE(w.has_event(inc, "air_rescue"));
}

TEST_CASE("urban critical far from the trauma centre: the helicopter wins on time") {
  World w;
  // Ground: 51 km x 1.3 at 30 km/h, about 2.2 h. Air: 180 s + 68 km + 51 km at 200 km/h.
  auto as = w.assigns(w.critical("far-1", F));
  REQUIRE(as.size() == 3);  // the helicopter to LZ-F (500 m), a team to the scene, one to LZ-F
  CHECK(std::any_of(as.begin(), as.end(), [](auto& a) { return a.unit == "H1" && a.task == Task::landing_zone; }));
  CHECK(std::any_of(as.begin(), as.end(), [](auto& a) { return a.task == Task::secure_lz; }));
}

TEST_CASE("the crew's rescue steps move the helicopter's assignment and fill the timeline") {
  World w;
  auto as = w.assigns(w.critical("rural-2", R));
  const auto heli = *std::find_if(as.begin(), as.end(), [](auto& a) { return a.unit == "H1"; });
  w.run(cmd::Rescue{heli.assignment, "airborne"}, w.gateway);
  CHECK(w.engine.unit("H1")->status == UnitStatus::en_route);
  w.run(cmd::Rescue{heli.assignment, "landed"}, w.gateway);
  CHECK(w.engine.unit("H1")->status == UnitStatus::on_scene);
  w.run(cmd::Rescue{heli.assignment, "patient_loaded"}, w.gateway);
  w.run(cmd::Rescue{heli.assignment, "transferred"}, w.gateway);
  CHECK(w.engine.unit("H1")->status == UnitStatus::available);
  const Incident& inc = *w.engine.incident(heli.incident);
  for (const char* step : {"airborne", "landed", "patient_loaded", "transferred"}) {
    CAPTURE(step);
    CHECK(w.has_event(inc, step));
  }
  auto& bad = w.run(cmd::Rescue{heli.assignment, "teleported"}, w.gateway);
  REQUIRE(!bad.messages.empty());
  CHECK(std::get<ev::Error>(bad.messages[0].payload).code == ErrorCode::bad_message);
}

TEST_CASE("escalate: a remote incident is dispatched after all") {
  World w;
  cmd::Report r;
  r.id = "remote-1";
  r.lat = U.lat;
  r.lon = U.lon;
  r.severity = Severity::minor;
  r.drivable = r.parties_agree = true;
  auto& out = w.run(r, w.console);
  CHECK(w.assigns(out).empty());
  const std::string id = std::get<ev::Accepted>(out.messages.at(0).payload).incident;
  CHECK(w.engine.incident(id)->rec.state == IncidentState::remote);
  auto& esc = w.run(cmd::Escalate{id, "video failed"}, w.console);
  auto as = w.assigns(esc);
  REQUIRE(as.size() == 1);
  CHECK(as[0].unit == "M1");
  CHECK(w.engine.incident(id)->rec.state == IncidentState::assigned);
  CHECK(w.has_event(*w.engine.incident(id), "escalated"));
  // Escalating again is a conflict.
  auto& again = w.run(cmd::Escalate{id, {}}, w.console);
  CHECK(std::get<ev::Error>(again.messages.at(0).payload).code == ErrorCode::conflict);
}

// The waiting queue across kinds and severities: nothing is assignable at first, then units
// report their first positions one at a time (all far from the most urgent incidents), and
// each goes to the most urgent waiting incident with a need of its kind: severity first,
// then the oldest report; a need a unit declined is skipped, not waited on.
TEST_CASE("waiting incidents get units most urgent first, across kinds and severities") {
  DrawnWorld map;
  Config config;
  config.lz_max_km = 0.5;  // no landing zone near enough: helicopters to the scene, no secure_lz
  Engine engine(config);
  engine.set_geography(&map);
  Principal gateway{"gateway", "gw", true, {}, {}};
  Principal console{"console", "desk", false, {}, {}};
  Snapshot s;
  for (std::string id : {"M1", "M2", "M3", "M4", "M5", "M6", "M7", "H1", "H2"}) {
    rec::Unit u;
    u.id = id;
    u.kind = id[0] == 'H' ? UnitKind::heli : UnitKind::moto;
    u.callsign = id;
    s.units.push_back(u);
  }
  Millis now = t0;
  engine.restore(s, now);
  Output out;
  std::map<std::string, std::string> incident_of;  // report id -> incident id
  auto report = [&](const std::string& id, geo::LatLon p, Severity sev) {
    cmd::Report r;
    r.id = id;
    r.lat = p.lat;
    r.lon = p.lon;
    r.severity = sev;
    out.clear();
    engine.handle(r, Origin{10, &console}, now, out);
    for (const auto& m : out.messages)
      if (auto* a = std::get_if<ev::Accepted>(&m.payload)) incident_of[id] = a->incident;
    now += 1000;
  };
  const geo::LatLon near_minor{29.40, 106.40};
  report("minor-old", {29.41, 106.40}, Severity::minor);
  report("injury-old", {29.50, 106.50}, Severity::injury);
  report("rural-crit-1", R, Severity::critical);  // a moto and a heli to the scene
  report("minor-new", {29.42, 106.40}, Severity::minor);
  report("urban-crit", U, Severity::critical);    // next to the trauma centre: a moto only
  report("injury-new", {29.51, 106.50}, Severity::injury);
  report("rural-crit-2", {R.lat + 0.01, R.lon}, Severity::critical);
  REQUIRE(engine.waiting_count() == 7);
  CHECK(engine.incident(incident_of["rural-crit-1"])->needs.size() == 2);
  CHECK(engine.incident(incident_of["urban-crit"])->needs.size() == 1);

  // Returns the report id the unit was sent to, and checks it was the only assign.
  auto first_position = [&](const std::string& unit, geo::LatLon p) {
    cmd::Position c{unit, p.lat, p.lon, now, {}, {}};
    out.clear();
    engine.positions(std::span(&c, 1), Origin{10, &gateway}, now, out);
    now += 1000;
    std::vector<ev::Assign> as;
    for (const auto& m : out.messages)
      if (auto* a = std::get_if<ev::Assign>(&m.payload)) as.push_back(*a);
    REQUIRE(as.size() == 1);
    CHECK(as[0].unit == unit);
    for (const auto& [rid, iid] : incident_of)
      if (iid == as[0].incident) return rid;
    return std::string("?");
  };
  CHECK(first_position("H1", H1base) == "rural-crit-1");  // a heli: the heli queue's first
  CHECK(engine.waiting_count() == 7);                      // it still waits for a moto
  CHECK(first_position("M1", near_minor) == "rural-crit-1");
  CHECK(engine.waiting_count() == 6);
  CHECK(first_position("M2", near_minor) == "urban-crit");
  CHECK(first_position("M3", near_minor) == "rural-crit-2");  // critical before any injury
  CHECK(engine.waiting_count() == 5);                          // rural-crit-2 waits for a heli
  CHECK(first_position("H2", H1base) == "rural-crit-2");
  CHECK(engine.waiting_count() == 4);
  CHECK(first_position("M4", near_minor) == "injury-old");
  CHECK(first_position("M5", near_minor) == "injury-new");
  CHECK(first_position("M6", {29.60, 106.60}) == "minor-old");
  CHECK(engine.waiting_count() == 1);

  // M6 declines minor-old: it waits again, with M6 excluded from it, and M6, free again,
  // goes at once to the next waiting incident it may take: minor-new.
  const std::string a6 = engine.unit("M6")->active->rec.id;
  out.clear();
  engine.handle(cmd::Decline{a6, "flat tyre"}, Origin{10, &gateway}, now, out);
  REQUIRE(engine.unit("M6")->active);
  CHECK(engine.unit("M6")->active->rec.incident == incident_of["minor-new"]);
  CHECK(engine.waiting_count() == 1);  // minor-old
  // M6 clears it: minor-old comes first in the queue but M6 declined it, so it is passed
  // over (not waited on) and M6 stays free.
  out.clear();
  engine.handle(cmd::Cleared{engine.unit("M6")->active->rec.id}, Origin{10, &gateway}, now, out);
  std::vector<ev::Assign> as;
  for (const auto& m : out.messages)
    if (auto* a = std::get_if<ev::Assign>(&m.payload)) as.push_back(*a);
  CHECK(as.empty());
  CHECK(engine.unit("M6")->status == UnitStatus::available);
  CHECK(engine.waiting_count() == 1);
  // M7 appears: minor-old gets it.
  CHECK(first_position("M7", near_minor) == "minor-old");
  CHECK(engine.waiting_count() == 0);
}

TEST_CASE("the rescue chain: each step once, with its time and actor, and the air clocks met") {
  World w;
  auto as = w.assigns(w.critical("chain-1", R));
  const auto heli = *std::find_if(as.begin(), as.end(), [](auto& a) { return a.unit == "H1"; });
  const auto secure = *std::find_if(as.begin(), as.end(), [](auto& a) { return a.task == Task::secure_lz; });
  const Incident& inc = *w.engine.incident(heli.incident);
  REQUIRE(inc.rescue);
  CHECK(inc.rescue->target == Task::landing_zone);
  REQUIRE(inc.rescue->landing_zone);
  CHECK(inc.rescue->landing_zone->id == "LZ-R");
  REQUIRE(inc.rescue->hospital);
  CHECK(inc.rescue->hospital->name == "西南医院");
  REQUIRE(inc.rescue->steps.size() == 2);
  CHECK(inc.rescue->steps[0].step == "hospital_notified");
  CHECK(inc.rescue->steps[1].step == "heli_called");
  CHECK(inc.rescue->steps[1].ts == w.now);
  // The air clocks run from the call.
  for (const char* c : {"airborne", "landed", "hospital"}) {
    CAPTURE(c);
    REQUIRE(inc.clock(c));
    CHECK(inc.clock(c)->start_ts == w.now);
    CHECK(inc.clock(c)->done_ts == 0);
  }
  CHECK(inc.clock("airborne")->due_ts == w.now + Config{}.airborne_within_ms);

  w.now += 60'000;
  w.run(cmd::Rescue{heli.assignment, "airborne"}, w.gateway);
  w.run(cmd::Rescue{heli.assignment, "airborne"}, w.gateway);  // again: still once
  CHECK(inc.clock("airborne")->done_ts == w.now);
  w.now += 60'000;
  w.run(cmd::Arrived{secure.assignment}, w.gateway);  // the securing team is at the landing zone
  w.now += 60'000;
  w.run(cmd::Rescue{heli.assignment, "landed"}, w.gateway);
  w.run(cmd::Rescue{heli.assignment, "patient_loaded"}, w.gateway);
  w.now += 600'000;
  w.run(cmd::Rescue{heli.assignment, "transferred"}, w.gateway);
  std::vector<std::string> steps;
  for (const auto& s : inc.rescue->steps) steps.push_back(s.step);
  CHECK(steps == std::vector<std::string>{"hospital_notified", "heli_called", "airborne", "lz_secured", "landed",
                                          "patient_loaded", "transferred"});
  CHECK(inc.rescue->steps[3].actor.role == "gateway");
  CHECK(inc.rescue->steps[0].actor.role == "system");
  CHECK(inc.clock("landed")->done_ts != 0);
  CHECK(inc.clock("hospital")->done_ts == w.now);
  const auto& sl = w.engine.service_levels().at("北部县|critical");
  CHECK(sl.call_to_airborne.count == 1);
  CHECK(sl.call_to_airborne.max_s == doctest::Approx(60));
  CHECK(sl.call_to_hospital.max_s == doctest::Approx(780));
  // No alerts: every clock was met in time.
  Output o;
  w.engine.tick(w.now + 10 * 3'600'000, o);
  for (const auto& m : o.messages) CHECK_FALSE(std::holds_alternative<ev::Alert>(m.payload));
}

TEST_CASE("an air stage overruns: one overdue alert, a timeline line, a counter") {
  Config c;
  c.airborne_within_ms = 120'000;
  Principal gateway{"gateway", "gw", true, {}, {}};
  Principal console{"console", "desk", false, {}, {}};
  DrawnWorld map;
  Engine engine(c);
  engine.set_geography(&map);
  Snapshot s;
  for (std::string id : {"M1", "M2", "H1"}) {
    rec::Unit u;
    u.id = id;
    u.kind = id[0] == 'H' ? UnitKind::heli : UnitKind::moto;
    u.callsign = id;
    s.units.push_back(u);
  }
  Millis now = t0;
  engine.restore(s, now);
  Output out;
  for (auto [id, p] : std::vector<std::pair<std::string, geo::LatLon>>{{"M1", {R.lat - 0.02, R.lon}}, {"M2", {R.lat - 0.01, R.lon}}, {"H1", H1base}}) {
    cmd::Position pc{id, p.lat, p.lon, now, {}, {}};
    engine.positions(std::span(&pc, 1), Origin{10, &gateway}, now, out);
  }
  cmd::Report r;
  r.id = "late-1";
  r.lat = R.lat;
  r.lon = R.lon;
  r.severity = Severity::critical;
  out.clear();
  engine.handle(r, Origin{10, &console}, now, out);
  std::string iid;
  for (const auto& m : out.messages)
    if (auto* a = std::get_if<ev::Accepted>(&m.payload)) iid = a->incident;
  out.clear();
  engine.tick(now + 119'000, out);
  for (const auto& m : out.messages) CHECK_FALSE(std::holds_alternative<ev::Alert>(m.payload));
  out.clear();
  engine.tick(now + 121'000, out);
  std::vector<ev::Alert> alerts;
  for (const auto& m : out.messages)
    if (auto* a = std::get_if<ev::Alert>(&m.payload)) {
      alerts.push_back(*a);
      CHECK(m.to.kind == Target::Kind::consoles);
    }
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].alert == "overdue");
  CHECK(alerts[0].clock == "airborne");
  CHECK(alerts[0].incident == iid);
  CHECK(alerts[0].due_ts == now + 120'000);
  CHECK(alerts[0].ts == now + 121'000);
  CHECK(out.must_wait);
  CHECK(engine.stats().overdue[2] == 1);
  const Incident& inc = *engine.incident(iid);
  CHECK(inc.clock("airborne")->overdue);
  CHECK(std::any_of(inc.timeline.begin(), inc.timeline.end(),
                    [](const rec::Timeline& t) { return t.event == "overdue" && t.detail == "airborne"; }));
  out.clear();
  engine.tick(now + 200'000, out);
  for (const auto& m : out.messages) CHECK_FALSE(std::holds_alternative<ev::Alert>(m.payload));
  CHECK(engine.stats().overdue[2] == 1);
}
