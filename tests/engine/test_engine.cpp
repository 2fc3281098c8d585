// Scenario tests for the engine, in-process with a fixed clock.
//
// Most scenarios use this small map of central Chongqing (1 cell ~ 1 km; north up):
//
//        A . . . . . B        X: the accident, 29.560 N 106.550 E
//        . . . . . . .        M1: 2 km east of X          (moto)
//        . . . X . M1.        M2: 1 km west of X          (moto)
//        . . M2. . . .        M3: 3 km north of X         (moto)
//        C1. . . . . .        C1: 0.3 km south-west of X  (car: never sent to injuries)
//
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>

#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

constexpr Millis t0 = 1'764'300'000'000;
const geo::LatLon X{29.560, 106.550};

geo::LatLon offset_km(geo::LatLon p, double north_km, double east_km) {
  const double dlat = north_km / 111.195;
  const double dlon = east_km / (111.195 * std::cos(geo::deg2rad(p.lat)));
  return {p.lat + dlat, p.lon + dlon};
}

// A harness: an engine, its principals, and what it said.
struct World {
  Engine engine;
  Principal gateway{"gateway", "gw", true, {}, {}};
  Principal console{"console", "desk1", false, {}, {}};
  Principal reporter{"reporter", "cc", false, {}, {}};
  Principal pager{"pager", "pg", false, {}, {}};
  static constexpr ConnId gw_conn = 10, console_conn = 20, reporter_conn = 30, pager_conn = 40;
  Output out;
  Millis now = t0;

  explicit World(Config c = {}) : engine(c) {}

  void roster(std::vector<rec::Unit> units) {
    Snapshot s;
    s.units = std::move(units);
    engine.restore(s, now);
  }
  Output& pos(const std::string& unit, geo::LatLon p, Millis ts = 0) {
    cmd::Position c{unit, p.lat, p.lon, ts ? ts : now, {}, {}};
    out.clear();
    engine.positions(std::span(&c, 1), Origin{gw_conn, &gateway}, now, out);
    return out;
  }
  Output& run(Command c, const Principal& who, ConnId conn) {
    out.clear();
    engine.handle(c, Origin{conn, &who}, now, out);
    return out;
  }
  Output& report(const std::string& id, geo::LatLon p, Severity s = Severity::injury) {
    cmd::Report r;
    r.id = id;
    r.lat = p.lat;
    r.lon = p.lon;
    r.severity = s;
    return run(r, reporter, reporter_conn);
  }
  Output& unit_says(Command c) { return run(std::move(c), gateway, gw_conn); }
  Output& tick(Millis advance_ms) {
    now += advance_ms;
    out.clear();
    engine.tick(now, out);
    return out;
  }

  template <class T>
  std::vector<T> sent(const Output& o) const {
    std::vector<T> v;
    for (const auto& m : o.messages)
      if (auto* p = std::get_if<T>(&m.payload)) v.push_back(*p);
    return v;
  }
  std::string assigned_unit(const Output& o) const {
    auto as = sent<ev::Assign>(o);
    return as.empty() ? std::string() : as.back().unit;
  }
  const Incident& incident_of(const std::string& report_id) const {
    for (const Incident* i : engine.open_incidents())
      if (i->rec.report_id == report_id) return *i;
    FAIL("no open incident for " << report_id);
    throw 0;
  }
};

rec::Unit moto(std::string id, std::string capcode = {}) {
  rec::Unit u;
  u.id = std::move(id);
  u.kind = UnitKind::moto;
  u.callsign = "渝警保" + u.id;
  u.capcode = std::move(capcode);
  return u;
}
rec::Unit car(std::string id) {
  auto u = moto(std::move(id));
  u.kind = UnitKind::car;
  return u;
}

// The map above.
void place_all(World& w) {
  w.roster({moto("M1"), moto("M2"), moto("M3"), car("C1")});
  w.pos("M1", offset_km(X, 0, 2));
  w.pos("M2", offset_km(X, -0.2, -1));
  w.pos("M3", offset_km(X, 3, 0));
  w.pos("C1", offset_km(X, -0.2, -0.2));
}

}  // namespace

TEST_CASE("an injury report goes to the nearest moto, durable first") {
  World w;
  place_all(w);
  auto& out = w.report("r1", X);
  CHECK(out.must_wait);
  CHECK(w.assigned_unit(out) == "M2");  // the car is nearer but is no moto
  auto acc = w.sent<ev::Accepted>(out);
  REQUIRE(acc.size() == 1);
  CHECK(acc[0].report_id == "r1");
  // The incident and its assignment are among the writes, the incident first.
  std::size_t inc_at = 99, asg_at = 99;
  for (std::size_t i = 0; i < out.writes.size(); ++i) {
    if (std::holds_alternative<rec::Incident>(out.writes[i]) && inc_at == 99) inc_at = i;
    if (std::holds_alternative<rec::Assignment>(out.writes[i]) && asg_at == 99) asg_at = i;
  }
  CHECK(inc_at < asg_at);
  CHECK(asg_at != 99);
  const auto a = w.sent<ev::Assign>(out).at(0);
  CHECK(a.task == Task::scene);
  CHECK(a.ack_within_s == 30);
  // ETA: about 1.02 km x 1.3 at 30 km/h.
  CHECK(a.eta_s == doctest::Approx(geo::ground_eta_s(geo::distance_m(offset_km(X, -0.2, -1), X))).epsilon(0.01));
  // The assign goes to the gateway that last sent M2's position.
  for (const auto& m : out.messages)
    if (std::holds_alternative<ev::Assign>(m.payload)) CHECK(m.to.conn == World::gw_conn);
  CHECK(w.engine.unit("M2")->status == UnitStatus::assigned);
  CHECK(w.incident_of("r1").rec.state == IncidentState::assigned);
}

TEST_CASE("the same report id again is the same incident") {
  World w;
  place_all(w);
  const auto first = w.sent<ev::Accepted>(w.report("r1", X)).at(0);
  auto& again = w.report("r1", offset_km(X, 5, 5));
  const auto second = w.sent<ev::Accepted>(again).at(0);
  CHECK(second.incident == first.incident);
  CHECK(w.sent<ev::Assign>(again).empty());
  CHECK(again.must_wait);  // the first answer may not be on disk yet
  CHECK(w.engine.open_incidents().size() == 1);
}

TEST_CASE("decline moves the incident to the next nearest") {
  World w;
  place_all(w);
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  CHECK(a1.unit == "M2");
  auto& out = w.unit_says(cmd::Decline{a1.assignment, "flat tyre"});
  CHECK(w.assigned_unit(out) == "M1");
  CHECK(w.engine.unit("M2")->status == UnitStatus::available);
  // M2 is not asked again for this incident, even when M1 declines too.
  auto a2 = w.sent<ev::Assign>(out).at(0);
  auto& out2 = w.unit_says(cmd::Decline{a2.assignment, {}});
  CHECK(w.assigned_unit(out2) == "M3");
  auto a3 = w.sent<ev::Assign>(out2).at(0);
  auto& out3 = w.unit_says(cmd::Decline{a3.assignment, {}});
  CHECK(w.sent<ev::Assign>(out3).empty());
  CHECK(w.incident_of("r1").rec.state == IncidentState::dispatching);
  // Declining twice is a conflict, not a crash.
  auto& again = w.unit_says(cmd::Decline{a3.assignment, {}});
  REQUIRE(w.sent<ev::Error>(again).size() == 1);
  CHECK(w.sent<ev::Error>(again)[0].code == ErrorCode::conflict);
}

