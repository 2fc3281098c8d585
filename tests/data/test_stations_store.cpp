// The store's part for rural stations on a real SQLite file: sightings (idempotent,
// pruned by retention), hazards and their history, incidents' plates and signals, what the
// engine gets back at start, the vehicle history, and the additive migration. With
// DISPATCH_TEST_BACKEND=postgresql, on a fresh database of the PostgreSQL server that
// libpq's environment names (test_stations_store_pg, under pg_virtualenv).
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "data/store.hpp"
#include "tests/data/temp_db.hpp"

using namespace dispatch;
using namespace dispatch::engine;
namespace fs = std::filesystem;
using test_db::on_pg;
using test_db::count;
using test_db::exec;
using test_db::pg_scalar;
using test_db::TempDb;

namespace {

constexpr Millis hour = 3600 * 1000, day = 24 * hour;

Millis wall() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

rec::Sighting sighting(std::string station, std::string plate, Millis ts) {
  rec::Sighting s;
  s.station = std::move(station);
  s.plate = std::move(plate);
  s.ts = ts;
  s.lat = 29.1;
  s.lon = 107.2;
  s.direction = "northbound";
  s.note = "白色轿车";
  s.received_ts = ts + 5;
  return s;
}

rec::Incident incident(std::uint64_t seq, Millis reported, IncidentState st = IncidentState::assigned) {
  rec::Incident i;
  i.seq = seq;
  i.id = "I-00000" + std::to_string(seq);
  i.report_id = "r-" + std::to_string(seq);
  i.state = st;
  i.severity = Severity::injury;
  i.lat = 29.56;
  i.lon = 106.55;
  i.district = "渝中区";
  i.reported_ts = reported;
  i.received_ts = reported;
  i.vehicles = {{"渝A12345", "PICC"}, {"渝B00001", ""}};
  i.source = "reporter:cc";
  return i;
}

void write(data::Store& s, std::vector<Write> w) {
  s.submit(std::move(w), {});
  s.flush();
}

}  // namespace

TEST_CASE("sightings: stored once, read newest first and paged, restored within the window, pruned by retention") {
  TempDb t;
  const Millis now = wall();
  {
    data::Store s(t.options());
    // The same station, plate (as a key) and ts again is the same sighting.
    write(s, {sighting("ST-1", "渝A12345", now - 3 * hour), sighting("ST-1", "渝a·12345", now - 3 * hour),
              sighting("ST-2", "渝A12345", now - 2 * hour), sighting("ST-1", "渝A12345", now - 1 * hour),
              sighting("ST-3", "渝A12345", now - 10 * hour), sighting("ST-3", "渝C99999", now - hour)});
    CHECK(count(t.path, "SELECT count(*) FROM sightings") == 5);
    auto v = s.vehicle({"渝A 12345", 2, 0});
    REQUIRE(v.sightings.size() == 2);
    CHECK(v.sightings[0].ts == now - 1 * hour);
    CHECK(v.sightings[0].station == "ST-1");
    CHECK(v.sightings[0].direction == "northbound");
    CHECK(v.sightings[0].note == "白色轿车");
    CHECK(v.sightings[1].ts == now - 2 * hour);
    auto next = s.vehicle({"渝A12345", 2, v.sightings[1].ts});
    REQUIRE(next.sightings.size() == 2);
    CHECK(next.sightings[0].ts == now - 3 * hour);
    CHECK(next.sightings[1].ts == now - 10 * hour);
    CHECK(s.vehicle({"渝A12345", 2, next.sightings[1].ts}).sightings.empty());
  }
  {
    data::Store s(t.options());
    const auto snap = s.load();
    // The last 5 h only (4 of the 5: the one 10 h ago is out of the window).
    CHECK(snap.stations.recent_sightings.size() == 4);
    for (const auto& x : snap.stations.recent_sightings) CHECK(x.ts >= now - 5 * hour);
  }
  {
    auto o = t.options();
    o.sighting_retention_ms = 4 * hour;
    data::Store s(o);  // SQLite prunes at start; a shared PostgreSQL only when active or asked
    if (on_pg()) s.prune_tracks(now);
    CHECK(count(t.path, "SELECT count(*) FROM sightings") == 4);
    write(s, {sighting("ST-9", "渝D1", now - 5 * hour)});
    CHECK(count(t.path, "SELECT count(*) FROM sightings") == 5);
    CHECK(s.prune_tracks(now) >= 1);
    CHECK(count(t.path, "SELECT count(*) FROM sightings WHERE ts < " + std::to_string(now - 4 * hour)) == 0);
    CHECK(count(t.path, "SELECT count(*) FROM sightings") == 4);
  }
}