TEST_CASE("a unit freed by a decline or a lapse goes to another waiting incident at once") {
  World w;
  w.roster({moto("M1")});
  w.pos("M1", offset_km(X, 0, 1));
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  CHECK(w.sent<ev::Assign>(w.report("r2", offset_km(X, 1, 0))).empty());
  CHECK(w.engine.waiting_count() == 1);
  // M1 declines r1: r1 may not have it again, but r2, waiting, gets it now.
  auto& out = w.unit_says(cmd::Decline{a1.assignment, "wrong bank"});
  auto next = w.sent<ev::Assign>(out);
  REQUIRE(next.size() == 1);
  CHECK(next[0].unit == "M1");
  CHECK(w.incident_of("r2").rec.state == IncidentState::assigned);
  CHECK(w.incident_of("r1").rec.state == IncidentState::dispatching);
  // A third incident waits; M1 lets r2's assignment lapse: r3 gets M1 in the same tick.
  CHECK(w.sent<ev::Assign>(w.report("r3", offset_km(X, 2, 0))).empty());
  auto& lapsed = w.tick(31'000);
  auto after = w.sent<ev::Assign>(lapsed);
  REQUIRE(after.size() == 1);
  CHECK(after[0].unit == "M1");
  CHECK(w.incident_of("r3").rec.state == IncidentState::assigned);
}

TEST_CASE("stale units are skipped") {
  World w;
  w.roster({moto("M1"), moto("M2")});
  w.pos("M2", offset_km(X, 0, -1), t0 - 61'000);  // its last fix is 61 s old
  w.pos("M1", offset_km(X, 0, 2));
  CHECK(w.engine.wire_status(*w.engine.unit("M2"), w.now) == "stale");
  CHECK(w.assigned_unit(w.report("r1", X)) == "M1");
}

TEST_CASE("no unit free: the incident waits and is assigned when one clears") {
  World w;
  w.roster({moto("M1"), moto("M2")});
  w.pos("M1", offset_km(X, 0, 1));
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  auto& out = w.report("r2", offset_km(X, 1, 0));
  CHECK(w.sent<ev::Assign>(out).empty());
  CHECK(w.incident_of("r2").rec.state == IncidentState::dispatching);
  CHECK(w.engine.waiting_count() == 1);
  w.unit_says(cmd::Ack{a1.assignment});
  CHECK(w.incident_of("r1").rec.state == IncidentState::en_route);
  w.unit_says(cmd::Arrived{a1.assignment});
  CHECK(w.incident_of("r1").rec.state == IncidentState::on_scene);
  auto& cleared = w.unit_says(cmd::Cleared{a1.assignment});
  // M1 is free again and goes to the waiting incident at once; r1 is closed.
  auto next = w.sent<ev::Assign>(cleared);
  REQUIRE(next.size() == 1);
  CHECK(next[0].unit == "M1");
  CHECK(w.incident_of("r2").rec.state == IncidentState::assigned);
  CHECK(w.engine.incident(a1.incident)->rec.state == IncidentState::closed);
  CHECK(w.engine.waiting_count() == 0);
}

TEST_CASE("a waiting incident is assigned when a unit reports its first position") {
  World w;
  w.roster({moto("M1")});
  w.report("r1", X);
  CHECK(w.incident_of("r1").rec.state == IncidentState::dispatching);
  auto& out = w.pos("M1", offset_km(X, 2, 2));
  CHECK(w.assigned_unit(out) == "M1");
  CHECK(out.must_wait);
}

TEST_CASE("the most urgent waiting incident gets the first free unit") {
  World w;
  w.roster({moto("M1")});
  w.report("minor", X, Severity::minor);
  w.now += 1000;
  w.report("crit", offset_km(X, 10, 10), Severity::critical);
  auto& out = w.pos("M1", X);
  auto as = w.sent<ev::Assign>(out);
  REQUIRE(as.size() == 1);
  CHECK(as[0].severity == Severity::critical);
}

TEST_CASE("an assignment not acked in time lapses to the next unit, and the unit is told") {
  Config c;
  c.ack_within_ms = 30'000;
  World w(c);
  place_all(w);
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  CHECK(w.sent<ev::Assign>(w.tick(29'000)).empty());
  // Keep positions fresh while time passes.
  w.pos("M1", offset_km(X, 0, 2.01));
  auto& out = w.tick(1'500);
  auto cancels = w.sent<ev::Cancel>(out);
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0].assignment == a1.assignment);
  CHECK(cancels[0].unit == "M2");
  CHECK(w.assigned_unit(out) == "M1");
  CHECK(out.must_wait);
  // A late ack of the lapsed assignment is refused.
  auto& late = w.unit_says(cmd::Ack{a1.assignment});
  CHECK(w.sent<ev::Error>(late).at(0).code == ErrorCode::conflict);
}

TEST_CASE("remote fast handling: no unit sent; liability hands claims to insurers; paid closes it") {
  World w;
  place_all(w);
  cmd::Report r;
  r.id = "remote1";
  r.lat = X.lat;
  r.lon = X.lon;
  r.severity = Severity::minor;
  r.drivable = true;
  r.parties_agree = true;
  r.vehicles = {{"渝A12345", "PICC"}, {"渝B54321", "平安"}};
  auto& out = w.run(r, w.reporter, World::reporter_conn);
  CHECK(w.sent<ev::Assign>(out).empty());
  CHECK(w.incident_of("remote1").rec.state == IncidentState::remote);
  const std::string id = w.sent<ev::Accepted>(out).at(0).incident;
  auto& bad = w.run(cmd::Liability{id, "渝Z00000", {}}, w.console, World::console_conn);
  CHECK(w.sent<ev::Error>(bad).at(0).code == ErrorCode::bad_message);
  auto& decided = w.run(cmd::Liability{id, "渝A12345", "rear-end"}, w.console, World::console_conn);
  CHECK(w.engine.incident(id)->rec.at_fault == "渝A12345");
  // One claim per insurer, each sent to that insurer; the incident waits for payment.
  std::vector<std::string> claims, insurers;
  for (const auto& m : decided.messages)
    if (auto* c = std::get_if<ev::Claim>(&m.payload)) {
      CHECK(m.to.kind == Target::Kind::insurer);
      claims.push_back(c->claim);
      insurers.push_back(m.to.insurer);
    }
  REQUIRE(claims.size() == 2);
  CHECK(insurers == std::vector<std::string>{"PICC", "平安"});
  CHECK(w.engine.claim(claims[0])->insured_at_fault);
  CHECK_FALSE(w.engine.claim(claims[1])->insured_at_fault);
  CHECK(w.engine.incident(id)->rec.state == IncidentState::remote);
  Principal picc{"insurer", "picc", false, {}, "PICC"};
  Principal pingan{"insurer", "pingan", false, {}, "平安"};
  auto& wrong = w.run(cmd::ClaimPaid{claims[1], 800}, picc, 50);
  CHECK(w.sent<ev::Error>(wrong).at(0).code == ErrorCode::forbidden);
  w.now += 60'000;
  w.run(cmd::ClaimPaid{claims[0], 3200.5}, picc, 50);
  CHECK(w.engine.incident(id)->rec.state == IncidentState::remote);
  w.run(cmd::ClaimPaid{claims[1], 0}, pingan, 51);
  CHECK(w.engine.incident(id)->rec.state == IncidentState::closed);
  CHECK(w.engine.claim(claims[0])->paid);
  CHECK(w.engine.claim(claims[0])->amount == 3200.5);
  const auto& sl = w.engine.service_levels().at("|minor");
  CHECK(sl.to_liability.count == 1);
  CHECK(sl.to_claim_paid.count == 2);
  CHECK(sl.to_claim_paid.max_s == doctest::Approx(60.0));
}

TEST_CASE("remote without insured vehicles: the liability decision closes it") {
  World w;
  place_all(w);
  cmd::Report r;
  r.id = "remote2";
  r.lat = X.lat;
  r.lon = X.lon;
  r.drivable = r.parties_agree = true;
  const std::string id = w.sent<ev::Accepted>(w.run(r, w.reporter, World::reporter_conn)).at(0).incident;
  w.run(cmd::Liability{id, "none", {}}, w.console, World::console_conn);
  CHECK(w.engine.incident(id)->rec.state == IncidentState::closed);
}

TEST_CASE("off duty units are not assigned; going off duty with a task is a conflict") {
  World w;
  place_all(w);
  w.unit_says(cmd::Status{"M2", UnitStatus::off_duty});
  auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  CHECK(a.unit == "M1");
  auto& out = w.unit_says(cmd::Status{"M1", UnitStatus::off_duty});
  CHECK(w.sent<ev::Error>(out).at(0).code == ErrorCode::conflict);
  // Back on duty: M2 is available again (and nothing waits).
  w.unit_says(cmd::Status{"M2", UnitStatus::available});
  CHECK(w.engine.unit("M2")->status == UnitStatus::available);
}

TEST_CASE("a unit token speaks only for its own units") {
  World w;
  place_all(w);
  Principal m1{"unit", "m1", false, {"M1"}, {}};
  cmd::Position p{"M2", X.lat, X.lon, w.now + 1, {}, {}};
  Output out;
  w.engine.positions(std::span(&p, 1), Origin{99, &m1}, w.now, out);
  REQUIRE(w.sent<ev::Error>(out).size() == 1);
  CHECK(w.sent<ev::Error>(out)[0].code == ErrorCode::forbidden);
  CHECK(w.sent<ev::Error>(out)[0].ref == "M2");
  auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);  // M2
  auto& ack = w.run(cmd::Ack{a.assignment}, m1, 99);
  CHECK(w.sent<ev::Error>(ack).at(0).code == ErrorCode::forbidden);
  // The pager gateway may ack for any unit.
  auto& pager_ack = w.run(cmd::Ack{a.assignment}, w.pager, World::pager_conn);
  CHECK(w.sent<ev::Error>(pager_ack).empty());
  CHECK(w.engine.unit("M2")->status == UnitStatus::en_route);
}

TEST_CASE("position hygiene: out of order, GPS jumps, far future") {
  World w;
  w.roster({moto("M1"), rec::Unit{"H1", UnitKind::heli, "渝救援1", {}, {}, UnitStatus::available, 0}});
  w.pos("M1", X, t0);
  w.pos("M1", offset_km(X, 0, 1), t0 - 5000);  // older: ignored
  CHECK(w.engine.unit("M1")->pos == X);
  CHECK(w.engine.stats().positions_out_of_order == 1);
  w.now += 10'000;
  w.pos("M1", offset_km(X, 0, 1), t0 + 10'000);  // 1 km in 10 s = 360 km/h: a jump
  CHECK(w.engine.unit("M1")->pos == X);
  CHECK(w.engine.stats().positions_gps_jump == 1);
  w.pos("M1", offset_km(X, 0, 0.5), t0 + 10'000);  // 180 km/h: fine
  CHECK(w.engine.unit("M1")->pos != X);
  // A helicopter may do 360 km/h.
  w.pos("H1", X, t0);
  w.pos("H1", offset_km(X, 0, 1), t0 + 10'000);
  CHECK(w.engine.unit("H1")->pos == offset_km(X, 0, 1));
  auto& fut = w.pos("M1", X, w.now + 301'000);
  CHECK(w.sent<ev::Error>(fut).at(0).code == ErrorCode::bad_message);
  auto& unknown = w.pos("NOPE", X);
  CHECK(w.sent<ev::Error>(unknown).at(0).code == ErrorCode::unknown_unit);
}

TEST_CASE("manual assignment withdraws a conflicting assignment with cancel") {
  World w;
  place_all(w);
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);  // M2 -> r1
  auto& r2 = w.report("r2", offset_km(X, 3, 0.5));         // M3 -> r2
  auto a2 = w.sent<ev::Assign>(r2).at(0);
  CHECK(a2.unit == "M3");
  // The dispatcher sends M2 to r2 instead.
  auto& out = w.run(cmd::Assign{a2.incident, "M2"}, w.console, World::console_conn);
  auto cancels = w.sent<ev::Cancel>(out);
  // M2 leaves r1, M3 is replaced on r2: two cancels.
  CHECK(cancels.size() == 2);
  auto assigns = w.sent<ev::Assign>(out);
  const bool m2_to_r2 = std::any_of(assigns.begin(), assigns.end(), [&](auto& a) {
    return a.unit == "M2" && a.incident == a2.incident;
  });
  CHECK(m2_to_r2);
  // r1 lost M2 and got the next nearest free unit.
  const Incident& i1 = w.incident_of("r1");
  CHECK(i1.needs[0].active != nullptr);
  CHECK(i1.needs[0].active->rec.unit != "M2");
  CHECK(w.engine.unit("M2")->active->rec.incident == a2.incident);
  (void)a1;
  // Unknown ids answer with the right codes.
  CHECK(w.sent<ev::Error>(w.run(cmd::Assign{"I-999999", "M2"}, w.console, 20)).at(0).code ==
        ErrorCode::unknown_incident);
  CHECK(w.sent<ev::Error>(w.run(cmd::Assign{a2.incident, "ZZ"}, w.console, 20)).at(0).code ==
        ErrorCode::unknown_unit);
  CHECK(w.sent<ev::Error>(w.run(cmd::Cancel{"A-999999"}, w.console, 20)).at(0).code ==
        ErrorCode::unknown_assignment);
}

TEST_CASE("close cancels active assignments and frees the units") {
  World w;
  place_all(w);
  auto a = w.sent<ev::Assign>(w.report("r1", X)).at(0);
  auto& out = w.run(cmd::Close{a.incident}, w.console, World::console_conn);
  CHECK(w.sent<ev::Cancel>(out).size() == 1);
  CHECK(w.engine.unit("M2")->status == UnitStatus::available);
  CHECK(w.engine.incident(a.incident)->rec.state == IncidentState::closed);
  CHECK(w.sent<ev::Error>(w.run(cmd::Close{a.incident}, w.console, 20)).at(0).code == ErrorCode::conflict);
}

TEST_CASE("pages: one per assign to a unit with a capcode, at most 80 characters, resent until delivered") {
  Config c;
  c.page_retry_ms = 20'000;
  c.ack_within_ms = 600'000;  // no lapse while pages are resent
  World w(c);
  w.roster({moto("M1", "1200001"), moto("M2")});
  w.pos("M1", offset_km(X, 0, 1));
  auto& out = w.report("r1", X);
  auto pages = w.sent<ev::Page>(out);
  REQUIRE(pages.size() == 1);
  CHECK(pages[0].capcode == "1200001");
  CHECK(pages[0].unit == "M1");
  // Count characters, not bytes: the callsign is Chinese.
  std::size_t chars = 0;
  for (unsigned char ch : pages[0].text) chars += (ch & 0xC0) != 0x80;
  CHECK(chars <= 80);
  CHECK(pages[0].text.find("渝警保M1") == 0);
  // No pager gateway connected: nothing to resend to.
  CHECK(w.sent<ev::Page>(w.tick(21'000)).empty());
  Output on_connect;
  w.engine.pager_connected(World::pager_conn, on_connect);
  CHECK(w.sent<ev::Page>(on_connect).size() == 1);  // the undelivered page at once
  CHECK(w.sent<ev::Page>(w.tick(1'000)).empty());  // not again at the next tick
  auto& resend = w.tick(20'000);  // a retry period after the tick that found it due
  CHECK(w.sent<ev::Page>(resend).size() == 1);
  CHECK(w.sent<ev::Page>(w.tick(1'000)).empty());
  w.run(cmd::Delivered{pages[0].page}, w.pager, World::pager_conn);
  CHECK(w.sent<ev::Page>(w.tick(5'000)).empty());
  // A page whose assignment ended is dropped, not resent.
  auto& r2 = w.report("r2", X);
  REQUIRE(w.sent<ev::Page>(r2).empty());  // M1 is busy; M2 has no capcode
  // M1 clears r1 and goes straight to the waiting r2: a new page.
  auto p2 = w.sent<ev::Page>(w.unit_says(cmd::Cleared{w.engine.unit("M1")->active->rec.id}));
  REQUIRE(p2.size() == 1);
  w.run(cmd::Close{w.engine.unit("M1")->active->rec.incident}, w.console, World::console_conn);
  CHECK(w.sent<ev::Page>(w.tick(25'000)).empty());
}

TEST_CASE("pages: without a pager gateway, pages of ended assignments leave memory; a delivery finds its page by id") {
  Config c;
  c.page_retry_ms = 20'000;
  World w(c);
  w.roster({moto("M1", "1200001")});
  w.pos("M1", offset_km(X, 0, 1));
  std::vector<std::string> page_ids;
  for (int i = 0; i < 30; ++i) {
    auto pages = w.sent<ev::Page>(w.report("r" + std::to_string(i), X));
    REQUIRE(pages.size() == 1);
    page_ids.push_back(pages[0].page);
    const auto* u = w.engine.unit("M1");
    REQUIRE(u->active);
    w.unit_says(cmd::Cleared{u->active->rec.id});
    w.run(cmd::Close{u->active ? u->active->rec.incident : "I-" + std::to_string(i + 1)}, w.console,
          World::console_conn);
    w.tick(100);
  }
  CHECK(w.engine.pending_pages() == 30);  // none due yet
  CHECK(w.sent<ev::Page>(w.tick(21'000)).empty());
  CHECK(w.engine.pending_pages() == 0);  // every assignment had ended: dropped when due
  // With a pager: a delivery of a page made after the tick finds it; a made-up id is refused.
  auto pages = w.sent<ev::Page>(w.report("r-last", X));
  REQUIRE(pages.size() == 1);
  CHECK(w.engine.pending_pages() == 1);
  CHECK(w.sent<ev::Error>(w.run(cmd::Delivered{"P-999999"}, w.pager, World::pager_conn)).size() == 1);
  CHECK(w.sent<ev::Error>(w.run(cmd::Delivered{pages[0].page}, w.pager, World::pager_conn)).empty());
  CHECK(w.engine.pending_pages() == 0);
}

TEST_CASE("restore: open incidents, their assignments and unit statuses come back") {
  // Play the writes into a toy store: the last record per id wins.
  World w0;
  place_all(w0);
  Snapshot snap;
  std::map<std::string, rec::Unit> units;
  std::map<std::string, rec::Incident> incs;
  std::map<std::string, rec::Assignment> asgs;
  auto keep = [&](Output& o) {
    for (auto& wr : o.writes) {
      if (auto* u = std::get_if<rec::Unit>(&wr)) units[u->id] = *u;
      if (auto* i = std::get_if<rec::Incident>(&wr)) incs[i->id] = *i;
      if (auto* x = std::get_if<rec::Assignment>(&wr)) asgs[x->id] = *x;
      if (auto* t = std::get_if<rec::Timeline>(&wr)) snap.timeline.push_back(*t);
    }
  };
  for (const auto& u : {moto("M1"), moto("M2"), moto("M3"), car("C1")}) units[u.id] = u;
  keep(w0.report("r1", X));  // M2
  keep(w0.unit_says(cmd::Ack{w0.engine.unit("M2")->active->rec.id}));
  keep(w0.report("r2", offset_km(X, 3, 0)));  // M3, who declines: M1
  keep(w0.unit_says(cmd::Decline{w0.engine.unit("M3")->active->rec.id, {}}));
  for (auto& [id, u] : units) snap.units.push_back(u);
  for (auto& [id, i] : incs) {
    snap.open_incidents.push_back(i);
    snap.report_ids.push_back({i.source, i.report_id, i.id});
    snap.max_incident_seq = std::max(snap.max_incident_seq, i.seq);
  }
  for (auto& [id, x] : asgs) {
    snap.assignments.push_back(x);
    snap.max_assignment_seq = std::max(snap.max_assignment_seq, x.seq);
  }

  Engine again;
  again.restore(snap, w0.now);
  CHECK(again.open_incidents().size() == 2);
  CHECK(again.unit("M2")->status == UnitStatus::en_route);
  CHECK(again.unit("M1")->status == UnitStatus::assigned);
  CHECK(again.unit("M3")->status == UnitStatus::available);
  REQUIRE(again.unit("M2")->active);
  CHECK(again.unit("M2")->active->rec.state == AssignmentState::en_route);
  // M3 declined r2: after the restart it is still not asked again for r2.
  const Incident* r2 = nullptr;
  for (auto* i : again.open_incidents())
    if (i->rec.report_id == "r2") r2 = i;
  REQUIRE(r2);
  CHECK(r2->needs[0].excluded.size() == 1);
  CHECK(r2->timeline.size() >= 3);
  // New ids continue after the stored ones; the old report id is known.
  Output out;
  Principal rep{"reporter", "cc", false, {}, {}};
  cmd::Report r;
  r.id = "r1";
  r.lat = X.lat;
  r.lon = X.lon;
  again.handle(r, Origin{1, &rep}, w0.now, out);
  CHECK(std::get<ev::Accepted>(out.messages.at(0).payload).incident == snap.open_incidents[0].id);
  out.clear();
  r.id = "r3";
  again.handle(r, Origin{1, &rep}, w0.now, out);
  CHECK(std::get<ev::Accepted>(out.messages.at(0).payload).incident == "I-000003");
}

TEST_CASE("over hundreds of random units and reports, every assignment goes to the true nearest assignable moto") {
  std::mt19937_64 rng(42);
  World w;
  const int n = 400;
  std::vector<rec::Unit> roster;
  for (int i = 0; i < n; ++i) {
    auto u = moto("M" + std::to_string(i));
    if (i % 10 == 0) u.kind = UnitKind::car;
    roster.push_back(u);
  }
  w.roster(roster);
  std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
  std::map<std::string, geo::LatLon> where;
  std::map<std::string, Millis> when;
  for (int i = 0; i < n; ++i) {
    const std::string id = "M" + std::to_string(i);
    // Some units are stale from the start.
    const Millis ts = i % 13 == 0 ? w.now - 70'000 : w.now;
    where[id] = {lat(rng), lon(rng)};
    when[id] = ts;
    w.pos(id, where[id], ts);
  }
  int assigned = 0, checked = 0;
  for (int k = 0; k < 300; ++k) {
    w.now += 100;
    const geo::LatLon at{lat(rng), lon(rng)};
    // Brute force over what the engine was told.
    std::string best;
    double best_d = 1e18;
    for (const auto& u : w.engine.units()) {
      if (u.kind != UnitKind::moto || u.status != UnitStatus::available) continue;
      const std::string id(u.id());
      if (w.now - when[id] > 60'000) continue;
      const double d = geo::distance_m(where[id], at);
      if (d < best_d) {
        best_d = d;
        best = id;
      }
    }
    auto& out = w.report("rand-" + std::to_string(k), at);
    const auto got = w.assigned_unit(out);
    if (best.empty()) {
      CHECK(got.empty());
      continue;
    }
    REQUIRE(!got.empty());
    ++assigned;
    if (got != best) CHECK(geo::distance_m(where[got], at) == doctest::Approx(best_d));
    ++checked;
    // Some crews finish at once, freeing their unit; some decline.
    auto a = w.sent<ev::Assign>(out).back();
    if (k % 3 == 0) w.unit_says(cmd::Cleared{a.assignment});
  }
  CHECK(assigned > 100);
  CHECK(checked == assigned);
}

// ---------------------------------------------------------------------------------------
// Report ids per token, open-incident and status caps, forbidden before unknown, and
// change messages only for what changed.

namespace {

cmd::Report report_at(const std::string& id, geo::LatLon p, Severity s = Severity::injury) {
  cmd::Report r;
  r.id = id;
  r.lat = p.lat;
  r.lon = p.lon;
  r.severity = s;
  return r;
}

template <class T>
std::size_t count_of(const Output& o) {
  return static_cast<std::size_t>(std::count_if(o.messages.begin(), o.messages.end(), [](const Message& m) {
    return std::holds_alternative<T>(m.payload);
  }));
}

template <class W>
std::size_t count_writes(const Output& o) {
  return static_cast<std::size_t>(std::count_if(o.writes.begin(), o.writes.end(), [](const Write& w) {
    return std::holds_alternative<W>(w);
  }));
}

// No Output may hold two change messages for one unit or one incident.
void check_no_duplicate_changes(const Output& o) {
  std::map<std::uint32_t, int> units;
  std::map<std::string, int> incs;
  for (const auto& m : o.messages) {
    if (auto* u = std::get_if<ev::UnitChanged>(&m.payload)) ++units[u->unit];
    if (auto* i = std::get_if<ev::IncidentChanged>(&m.payload)) ++incs[i->incident];
  }
  for (const auto& [slot, n] : units) {
    CAPTURE(slot);
    CHECK(n == 1);
  }
  for (const auto& [id, n] : incs) {
    CAPTURE(id);
    CHECK(n == 1);
  }
}

}  // namespace

TEST_CASE("report ids are scoped to the token: another token's same id is its own incident") {
  World w;
  place_all(w);
  Principal app{"reporter", "app", false, {}, {}};
  constexpr ConnId app_conn = 31;
  const auto cc1 = w.sent<ev::Accepted>(w.report("r1", X)).at(0);
  CHECK(cc1.report_id == "r1");

  // Another reporter's "r1" is another accident: a new incident, dispatched.
  auto& other = w.run(report_at("r1", offset_km(X, 3, 0.5)), app, app_conn);
  const auto app1 = w.sent<ev::Accepted>(other).at(0);
  CHECK(app1.report_id == "r1");
  CHECK(app1.incident != cc1.incident);
  CHECK(w.sent<ev::Assign>(other).size() == 1);
  CHECK(count_writes<rec::Incident>(other) >= 1);
  for (const auto& m : other.messages)
    if (std::holds_alternative<ev::Accepted>(m.payload)) CHECK(m.to.conn == app_conn);
  REQUIRE(w.engine.incident(app1.incident));
  CHECK(w.engine.incident(app1.incident)->rec.source == "reporter:app");
  CHECK(w.engine.incident(cc1.incident)->rec.source == "reporter:cc");
  CHECK(w.engine.open_incidents().size() == 2);

  // Each token sending its id again gets its own incident back, and nothing new.
  auto& cc_again = w.report("r1", offset_km(X, 9, 9));
  CHECK(w.sent<ev::Accepted>(cc_again).at(0).incident == cc1.incident);
  CHECK(w.sent<ev::Assign>(cc_again).empty());
  auto& app_again = w.run(report_at("r1", X), app, app_conn);
  CHECK(w.sent<ev::Accepted>(app_again).at(0).incident == app1.incident);
  CHECK(w.sent<ev::Assign>(app_again).empty());
  CHECK(w.engine.open_incidents().size() == 2);
  CHECK(w.engine.stats().reports == 2);
  CHECK(w.engine.stats().reports_duplicate == 2);

  // A console is a token of its own too.
  auto& desk = w.run(report_at("r1", X), w.console, World::console_conn);
  CHECK(w.sent<ev::Accepted>(desk).at(0).incident != cc1.incident);
  CHECK(w.sent<ev::Accepted>(desk).at(0).incident != app1.incident);
}

TEST_CASE("restore: report ids per token come back from the snapshot") {
  Snapshot s;
  s.units = {moto("M1")};
  // Two tokens used "dup"; one of them was closed long ago (only its key is left).
  rec::Incident open;
  open.seq = 7;
  open.id = "I-000007";
  open.report_id = "dup";
  open.state = IncidentState::dispatching;
  open.lat = X.lat;
  open.lon = X.lon;
  open.source = "reporter:app";
  s.open_incidents = {open};
  s.report_ids = {{"reporter:cc", "dup", "I-000002"}, {"reporter:app", "dup", "I-000007"}};
  s.max_incident_seq = 7;
  Engine e;
  e.restore(s, t0);
  Principal cc{"reporter", "cc", false, {}, {}}, app{"reporter", "app", false, {}, {}},
      web{"reporter", "web", false, {}, {}};
  auto answer = [&](const Principal& who) {
    Output out;
    e.handle(report_at("dup", X), Origin{1, &who}, t0, out);
    for (const auto& m : out.messages)
      if (auto* a = std::get_if<ev::Accepted>(&m.payload)) return a->incident;
    return std::string("(none)");
  };
  CHECK(answer(cc) == "I-000002");
  CHECK(answer(app) == "I-000007");
  CHECK(answer(web) == "I-000008");  // a third token: a new incident
  CHECK(e.open_count("reporter:app") == 1);
  CHECK(e.open_count("reporter:web") == 1);
  CHECK(e.open_count("reporter:cc") == 0);
}

TEST_CASE("one token's open incidents are capped; over it, rate_limited and nothing created") {
  CHECK(Config{}.max_open_per_source == 2000);
  Config c;
  c.max_open_per_source = 3;
  World w(c);
  w.roster({moto("M1")});  // no position yet: every incident waits
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(w.sent<ev::Accepted>(w.report("r" + std::to_string(i), X)).at(0).incident);
  CHECK(w.engine.open_count("reporter:cc") == 3);

  auto& over = w.report("r3", X);
  auto errs = w.sent<ev::Error>(over);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].code == ErrorCode::rate_limited);
  CHECK(errs[0].ref == "r3");
  CHECK(errs[0].message.find("too many open incidents") != std::string::npos);
  CHECK(w.sent<ev::Accepted>(over).empty());
  CHECK(over.writes.empty());
  CHECK(count_of<ev::IncidentChanged>(over) == 0);
  CHECK(w.engine.open_incidents().size() == 3);
  CHECK(w.engine.stats().reports_rate_limited == 1);

  // An id the token already used is still answered with its incident.
  auto& dup = w.report("r1", X);
  CHECK(w.sent<ev::Accepted>(dup).at(0).incident == ids[1]);
  CHECK(w.sent<ev::Error>(dup).empty());
  // Another token is not held back by this one.
  Principal app{"reporter", "app", false, {}, {}};
  CHECK(w.sent<ev::Accepted>(w.run(report_at("r3", X), app, 31)).size() == 1);

  // Closing one makes room for exactly one more.
  w.run(cmd::Close{ids[0]}, w.console, World::console_conn);
  CHECK(w.engine.open_count("reporter:cc") == 2);
  const auto r3 = w.sent<ev::Accepted>(w.report("r3", X));
  REQUIRE(r3.size() == 1);
  CHECK(w.sent<ev::Error>(w.report("r4", X)).at(0).code == ErrorCode::rate_limited);
  // The refused id was not remembered: once there is room it becomes an incident.
  CHECK(w.engine.open_count("reporter:cc") == 3);

  // An incident that closes on its own (cleared) frees its place too.
  w.pos("M1", offset_km(X, 0, 1));  // takes the oldest waiting incident
  REQUIRE(w.engine.unit("M1")->active);
  const std::string a = w.engine.unit("M1")->active->rec.id;
  const std::string inc = w.engine.unit("M1")->active->rec.incident;
  w.unit_says(cmd::Arrived{a});
  w.unit_says(cmd::Cleared{a});
  CHECK(w.engine.incident(inc)->rec.state == IncidentState::closed);
  CHECK(w.engine.open_count("reporter:cc") == 2);
  CHECK(w.sent<ev::Accepted>(w.report("r4", X)).size() == 1);
  CHECK(w.sent<ev::Error>(w.report("r5", X)).at(0).code == ErrorCode::rate_limited);
  // Closing twice does not count twice.
  w.run(cmd::Close{ids[0]}, w.console, World::console_conn);
  CHECK(w.engine.open_count("reporter:cc") == 3);
}

TEST_CASE("remote incidents count as open until the liability decision closes them") {
  Config c;
  c.max_open_per_source = 1;
  World w(c);
  place_all(w);
  auto r = report_at("remote", X, Severity::minor);
  r.drivable = r.parties_agree = true;
  const std::string id = w.sent<ev::Accepted>(w.run(r, w.reporter, World::reporter_conn)).at(0).incident;
  CHECK(w.sent<ev::Error>(w.report("next", X)).at(0).code == ErrorCode::rate_limited);
  w.run(cmd::Liability{id, "none", {}}, w.console, World::console_conn);
  CHECK(w.engine.incident(id)->rec.state == IncidentState::closed);
  CHECK(w.sent<ev::Accepted>(w.report("next", X)).size() == 1);
}

TEST_CASE("restore rebuilds each token's open count") {
  Config c;
  c.max_open_per_source = 2;
  Snapshot s;
  s.units = {moto("M1")};
  for (int i = 1; i <= 2; ++i) {
    rec::Incident inc;
    inc.seq = static_cast<std::uint64_t>(i);
    inc.id = "I-00000" + std::to_string(i);
    inc.report_id = "old" + std::to_string(i);
    inc.state = IncidentState::dispatching;
    inc.lat = X.lat;
    inc.lon = X.lon;
    inc.source = "reporter:cc";
    s.open_incidents.push_back(inc);
    s.report_ids.push_back({inc.source, inc.report_id, inc.id});
  }
  s.max_incident_seq = 2;
  Engine e(c);
  e.restore(s, t0);
  CHECK(e.open_count("reporter:cc") == 2);
  Principal cc{"reporter", "cc", false, {}, {}};
  Output out;
  e.handle(report_at("new", X), Origin{1, &cc}, t0, out);
  REQUIRE(out.messages.size() == 1);
  CHECK(std::get<ev::Error>(out.messages[0].payload).code == ErrorCode::rate_limited);
  out.clear();
  e.handle(cmd::Close{"I-000001"}, Origin{2, nullptr}, t0, out);
  CHECK(e.open_count("reporter:cc") == 1);
  out.clear();
  e.handle(report_at("new", X), Origin{1, &cc}, t0, out);
  CHECK(std::get<ev::Accepted>(out.messages.at(0).payload).incident == "I-000003");
}

TEST_CASE("a unit toggling its status is capped per minute; over it nothing changes or is written") {
  CHECK(Config{}.max_status_changes_per_min == 30);
  World w;  // the default cap
  place_all(w);
  Principal m1{"unit", "m1", false, {"M1"}, {}};
  constexpr ConnId m1_conn = 77;
  std::size_t events = 0;
  for (int i = 0; i < 30; ++i) {
    w.now += 10;
    auto& out = w.run(cmd::Status{"M1", i % 2 == 0 ? UnitStatus::off_duty : UnitStatus::available}, m1, m1_conn);
    CHECK(w.sent<ev::Error>(out).empty());
    events += count_writes<rec::UnitEvent>(out);
  }
  CHECK(events == 30);
  CHECK(w.engine.unit("M1")->status == UnitStatus::available);
  // The 31st change within the minute: refused, nothing changes, nothing is written.
  w.now += 10;
  auto& over = w.run(cmd::Status{"M1", UnitStatus::off_duty}, m1, m1_conn);
  auto errs = w.sent<ev::Error>(over);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].code == ErrorCode::rate_limited);
  CHECK(errs[0].ref == "M1");
  CHECK(over.writes.empty());
  CHECK(count_of<ev::UnitChanged>(over) == 0);
  for (const auto& m : over.messages) CHECK(m.to.conn == m1_conn);
  CHECK(w.engine.unit("M1")->status == UnitStatus::available);
  // Hundreds more in the same minute: all refused, not one row.
  std::size_t refused = 0;
  for (int i = 0; i < 300; ++i) {
    w.now += 1;
    auto& out = w.run(cmd::Status{"M1", i % 2 ? UnitStatus::available : UnitStatus::off_duty}, m1, m1_conn);
    CHECK(out.writes.empty());
    for (const auto& e : w.sent<ev::Error>(out)) refused += e.code == ErrorCode::rate_limited;
  }
  CHECK(refused == 150);  // the other half asked for the status it already had: a no-op
  CHECK(w.engine.unit("M1")->status == UnitStatus::available);
  CHECK(w.engine.stats().status_rate_limited == 151);
  // Other units are not held back by M1.
  CHECK(w.sent<ev::Error>(w.unit_says(cmd::Status{"M2", UnitStatus::off_duty})).empty());
  CHECK(w.engine.unit("M2")->status == UnitStatus::off_duty);
  // The engine's own status changes (assignments) are not counted against the cap.
  auto a = w.sent<ev::Assign>(w.report("r1", offset_km(X, 0, 2)));
  REQUIRE(a.size() == 1);
  CHECK(a[0].unit == "M1");
  // A minute after the window began, M1 may change again.
  w.now += 60'000;
  w.unit_says(cmd::Cleared{a[0].assignment});
  auto& later = w.run(cmd::Status{"M1", UnitStatus::off_duty}, m1, m1_conn);
  CHECK(w.sent<ev::Error>(later).empty());
  CHECK(count_writes<rec::UnitEvent>(later) == 1);
  CHECK(w.engine.unit("M1")->status == UnitStatus::off_duty);
}

TEST_CASE("a token that may not speak for a unit id learns nothing of whether it exists") {
  World w;
  place_all(w);
  Principal m1{"unit", "m1", false, {"M1"}, {}};
  Principal ghost{"unit", "m9", false, {"M9"}, {}};  // a token for a unit not in the fleet
  auto pos_from = [&](const Principal& who, const std::string& unit) {
    cmd::Position p{unit, X.lat, X.lon, w.now, {}, {}};
    Output out;
    w.engine.positions(std::span(&p, 1), Origin{99, &who}, w.now, out);
    auto e = w.sent<ev::Error>(out);
    REQUIRE(e.size() == 1);
    CHECK(e[0].ref == unit);
    return e[0].code;
  };
  auto status_from = [&](const Principal& who, const std::string& unit) {
    auto e = w.sent<ev::Error>(w.run(cmd::Status{unit, UnitStatus::off_duty}, who, 99));
    REQUIRE(e.size() == 1);
    CHECK(e[0].ref == unit);
    return e[0].code;
  };
  // Not its unit: forbidden, whether the unit exists (M2) or not (NOPE).
  CHECK(pos_from(m1, "M2") == ErrorCode::forbidden);
  CHECK(pos_from(m1, "NOPE") == ErrorCode::forbidden);
  CHECK(status_from(m1, "M2") == ErrorCode::forbidden);
  CHECK(status_from(m1, "NOPE") == ErrorCode::forbidden);
  // Only those who may speak for an id hear that it is unknown.
  CHECK(pos_from(w.gateway, "NOPE") == ErrorCode::unknown_unit);
  CHECK(status_from(w.gateway, "NOPE") == ErrorCode::unknown_unit);
  CHECK(pos_from(ghost, "M9") == ErrorCode::unknown_unit);
  CHECK(status_from(ghost, "M9") == ErrorCode::unknown_unit);
  // In a batch, each position is answered on its own.
  const Millis later = w.now + 60'000;  // 2 km in a minute: a plausible fix
  std::vector<cmd::Position> batch{{"NOPE", X.lat, X.lon, later, {}, {}},
                                   {"M1", X.lat, X.lon, later, {}, {}},
                                   {"M3", X.lat, X.lon, later, {}, {}}};
  Output out;
  w.engine.positions(batch, Origin{99, &m1}, w.now, out);
  auto errs = w.sent<ev::Error>(out);
  REQUIRE(errs.size() == 2);
  CHECK(errs[0].code == ErrorCode::forbidden);
  CHECK(errs[1].code == ErrorCode::forbidden);
  CHECK(w.engine.unit("M1")->pos == X);
  CHECK(w.engine.unit("M3")->pos != X);
}

TEST_CASE("a unit becoming assignable tells consoles only about the incident it got, not every waiting one") {
  World w;
  w.roster({moto("M1"), moto("M2")});
  const int n = 500;
  for (int i = 0; i < n; ++i) {
    w.now += 10;
    w.report("w" + std::to_string(i), offset_km(X, 0.01 * (i % 50), 0.01 * (i / 50)),
             i == 250 ? Severity::critical : Severity::injury);
  }
  CHECK(w.engine.waiting_count() == n);

  // First position: M1 becomes assignable and goes to the most urgent incident.
  auto& out = w.pos("M1", X);
  const auto as = w.sent<ev::Assign>(out);
  REQUIRE(as.size() == 1);
  CHECK(as[0].severity == Severity::critical);
  const auto changed = w.sent<ev::IncidentChanged>(out);
  REQUIRE(changed.size() == 1);
  CHECK(changed[0].incident == as[0].incident);
  CHECK(count_writes<rec::Incident>(out) == 1);  // nor is any other incident rewritten
  CHECK(count_of<ev::UnitChanged>(out) == 1);
  check_no_duplicate_changes(out);
  CHECK(w.engine.waiting_count() == n - 1);

  // On duty again: the same.
  w.unit_says(cmd::Status{"M2", UnitStatus::off_duty});
  w.pos("M2", offset_km(X, 1, 1));
  auto& on = w.unit_says(cmd::Status{"M2", UnitStatus::available});
  CHECK(w.sent<ev::Assign>(on).size() == 1);
  CHECK(count_of<ev::IncidentChanged>(on) == 1);
  check_no_duplicate_changes(on);

  // Cleared: the closed incident and the next one M1 takes; not the 497 others.
  w.unit_says(cmd::Ack{as[0].assignment});
  auto& cleared = w.unit_says(cmd::Cleared{as[0].assignment});
  const auto next = w.sent<ev::Assign>(cleared);
  REQUIRE(next.size() == 1);
  auto incs = w.sent<ev::IncidentChanged>(cleared);
  CHECK(incs.size() == 2);
  const bool has_closed = std::any_of(incs.begin(), incs.end(), [&](auto& i) { return i.incident == as[0].incident; });
  const bool has_next = std::any_of(incs.begin(), incs.end(), [&](auto& i) { return i.incident == next[0].incident; });
  CHECK(has_closed);
  CHECK(has_next);
  check_no_duplicate_changes(cleared);

  // A unit that does not become assignable (it stays stale) triggers nothing at all.
  w.roster({moto("M3")});
  auto& stale = w.pos("M3", X, w.now - 120'000);
  CHECK(count_of<ev::IncidentChanged>(stale) == 0);
}

TEST_CASE("one Output holds at most one change message per unit and per incident") {
  World w;
  place_all(w);
  auto a1 = w.sent<ev::Assign>(w.report("r1", X)).at(0);               // M2
  auto a2 = w.sent<ev::Assign>(w.report("r2", offset_km(X, 3, 0.5))).at(0);  // M3
  CHECK(a2.unit == "M3");
  // A manual reassignment touches M2 and M3 (and M1) and both incidents several times.
  auto& out = w.run(cmd::Assign{a2.incident, "M2"}, w.console, World::console_conn);
  check_no_duplicate_changes(out);
  CHECK(count_of<ev::IncidentChanged>(out) == 2);
  CHECK(count_of<ev::UnitChanged>(out) == 3);  // M2 moved, M3 freed, M1 sent to r1

  // The server puts a frame's positions and its commands into one Output: still one each.
  Output shared;
  w.engine.handle(cmd::Ack{w.engine.unit("M2")->active->rec.id}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  w.engine.handle(cmd::Arrived{w.engine.unit("M2")->active->rec.id}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  cmd::Position p{"M2", X.lat, X.lon, w.now + 1, {}, {}};
  w.engine.positions(std::span(&p, 1), Origin{World::gw_conn, &w.gateway}, w.now, shared);
  w.engine.handle(cmd::Cleared{w.engine.unit("M2")->active->rec.id}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  check_no_duplicate_changes(shared);
  CHECK(count_of<ev::UnitChanged>(shared) == 1);
  CHECK(count_of<ev::IncidentChanged>(shared) == 1);

  // A cleared (or emptied) Output is a new one: changes are told again, never lost.
  const std::string r1_asg = w.engine.incident(a1.incident)->needs[0].active->rec.id;
  shared.clear();
  w.engine.handle(cmd::Ack{r1_asg}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  CHECK(count_of<ev::IncidentChanged>(shared) == 1);
  CHECK(count_of<ev::UnitChanged>(shared) == 1);
  shared.messages.clear();  // a caller that only takes the messages away
  w.engine.handle(cmd::Arrived{r1_asg}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  CHECK(count_of<ev::IncidentChanged>(shared) == 1);
  CHECK(count_of<ev::UnitChanged>(shared) == 1);
  // Messages the caller adds in between do not confuse the marks.
  shared.messages.insert(shared.messages.begin(), Message{Target::consoles(), ev::IncidentChanged{"I-999999"}});
  shared.clear();
  shared.messages.push_back({Target::to(1), ev::Error{ErrorCode::bad_json, "x", ""}});
  w.engine.handle(cmd::Cleared{r1_asg}, Origin{World::gw_conn, &w.gateway}, w.now, shared);
  CHECK(count_of<ev::IncidentChanged>(shared) == 1);
  check_no_duplicate_changes(shared);

  // The stale sweep: many units going stale in one tick, one message each.
  World big;
  std::vector<rec::Unit> fleet;
  for (int i = 0; i < 50; ++i) fleet.push_back(moto("S" + std::to_string(i)));
  big.roster(fleet);
  for (int i = 0; i < 50; ++i) big.pos("S" + std::to_string(i), offset_km(X, i * 0.01, 0));
  auto& swept = big.tick(61'000);
  CHECK(count_of<ev::UnitChanged>(swept) == 50);
  check_no_duplicate_changes(swept);
}

TEST_CASE("the roster kept compactly: ids, callsigns, capcodes and bases come back exactly") {
  World w;
  std::vector<rec::Unit> units;
  for (int i = 0; i < 5000; ++i) units.push_back(moto("M" + std::to_string(i), std::to_string(1200000 + i)));
  rec::Unit heli;
  heli.id = "H-" + std::string(300, 'x');  // a long id: lengths over 127 take two bytes
  heli.kind = UnitKind::heli;
  heli.callsign = "渝救援1";
  heli.base = geo::LatLon{29.7197123456789, 106.6412987654321};
  units.push_back(heli);
  rec::Unit bare;
  bare.id = "B1";  // empty callsign and capcode, no base
  units.push_back(bare);
  w.roster(units);
  // Restoring the same roster again adds nothing.
  w.roster(units);
  REQUIRE(w.engine.units().size() == 5002);
  for (int i = 0; i < 5000; i += 7) {
    const Unit* u = w.engine.unit("M" + std::to_string(i));
    REQUIRE(u);
    CHECK(u->id() == "M" + std::to_string(i));
    CHECK(u->callsign() == "渝警保M" + std::to_string(i));
    CHECK(u->capcode() == std::to_string(1200000 + i));
    CHECK_FALSE(u->base());
    CHECK(&w.engine.units()[static_cast<std::size_t>(i)] == u);
  }
  CHECK_FALSE(w.engine.unit("M5000"));
  CHECK_FALSE(w.engine.unit("M"));
  CHECK_FALSE(w.engine.unit(""));
  const Unit* h = w.engine.unit(heli.id);
  REQUIRE(h);
  CHECK(h->id() == heli.id);
  CHECK(h->callsign() == "渝救援1");
  CHECK(h->capcode().empty());
  REQUIRE(h->base());
  CHECK(*h->base() == *heli.base);  // bit for bit
  const Unit* b = w.engine.unit("B1");
  REQUIRE(b);
  CHECK(b->callsign().empty());
  CHECK(b->capcode().empty());
  CHECK_FALSE(b->base());
  // A status change writes the roster row back as it came.
  auto& out = w.run(cmd::Status{heli.id, UnitStatus::off_duty}, w.gateway, World::gw_conn);
  const rec::Unit* row = nullptr;
  for (const auto& wr : out.writes)
    if (auto* r = std::get_if<rec::Unit>(&wr)) row = r;
  REQUIRE(row);
  CHECK(row->id == heli.id);
  CHECK(row->kind == UnitKind::heli);
  CHECK(row->callsign == heli.callsign);
  CHECK(row->capcode.empty());
  REQUIRE(row->base);
  CHECK(*row->base == *heli.base);
  CHECK(row->status == UnitStatus::off_duty);
}

TEST_CASE("clocks: the remote liability clock raises one overdue alert; a decision in time stops it") {
  Config c;
  c.remote_liability_ms = 300'000;
  World w(c);
  place_all(w);
  auto remote = [&](const std::string& id) {
    cmd::Report r;
    r.id = id;
    r.lat = X.lat;
    r.lon = X.lon;
    r.severity = Severity::minor;
    r.drivable = r.parties_agree = true;
    r.ts = w.now;
    return w.sent<ev::Accepted>(w.run(r, w.reporter, World::reporter_conn)).at(0).incident;
  };
  const std::string late = remote("late"), early = remote("early");
  const Incident& li = *w.engine.incident(late);
  REQUIRE(li.clock("liability"));
  CHECK(li.clock("liability")->due_ts == w.now + 300'000);
  w.now += 60'000;
  w.run(cmd::Liability{early, "none", {}}, w.console, World::console_conn);
  CHECK(w.engine.incident(early)->clock("liability")->done_ts == w.now);
  CHECK(w.sent<ev::Alert>(w.tick(230'000)).empty());
  auto alerts = w.sent<ev::Alert>(w.tick(20'000));
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].incident == late);
  CHECK(alerts[0].clock == "liability");
  CHECK(w.engine.stats().overdue[0] == 1);
  CHECK(li.clock("liability")->overdue);
  CHECK(li.timeline.back().event == "overdue");
  CHECK(w.sent<ev::Alert>(w.tick(60'000)).empty());
  // Met late: done, and still marked overdue.
  w.run(cmd::Liability{late, "none", {}}, w.console, World::console_conn);
  CHECK(w.engine.incident(late)->clock("liability")->done_ts == w.now);
}

TEST_CASE("clocks: the claim clock runs from the first claim and is met when every claim is paid") {
  Config c;
  c.claim_paid_within_ms = 900'000;
  World w(c);
  place_all(w);
  cmd::Report r;
  r.id = "cl";
  r.lat = X.lat;
  r.lon = X.lon;
  r.severity = Severity::minor;
  r.drivable = r.parties_agree = true;
  r.vehicles = {{"渝A1", "PICC"}, {"渝B2", "CPIC"}};
  const auto iid = w.sent<ev::Accepted>(w.run(r, w.reporter, World::reporter_conn)).at(0).incident;
  w.run(cmd::Liability{iid, "渝A1", {}}, w.console, World::console_conn);
  const Incident& inc = *w.engine.incident(iid);
  REQUIRE(inc.clock("claim"));
  CHECK(inc.clock("claim")->due_ts == w.now + 900'000);
  REQUIRE(inc.claims.size() == 2);
  w.run(cmd::ClaimPaid{inc.claims[0], 100}, w.console, World::console_conn);
  CHECK(inc.clock("claim")->done_ts == 0);
  auto alerts = w.sent<ev::Alert>(w.tick(901'000));
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].clock == "claim");
  CHECK(w.engine.stats().overdue[1] == 1);
  w.run(cmd::ClaimPaid{inc.claims[1], 100}, w.console, World::console_conn);
  CHECK(w.engine.incident(iid)->clock("claim")->done_ts == w.now);
}

TEST_CASE("restore: clocks, alerts already raised and rescue steps come back from the record") {
  Config c;
  c.remote_liability_ms = 300'000;
  World w(c);
  place_all(w);
  cmd::Report r;
  r.id = "rr";
  r.lat = X.lat;
  r.lon = X.lon;
  r.severity = Severity::minor;
  r.drivable = r.parties_agree = true;
  r.ts = w.now;
  w.run(r, w.reporter, World::reporter_conn);
  w.tick(301'000);  // overdue raised
  // Everything written so far, as the store would give it back.
  const Incident& inc = w.incident_of("rr");
  Snapshot s;
  s.units = {moto("M1")};
  s.open_incidents = {inc.rec};
  s.timeline = inc.timeline;
  World w2(c);
  w2.now = w.now;
  w2.engine.restore(s, w2.now);
  const Incident& back = *w2.engine.incident(inc.rec.id);
  REQUIRE(back.clock("liability"));
  CHECK(back.clock("liability")->overdue);
  CHECK(back.clock("liability")->due_ts == inc.rec.reported_ts + 300'000);
  CHECK(w2.sent<ev::Alert>(w2.tick(1'000)).empty());  // not raised twice
}