TEST_CASE("hazards and their history; open ones and keys come back at start") {
  TempDb t;
  const Millis now = wall();
  {
    data::Store s(t.options());
    rec::Hazard h;
    h.seq = 1;
    h.id = "H-000001";
    h.report_id = "hz-1";
    h.source = "station:st1";
    h.station = "ST-1";
    h.lat = 29.2;
    h.lon = 107.3;
    h.ts = now - 1000;
    h.kind = "landslide";
    h.note = "塌方";
    h.received_ts = now;
    rec::Hazard h2 = h;
    h2.seq = 2;
    h2.id = "H-000002";
    h2.report_id = "hz-2";
    write(s, {h, rec::HazardEvent{"H-000001", now, "reported", "landslide reported", "station", "st1"}, h2,
              rec::HazardEvent{"H-000002", now, "reported", "landslide reported", "station", "st1"}});
    h.cleared = true;
    h.cleared_ts = now + 10;
    h.cleared_by = "console:desk1";
    write(s, {h, rec::HazardEvent{"H-000001", now + 10, "cleared", "cleared by console desk1", "console", "desk1"}});
    const auto open = s.hazards({true, 100});
    REQUIRE(open.size() == 1);
    CHECK(open[0].hazard.id == "H-000002");
    const auto all = s.hazards({false, 100});
    REQUIRE(all.size() == 2);
    CHECK(all[0].hazard.id == "H-000002");  // newest first
    CHECK(all[1].hazard.cleared);
    CHECK(all[1].hazard.cleared_ts == now + 10);
    CHECK(all[1].hazard.cleared_by == "console:desk1");
    CHECK(all[1].hazard.note == "塌方");
    REQUIRE(all[1].events.size() == 2);
    CHECK(all[1].events[1].event == "cleared");
    CHECK(s.hazards({false, 1}).size() == 1);
  }
  data::Store s(t.options());
  const auto snap = s.load();
  REQUIRE(snap.stations.open_hazards.size() == 1);
  CHECK(snap.stations.open_hazards[0].id == "H-000002");
  CHECK(snap.stations.hazard_keys.size() == 2);
  CHECK(snap.stations.max_hazard_seq == 2);
}

TEST_CASE("incidents' plates and signals: REST reads, the vehicle's incidents, and what the engine gets back") {
  TempDb t;
  const Millis now = wall();
  Signal sig;
  sig.kind = "impossible_travel";
  sig.detail = "渝A12345 was seen at station ST-FAR ...";
  sig.plates = {"渝A12345"};
  sig.sighting = SignalSighting{"ST-FAR", "渝A12345", now - 600'000, 29.5, 109.6, 300'000, 600'000, 8'985'000};
  Signal rep{"repeat_pair", "together twice", {"渝A12345", "渝B00001"}, {}, {"I-000001"}};
  {
    data::Store s(t.options());
    write(s, {incident(1, now - 40 * day, IncidentState::closed), incident(2, now - 2 * day, IncidentState::closed),
              incident(3, now - hour)});
    std::vector<Write> plates;
    for (int i = 1; i <= 3; ++i) {
      const Millis at = i == 1 ? now - 40 * day : i == 2 ? now - 2 * day : now - hour;
      const std::string id = "I-00000" + std::to_string(i);
      plates.push_back(rec::IncidentPlate{"渝A12345", id, at});
      plates.push_back(rec::IncidentPlate{"渝B00001", id, at});
    }
    plates.push_back(rec::IncidentPlate{"渝A12345", "I-000003", now - hour});  // again: once
    write(s, std::move(plates));
    write(s, {rec::IncidentSignals{"I-000003", now, "report", {sig}}});
    // Computed again at the liability decision: the new set replaces the old.
    write(s, {rec::IncidentSignals{"I-000003", now + 1, "liability", {sig, rep}}});
    const auto r = s.incident("I-000003");
    REQUIRE(r);
    REQUIRE(r->signals.size() == 2);
    CHECK(r->signals[0] == sig);
    CHECK(r->signals[1] == rep);
    CHECK(s.incident("I-000002")->signals.empty());
    const auto v = s.vehicle({"渝a12345", 10, 0});
    REQUIRE(v.incidents.size() == 3);
    CHECK(v.incidents[0].id == "I-000003");
    CHECK(v.incidents[0].state == "assigned");
    CHECK(v.incidents[0].severity == "injury");
    CHECK(v.incidents[0].district == "渝中区");
    CHECK(v.incidents[2].id == "I-000001");
    CHECK(s.vehicle({"渝A12345", 10, now - 2 * day}).incidents.size() == 1);
  }
  data::Store s(t.options());
  const auto snap = s.load();
  // 30 days of incidents' plates (not the one 40 days ago), the signals of the open ones.
  REQUIRE(snap.stations.recent_incidents.size() == 2);
  CHECK(snap.stations.recent_incidents[0].incident == "I-000002");
  CHECK(snap.stations.recent_incidents[0].plates.size() == 2);
  REQUIRE(snap.stations.signals.size() == 1);
  CHECK(snap.stations.signals[0].incident == "I-000003");
  CHECK(snap.stations.signals[0].signals.size() == 2);
}

TEST_CASE("a version-4 database migrates additively: its incidents' plates are indexed") {
  if (on_pg()) {
    MESSAGE("SQLite only; skipped on PostgreSQL");
    return;
  }
  TempDb t;
  const Millis now = wall();
  {
    data::Store s(t.options());
    write(s, {incident(1, now - day), incident(2, now - hour)});
  }
  // Back to version 4: without the stations' tables (nor the assignments' candidates).
  exec(t.path,
       "ALTER TABLE assignments DROP COLUMN candidates;"
       "DROP TABLE sightings; DROP TABLE hazards; DROP TABLE hazard_events;"
       "DROP TABLE incident_plates; DROP TABLE incident_signals; PRAGMA user_version = 4;");
  exec(t.path, "UPDATE incidents SET vehicles = '[{\"plate\":\"渝a·12345\",\"insurer\":\"PICC\"}]' WHERE id = 'I-000002'");
  data::Store s(t.options());
  CHECK(count(t.path, "PRAGMA user_version") == data::Store::schema_version());
  CHECK(count(t.path, "SELECT count(*) FROM incident_plates") == 3);
  const auto v = s.vehicle({"渝A12345", 10, 0});
  REQUIRE(v.incidents.size() == 2);
  CHECK(v.incidents[0].id == "I-000002");
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
}
