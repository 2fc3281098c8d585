// The store on a real SQLite file in a fresh temporary folder, or, with
// DISPATCH_TEST_BACKEND=postgresql, on a fresh database of the PostgreSQL server that
// libpq's environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD: ctest runs it under
// pg_virtualenv). Tests that only make sense on one backend say so and return.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <filesystem>
#include <set>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/lease.hpp"
#include "tests/data/temp_db.hpp"
#include "data/store.hpp"
#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;
namespace fs = std::filesystem;

using test_db::on_pg;
using test_db::count;
using test_db::exec;
using test_db::pg_scalar;
using test_db::TempDb;

namespace {

rec::Unit unit(std::string id, UnitKind k = UnitKind::moto) {
  rec::Unit u;
  u.id = std::move(id);
  u.kind = k;
  u.callsign = "渝警保" + u.id;
  u.capcode = "12000" + u.id;
  return u;
}

rec::Incident incident(std::uint64_t seq, std::string report, IncidentState st = IncidentState::assigned) {
  rec::Incident i;
  i.seq = seq;
  i.id = "I-" + std::to_string(seq);
  i.report_id = std::move(report);
  i.state = st;
  i.severity = Severity::injury;
  i.lat = 29.56;
  i.lon = 106.55;
  i.district = "渝中区";
  i.reported_ts = 1000;
  i.received_ts = 1001;
  i.injured = 1;
  i.vehicles = {{"渝A12345", "PICC"}, {"渝B00001", ""}};
  i.note = "追尾 \"two\" cars";
  i.source = "reporter:cc";
  i.hospital = "西南医院";
  return i;
}

rec::Assignment assignment(std::uint64_t seq, const std::string& inc, const std::string& unit,
                           AssignmentState st = AssignmentState::assigned) {
  rec::Assignment a;
  a.seq = seq;
  a.id = "A-" + std::to_string(seq);
  a.incident = inc;
  a.unit = unit;
  a.state = st;
  a.task = Task::scene;
  a.lat = 29.56;
  a.lon = 106.55;
  a.eta_s = 120;
  a.assigned_ts = 2000;
  return a;
}

// Holds the store's writer (healthy) inside its commit hook, its commit done but not yet
// returned, so that whatever is submitted meanwhile stays queued; records each batch's
// number of writes. Declared before the store it holds, so that it outlives the writer.
struct HeldWriter {
  std::mutex m;
  std::condition_variable cv;
  bool hold = true, in_hook = false;
  std::vector<std::size_t> batch_writes;  // under m

  void attach(data::Store& s) {
    s.on_commit([this](std::int64_t, std::size_t n) {
      std::unique_lock lk(m);
      batch_writes.push_back(n);
      in_hook = true;
      cv.notify_all();
      cv.wait_for(lk, std::chrono::seconds(10), [&] { return !hold; });
    });
  }
  // True once the writer is inside the hook.
  bool held() {
    std::unique_lock lk(m);
    return cv.wait_for(lk, std::chrono::seconds(5), [&] { return in_hook; });
  }
  void release() {
    {
      std::lock_guard lk(m);
      hold = false;
    }
    cv.notify_all();
  }
};

}  // namespace

TEST_CASE("a new database gets the schema, WAL mode and its version") {
  SQLITE_ONLY();
  TempDb t;
  { data::Store s(t.options()); }
  CHECK(count(t.path, "PRAGMA user_version") == data::Store::schema_version());
  for (const char* table : {"units", "incidents", "assignments", "timeline", "unit_events", "tracks", "pages", "claims"}) {
    CAPTURE(table);
    CHECK(count(t.path, std::string("SELECT count(*) FROM sqlite_schema WHERE type='table' AND name='") + table + "'") == 1);
  }
  sqlite3* db = nullptr;
  sqlite3_open(t.path.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_CASE("round trip: every record kind through submit, commit, load and the reads") {
  TempDb t;
  // The records' times are from 1970: keep them when the store prunes as it opens.
  auto o = t.options();
  o.track_retention_ms = o.unit_event_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    s.add_units({unit("M1"), unit("H1", UnitKind::heli)});
    std::vector<Write> w;
    w.push_back(incident(1, "cc-1"));
    w.push_back(incident(2, "cc-2", IncidentState::closed));
    w.push_back(assignment(1, "I-1", "M1"));
    w.push_back(assignment(2, "I-2", "H1", AssignmentState::cleared));
    w.push_back(rec::Timeline{"I-1", 1001, "reported", "injury", "reporter", "cc"});
    w.push_back(rec::Timeline{"I-1", 1002, "assigned", "M1", "system", "dispatchd"});
    w.push_back(rec::UnitEvent{"M1", 2000, "assigned", "assigned A-1", "system", "dispatchd"});
    w.push_back(rec::TrackPoint{"M1", 5000, 29.5, 106.5});
    w.push_back(rec::TrackPoint{"M1", 6000, 29.51, 106.51});
    rec::Page p;
    p.seq = 7;
    p.id = "P-7";
    p.unit = "M1";
    p.capcode = "1200001";
    p.assignment = "A-1";
    p.text = "渝警保M1 injury";
    p.created_ts = 2000;
    w.push_back(p);
    rec::Claim c;
    c.seq = 3;
    c.id = "C-3";
    c.incident = "I-2";
    c.insurer = "PICC";
    c.plates = {"渝A12345"};
    c.created_ts = 3000;
    c.deadline_ts = 3000 + 900000;
    w.push_back(c);
    auto u = unit("M1");
    u.status = UnitStatus::assigned;
    u.updated_ts = 2000;
    w.push_back(u);
    std::atomic<bool> done{false};
    s.submit(std::move(w), [&] { done = true; });
    s.flush();
    CHECK(done);
  }
  data::Store s(o);
  auto snap = s.load();
  REQUIRE(snap.units.size() == 2);
  CHECK(snap.units[1].id == "M1");
  CHECK(snap.units[1].status == UnitStatus::assigned);
  CHECK(snap.units[1].capcode == "12000M1");
  REQUIRE(snap.open_incidents.size() == 1);
  const auto& i = snap.open_incidents[0];
  CHECK(i.id == "I-1");
  CHECK(i.note == "追尾 \"two\" cars");
  CHECK(i.district == "渝中区");
  CHECK(i.hospital == "西南医院");
  REQUIRE(i.vehicles.size() == 2);
  CHECK(i.vehicles[0].plate == "渝A12345");
  CHECK(i.vehicles[0].insurer == "PICC");
  REQUIRE(snap.assignments.size() == 1);
  CHECK(snap.assignments[0].unit == "M1");
  CHECK(snap.assignments[0].eta_s == 120);
  CHECK(snap.timeline.size() == 2);
  REQUIRE(snap.undelivered_pages.size() == 1);
  CHECK(snap.undelivered_pages[0].text == "渝警保M1 injury");
  REQUIRE(snap.report_ids.size() == 2);
  CHECK(snap.report_ids[0].source == "reporter:cc");
  CHECK(snap.report_ids[0].report_id == "cc-1");
  CHECK(snap.report_ids[0].incident == "I-1");
  CHECK(snap.max_incident_seq == 2);
  CHECK(snap.max_assignment_seq == 2);
  CHECK(snap.max_page_seq == 7);
  CHECK(snap.max_claim_seq == 3);
  REQUIRE(snap.claims.size() == 1);  // unpaid, although its incident is closed
  CHECK(snap.claims[0].plates == std::vector<std::string>{"渝A12345"});

  auto one = s.incident("I-2");
  REQUIRE(one);
  CHECK(one->incident.state == IncidentState::closed);
  CHECK(one->assignments.size() == 1);
  CHECK_FALSE(s.incident("I-404").has_value());
  CHECK(s.incidents({}).size() == 1);  // open only by default
  data::IncidentQuery all;
  all.open_only = false;
  CHECK(s.incidents(all).size() == 2);
  CHECK(s.incidents(all)[0].incident.id == "I-2");  // newest first
  CHECK(s.incidents(all)[0].assignments.size() == 1);
  CHECK(s.track("M1", 0, 0).size() == 2);
  CHECK(s.track("M1", 5500, 7000).size() == 1);
  CHECK(s.unit_events("M1").size() == 1);
}

TEST_CASE("round trip: an assignment's candidates (JSON text) are stored, loaded and updated") {
  TempDb t;
  const std::string why =
      R"([{"unit":"M1","distance_m":812,"eta_s":95,"why":"chosen"},)"
      R"({"unit":"M2","distance_m":300,"eta_s":1210,"why":"farther"},)"
      R"({"unit":"渝M\"3","distance_m":500,"eta_s":null,"why":"busy"}])";
  {
    data::Store s(t.options());
    s.add_units({unit("M1"), unit("M2")});
    auto a = assignment(1, "I-1", "M1");
    a.candidates = why;
    auto b = assignment(2, "I-1", "M2");  // stored before candidates were kept: empty
    s.submit({incident(1, "cc-1"), a, b}, [] {});
    a.state = AssignmentState::en_route;  // an upsert keeps them
    a.acked_ts = 2100;
    s.submit({a}, [] {});
    s.flush();
  }
  data::Store s(t.options());
  const auto snap = s.load();
  REQUIRE(snap.assignments.size() == 2);
  CHECK(snap.assignments[0].state == AssignmentState::en_route);
  CHECK(snap.assignments[0].candidates == why);
  CHECK(snap.assignments[1].candidates == "");
  const auto one = s.incident("I-1");
  REQUIRE(one);
  REQUIRE(one->assignments.size() == 2);
  CHECK(one->assignments[0].candidates == why);
}

TEST_CASE("upserts are idempotent; add_units leaves stored units alone") {
  TempDb t;
  data::Store s(t.options());
  auto u = unit("M1");
  u.status = UnitStatus::off_duty;
  s.submit({u}, [] {});
  s.flush();
  s.add_units({unit("M1"), unit("M2")});  // M1 stays off duty
  auto i = incident(1, "cc-1");
  s.submit({i}, [] {});
  i.state = IncidentState::en_route;
  s.submit({i}, [] {});
  s.flush();
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents WHERE state='en_route'") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM units WHERE id='M1' AND status='off_duty'") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM units") == 2);
}

TEST_CASE("done runs after the commit, in submission order; writes are grouped into batches") {
  TempDb t;
  auto o = t.options();
  o.batch_delay = std::chrono::milliseconds(5);
  data::Store s(o);
  std::mutex m;
  std::vector<int> order;
  std::atomic<int> seen_on_disk{0};
  const int threads = 4, per = 100;
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k)
    ts.emplace_back([&, k] {
      for (int j = 0; j < per; ++j) {
        const int n = k * per + j;
        const std::string id = "I-" + std::to_string(n + 1);
        s.submit({incident(static_cast<std::uint64_t>(n + 1), "r" + std::to_string(n))}, [&, n, id] {
          // On disk (seen by another connection) before anybody is told.
          if (count(t.path, "SELECT count(*) FROM incidents WHERE id='" + id + "'") == 1) ++seen_on_disk;
          std::lock_guard lk(m);
          order.push_back(n);
        });
      }
    });
  for (auto& th : ts) th.join();
  s.flush();
  CHECK(seen_on_disk == threads * per);
  CHECK(order.size() == static_cast<std::size_t>(threads * per));
  // Per submitting thread, dones run in that thread's submission order.
  for (int k = 0; k < threads; ++k) {
    int last = -1;
    for (int n : order)
      if (n / per == k) {
        CHECK(n > last);
        last = n;
      }
  }
  const auto st = s.stats();
  CHECK(st.writes == static_cast<std::uint64_t>(threads * per));
  CHECK(st.commits < st.writes);  // group commit
}

TEST_CASE("a database with a newer schema is refused and left alone") {
  SQLITE_ONLY();
  TempDb t;
  exec(t.path, "CREATE TABLE future(x); PRAGMA user_version = 99;");
  CHECK_THROWS_WITH_AS(data::Store(t.options()),
                       doctest::Contains("schema version 99 is newer than this build's"), data::StoreError);
  CHECK(count(t.path, "PRAGMA user_version") == 99);
}

TEST_CASE("a version-1 database is migrated and keeps its rows") {
  SQLITE_ONLY();
  TempDb t;
  exec(t.path,
       "CREATE TABLE units(id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL);"
       "CREATE TABLE incidents(id TEXT PRIMARY KEY, report_id TEXT NOT NULL, state TEXT NOT NULL,"
       " severity TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL, reported_ts INTEGER NOT NULL);"
       "CREATE TABLE assignments(id TEXT PRIMARY KEY, incident TEXT NOT NULL, unit TEXT NOT NULL,"
       " state TEXT NOT NULL, assigned_ts INTEGER NOT NULL);"
       "INSERT INTO units VALUES('M1','moto','en_route');"
       "INSERT INTO incidents VALUES('I-000041','old-1','en_route','injury',29.5,106.5,1000);"
       "INSERT INTO assignments VALUES('A-000017','I-000041','M1','en_route',1001);"
       "PRAGMA user_version = 1;");
  data::Store s(t.options());
  CHECK(count(t.path, "PRAGMA user_version") == data::Store::schema_version());
  auto snap = s.load();
  REQUIRE(snap.open_incidents.size() == 1);
  CHECK(snap.open_incidents[0].report_id == "old-1");
  CHECK(snap.open_incidents[0].seq == 41);  // ids continue after the old ones
  CHECK(snap.max_assignment_seq == 17);
  REQUIRE(snap.assignments.size() == 1);
  CHECK(snap.assignments[0].state == AssignmentState::en_route);
  CHECK(snap.units.at(0).status == UnitStatus::en_route);
}

TEST_CASE("disk full: unhealthy, nothing confirmed, then everything lands once it works again") {
  SQLITE_ONLY();
  TempDb t;
  data::Store s(t.options());
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  const auto pages = count(t.path, "PRAGMA page_count");
  s.set_max_page_count_for_test(pages);  // no room to grow
  std::atomic<int> done{0};
  const std::string big(4000, 'x');
  for (int n = 2; n < 40; ++n) {
    auto i = incident(static_cast<std::uint64_t>(n), "r" + std::to_string(n));
    i.note = big;
    s.submit({i}, [&] { ++done; });
  }
  for (int k = 0; k < 200 && s.healthy(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(s.healthy());
  CHECK_FALSE(s.has_room());  // unhealthy: no room, however short the queue
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(done == 0);  // nobody told
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  CHECK(s.stats().failures > 0);
  s.set_max_page_count_for_test(0);  // the disk has room again
  s.flush();
  CHECK(s.healthy());
  CHECK(s.has_room());
  CHECK(done == 38);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 39);
}

TEST_CASE("track retention deletes old points only") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 10'000;
  data::Store s(o);
  s.submit({rec::TrackPoint{"M1", 1'000, 29.5, 106.5}, rec::TrackPoint{"M1", 95'000, 29.5, 106.5},
            rec::TrackPoint{"M2", 99'000, 29.5, 106.5}},
           [] {});
  s.flush();
  CHECK(s.prune_tracks(100'000) == 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 2);
}

namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// Polls `pred` until it holds or `limit` passes; the test goes on as soon as it holds.
template <class P>
bool wait_for(P pred, milliseconds limit = milliseconds(5000)) {
  const auto end = SteadyClock::now() + limit;
  while (!pred()) {
    if (SteadyClock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

std::int64_t ms_since(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t0).count();
}

std::string schema_of(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT type, name, sql FROM sqlite_schema ORDER BY name", -1, &st,
                             nullptr) == SQLITE_OK);
  std::string out;
  while (sqlite3_step(st) == SQLITE_ROW)
    for (int c = 0; c < 3; ++c) {
      const auto* p = sqlite3_column_text(st, c);
      out += p ? reinterpret_cast<const char*>(p) : "";
      out += c == 2 ? "\n" : " | ";
    }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

Millis wall_now() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Fills the disk (no page more than the file has) and waits until a commit failed.
void fill_disk_and_fail(data::Store& s, const std::string& path, std::atomic<int>& done, int n) {
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  s.set_max_page_count_for_test(count(path, "PRAGMA page_count"));
  const std::string big(4000, 'x');
  for (int k = 0; k < n; ++k) {
    auto i = incident(static_cast<std::uint64_t>(k + 2), "r" + std::to_string(k));
    i.note = big;
    s.submit({i}, [&] { ++done; });
  }
  REQUIRE(wait_for([&] { return !s.healthy(); }));
}

}  // namespace

TEST_CASE("a version-3 database is migrated: report ids indexed by (source, report_id)") {
  SQLITE_ONLY();
  TempDb t;
  const std::string fresh = (t.dir / "fresh.db").string();
  {
    auto o = t.options();
    o.path = fresh;
    data::Store s(o);
  }
  { data::Store s(t.options()); }
  // Version 4 is version 3 plus this step, so undoing it (and the later steps: the rural
  // stations' tables, the assignments' candidates) gives exactly a version-3 file.
  exec(t.path,
       "ALTER TABLE assignments DROP COLUMN candidates;"
       "DROP TABLE sightings; DROP TABLE hazards; DROP TABLE hazard_events;"
       "DROP TABLE incident_plates; DROP TABLE incident_signals;"
       "DROP INDEX incidents_source_report; DROP INDEX unit_events_ts;"
       "CREATE INDEX incidents_report ON incidents(report_id); PRAGMA user_version = 3;");
  REQUIRE(count(t.path, "PRAGMA user_version") == 3);
  // Version-3 rows: the same report id from two tokens, and (as nothing ever enforced it)
  // the same (source, report id) twice.
  exec(t.path,
       "INSERT INTO incidents(id, seq, report_id, state, severity, lat, lon, reported_ts, "
       "received_ts, source) VALUES"
       "('I-000001', 1, 'r-1', 'reported', 'minor', 29.5, 106.5, 1, 1, 'reporter:cc'),"
       "('I-000002', 2, 'r-1', 'reported', 'minor', 29.5, 106.5, 2, 2, 'reporter:web'),"
       "('I-000003', 3, 'r-9', 'closed', 'minor', 29.5, 106.5, 3, 3, ''),"
       "('I-000004', 4, 'r-9', 'closed', 'minor', 29.5, 106.5, 4, 4, '');");
  data::Store s(t.options());
  CHECK(count(t.path, "PRAGMA user_version") == data::Store::schema_version());
  CHECK(data::Store::schema_version() >= 4);
  CHECK(count(t.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'incidents_report'") == 0);
  CHECK(count(t.path, "SELECT count(*) FROM sqlite_schema WHERE name = 'incidents_source_report'") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 4);
  // A migrated file and a new one have the very same schema.
  CHECK(schema_of(t.path) == schema_of(fresh));
  const auto snap = s.load();
  REQUIRE(snap.report_ids.size() == 4);
  CHECK(snap.report_ids[0].source == "reporter:cc");
  CHECK(snap.report_ids[0].report_id == "r-1");
  CHECK(snap.report_ids[0].incident == "I-000001");
  CHECK(snap.report_ids[1].source == "reporter:web");
  CHECK(snap.report_ids[1].report_id == "r-1");
  CHECK(snap.report_ids[1].incident == "I-000002");
  CHECK(snap.report_ids[3].source == "");
  // The index is not UNIQUE: a duplicate pair still commits (the writer would otherwise
  // retry a constraint failure forever).
  auto dup = incident(5, "r-1");
  dup.source = "reporter:cc";
  std::atomic<bool> done{false};
  s.submit({dup}, [&] { done = true; });
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(done);
  CHECK(s.healthy());
}

TEST_CASE("a version-1 database with a report id used twice migrates to the current version") {
  SQLITE_ONLY();
  TempDb t;
  exec(t.path,
       "CREATE TABLE units(id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL);"
       "CREATE TABLE incidents(id TEXT PRIMARY KEY, report_id TEXT NOT NULL, state TEXT NOT NULL,"
       " severity TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL, reported_ts INTEGER NOT NULL);"
       "CREATE TABLE assignments(id TEXT PRIMARY KEY, incident TEXT NOT NULL, unit TEXT NOT NULL,"
       " state TEXT NOT NULL, assigned_ts INTEGER NOT NULL);"
       "INSERT INTO incidents VALUES('I-000001','same','closed','minor',29.5,106.5,1000);"
       "INSERT INTO incidents VALUES('I-000002','same','closed','minor',29.5,106.5,2000);"
       "PRAGMA user_version = 1;");
  data::Store s(t.options());
  CHECK(count(t.path, "PRAGMA user_version") == data::Store::schema_version());
  const auto snap = s.load();
  REQUIRE(snap.report_ids.size() == 2);
  CHECK(snap.report_ids[0].source == "");
  CHECK(snap.report_ids[0].incident == "I-000001");
  CHECK(snap.report_ids[1].incident == "I-000002");
}

TEST_CASE("the same report id from two tokens is two incidents, loaded with their sources") {
  TempDb t;
  {
    data::Store s(t.options());
    auto a = incident(1, "cc-7");
    a.source = "reporter:callcentre";
    auto b = incident(2, "cc-7");
    b.source = "reporter:fastclaims";
    s.submit({a, b}, [] {});
    s.flush();
  }
  data::Store s(t.options());
  const auto snap = s.load();
  REQUIRE(snap.report_ids.size() == 2);
  CHECK(snap.report_ids[0].source == "reporter:callcentre");
  CHECK(snap.report_ids[0].report_id == "cc-7");
  CHECK(snap.report_ids[0].incident == "I-1");
  CHECK(snap.report_ids[1].source == "reporter:fastclaims");
  CHECK(snap.report_ids[1].report_id == "cc-7");
  CHECK(snap.report_ids[1].incident == "I-2");
}

TEST_CASE("the WAL stays bounded under writes that never pause; everything committed is there") {
  // Checkpoints run on a thread of their own, and a PASSIVE checkpoint there never
  // completes while the writer keeps writing: the writer must complete one itself, or the
  // WAL grows without end (it did: 1.4 GB in 14 s at 1,000 reports/s).
  SQLITE_ONLY();
  TempDb t;
  const std::string wal = t.path + "-wal";
  const std::string note(3000, 'n');  // about a page of WAL per incident
  constexpr int jobs = 4000, per_job = 5;  // 20k pages: five times the bound below
  std::uintmax_t largest = 0;
  {
    auto o = t.options();
    o.batch_max = 100;  // commits of about 100 pages, so the WAL's length is seen closely
    data::Store s(o);
    std::atomic<int> done{0};
    for (int j = 0; j < jobs; ++j) {
      std::vector<Write> w;
      for (int k = 0; k < per_job; ++k) {
        rec::Incident r;
        r.seq = static_cast<std::uint64_t>(j * per_job + k + 1);
        r.id = "I-" + std::to_string(r.seq);
        r.report_id = "wal-" + std::to_string(r.seq);
        r.reported_ts = r.received_ts = 1764300000000 + static_cast<std::int64_t>(r.seq);
        r.note = note;
        w.push_back(std::move(r));
      }
      s.submit(std::move(w), [&] { ++done; });
    }
    // All queued at once: the writer commits without a pause while the WAL's length is
    // sampled (its file never shrinks while open, so the largest sample is its peak).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (done < jobs && std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      largest = std::max(largest, fs::file_size(wal, ec));
      std::this_thread::sleep_for(milliseconds(2));
    }
    CHECK(s.flush_for(milliseconds(30000)));
    std::error_code ec;
    largest = std::max(largest, fs::file_size(wal, ec));
    CHECK(done == jobs);
  }
  // The bound: 8,000 frames of 4 KiB and their headers, and a batch's worth over it.
  CHECK(largest > 0);
  CHECK(largest < std::uintmax_t{9000} * (4096 + 24));
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == jobs * per_job);
}

TEST_CASE("bounded queue: has_room and submit_optional follow max_queued_writes") {
  TempDb t;
  auto o = t.options();
  o.max_queued_writes = 10;
  HeldWriter writer;
  data::Store s(o);
  writer.attach(s);
  std::atomic<int> done{0};
  s.submit({rec::TrackPoint{"M1", 1, 29.5, 106.5}}, [&] { ++done; });
  REQUIRE(writer.held());
  CHECK(s.stats().queued == 1);  // committed, but its commit has not returned yet
  CHECK(s.has_room());
  std::vector<Write> nine;
  for (int k = 0; k < 9; ++k) nine.push_back(rec::TrackPoint{"M1", 100 + k, 29.5, 106.5});
  CHECK(s.submit_optional(nine));  // 10: at the bound, not over it
  CHECK(s.stats().queued == 10);
  CHECK(s.has_room());
  CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M1", 200, 29.5, 106.5}}));  // would be 11
  CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M2", 200, 29.5, 106.5},
                                 rec::TrackPoint{"M2", 201, 29.5, 106.5}}));
  CHECK(s.stats().dropped == 3);
  CHECK(s.stats().queued == 10);
  s.submit({rec::TrackPoint{"M3", 300, 29.5, 106.5}}, [&] { ++done; });  // always queued
  CHECK(s.stats().queued == 11);
  CHECK_FALSE(s.has_room());  // over the bound
  CHECK(s.healthy());
  writer.release();
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(done == 2);
  CHECK(s.has_room());
  CHECK(s.stats().queued == 0);
  CHECK(s.submit_optional({rec::TrackPoint{"M4", 400, 29.5, 106.5}}));
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1 + 9 + 1 + 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks WHERE unit = 'M2' OR ts = 200") == 0);
  CHECK(s.stats().dropped == 3);
}

TEST_CASE("optional writes ride along a few at a time: a commit somebody waits for is never a long one") {
  // (With nobody waiting they go 256 a commit, so that a burst drains at a large
  // transaction's pace.)
  TempDb t;
  HeldWriter writer;  // everything below is queued together
  data::Store s(t.options());
  writer.attach(s);
  s.submit({rec::TrackPoint{"M0", 1, 29.5, 106.5}}, [] {});
  REQUIRE(writer.held());
  // 600 track points (as one frame of positions can give), then a report's writes.
  std::vector<Write> points;
  for (int k = 0; k < 600; ++k) points.push_back(rec::TrackPoint{"M" + std::to_string(k % 50 + 1), 10 + k, 29.5, 106.5});
  REQUIRE(s.submit_optional(std::move(points)));
  std::atomic<std::int64_t> tracks_when_told{-1};
  std::size_t batches_when_told = 0;
  s.submit({incident(1, "r1")}, [&] {
    tracks_when_told = count(t.path, "SELECT count(*) FROM tracks");
    std::lock_guard lk(writer.m);
    batches_when_told = writer.batch_writes.size();
  });
  // And a flush after them: it waits for every point queued before it.
  std::atomic<bool> flushed{false};
  std::thread flusher([&] { flushed = s.flush_for(milliseconds(10000)); });
  writer.release();
  flusher.join();
  CHECK(flushed);
  // The report was told after its own commit, which carried at most 32 of the points.
  CHECK(tracks_when_told >= 1);
  CHECK(tracks_when_told <= 1 + 32);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 601);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  std::lock_guard lk(writer.m);
  const auto& batch_writes = writer.batch_writes;
  REQUIRE(batches_when_told >= 2);
  for (std::size_t i = 0; i < batches_when_told; ++i) CHECK(batch_writes[i] <= 32 + 1);
  // The rest of the points (at least 568) in a few large commits, not in 32s.
  std::size_t later = 0;
  for (std::size_t i = batches_when_told; i < batch_writes.size(); ++i) later += batch_writes[i] > 0 ? 1 : 0;
  CHECK(later <= 3);
  CHECK(s.stats().dropped == 0);
}

TEST_CASE("a report queued behind thousands of optional writes goes in the next commit") {
  TempDb t;
  HeldWriter writer;
  data::Store s(t.options());
  writer.attach(s);
  s.submit({rec::TrackPoint{"M0", 1, 29.5, 106.5}}, [] {});
  REQUIRE(writer.held());
  // Every unit's first point at 100k units comes as 200 frames of 500: here 20 of them.
  for (int f = 0; f < 20; ++f) {
    std::vector<Write> points;
    for (int k = 0; k < 500; ++k) points.push_back(rec::TrackPoint{"U" + std::to_string(f * 500 + k), 10, 29.5, 106.5});
    REQUIRE(s.submit_optional(std::move(points)));
  }
  std::atomic<std::int64_t> tracks_when_told{-1};
  s.submit({incident(1, "r1")}, [&] { tracks_when_told = count(t.path, "SELECT count(*) FROM tracks"); });
  writer.release();
  REQUIRE(s.flush_for(milliseconds(20000)));
  CHECK(tracks_when_told >= 1);
  CHECK(tracks_when_told <= 1 + 32);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1 + 10000);
}

TEST_CASE("flush_for gives up on a failing disk within its deadline, succeeds once it works") {
  SQLITE_ONLY();
  TempDb t;
  data::Store s(t.options());
  std::atomic<int> done{0};
  fill_disk_and_fail(s, t.path, done, 20);
  const auto t0 = SteadyClock::now();
  CHECK_FALSE(s.flush_for(milliseconds(300)));
  const auto took = ms_since(t0);
  CHECK(took >= 290);
  CHECK(took < 300 + 3000);
  CHECK(done == 0);
  s.set_max_page_count_for_test(0);
  CHECK(s.flush_for(milliseconds(10000)));
  CHECK(done == 20);
  CHECK(s.healthy());
}

TEST_CASE("close on a failing disk returns by its deadline and confirms nothing it gave up") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.close_deadline = milliseconds(300);
  o.retry_after = std::chrono::seconds(30);  // the deadline must cut the retry wait short
  o.batch_max = 4;                           // several batches left behind
  std::atomic<int> done{0};
  {
    data::Store s(o);
    fill_disk_and_fail(s, t.path, done, 30);
    // Someone else is waiting on a flush: close() must wake them too.
    std::atomic<int> flushed{-1};
    std::thread waiter([&] { flushed = s.flush_for(milliseconds(60000)) ? 1 : 0; });
    const auto t0 = SteadyClock::now();
    CHECK_FALSE(s.close());  // writes were given up
    const auto took = ms_since(t0);
    CHECK(took < 300 + 3000);
    waiter.join();
    CHECK(ms_since(t0) < 300 + 3000);  // the waiter was not left waiting for its 60 s
    CHECK(flushed == 0);
    CHECK(done == 0);  // no completion of a write that never committed
    CHECK(s.stats().abandoned == 30);
    CHECK(s.stats().queued == 0);
    // Idempotent, and harmless afterwards.
    const auto t1 = SteadyClock::now();
    CHECK_FALSE(s.close());
    CHECK(ms_since(t1) < 1000);
    s.submit({incident(100, "late")}, [&] { ++done; });
    CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M1", 1, 29.5, 106.5}}));
    CHECK_FALSE(s.flush_for(milliseconds(100)));
    CHECK_FALSE(s.has_room());
    CHECK(s.incidents({}).empty());
    CHECK(s.prune_tracks(1'000'000) == 0);
  }  // the destructor closes again: nothing left to do
  CHECK(done == 0);
  // The file is intact, with only what was committed.
  data::Store s(t.options());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  s.submit({incident(50, "after")}, [] {});
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
}

TEST_CASE("the destructor cannot hang while commits keep failing") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.close_deadline = milliseconds(300);
  o.retry_after = milliseconds(20);
  std::atomic<int> done{0};
  auto s = std::make_unique<data::Store>(o);
  fill_disk_and_fail(*s, t.path, done, 50);
  const auto t0 = SteadyClock::now();
  s.reset();
  const auto took = ms_since(t0);
  CHECK(took >= 250);  // it did keep trying until the deadline
  CHECK(took < 300 + 3000);
  CHECK(done == 0);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
}

TEST_CASE("close on a healthy store commits everything queued and runs every completion") {
  TempDb t;
  auto o = t.options();
  o.batch_max = 8;
  data::Store s(o);
  std::atomic<int> done{0};
  for (int k = 1; k <= 200; ++k)
    s.submit({incident(static_cast<std::uint64_t>(k), "r" + std::to_string(k))}, [&] { ++done; });
  CHECK(s.close());
  CHECK(done == 200);
  CHECK(s.stats().abandoned == 0);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 200);
}

TEST_CASE("unit_events retention: prune_tracks deletes old unit events too, in chunks") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 10'000;
  o.unit_event_retention_ms = 50'000;
  data::Store s(o);
  std::vector<Write> w;
  // More than one chunk (10,000) of old events, so that pruning has to go round.
  for (int k = 0; k < 25'000; ++k) w.push_back(rec::UnitEvent{"M1", 1'000 + k, "status", "", "", ""});
  w.push_back(rec::UnitEvent{"M1", 49'999, "old", "", "", ""});
  w.push_back(rec::UnitEvent{"M1", 50'000, "kept", "", "", ""});  // exactly the cutoff: kept
  w.push_back(rec::UnitEvent{"M2", 99'000, "kept", "", "", ""});
  w.push_back(rec::TrackPoint{"M1", 80'000, 29.5, 106.5});  // older than the tracks' 10 s
  w.push_back(rec::TrackPoint{"M1", 95'000, 29.5, 106.5});
  s.submit(std::move(w), [] {});
  s.flush();
  CHECK(s.prune_tracks(100'000) == 25'000 + 1 + 1);
  CHECK(count(t.path, "SELECT count(*) FROM unit_events") == 2);
  const auto m1 = s.unit_events("M1");
  REQUIRE(m1.size() == 1);
  CHECK(m1[0].event == "kept");
  CHECK(s.unit_events("M2").size() == 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1);
  CHECK(s.prune_tracks(100'000) == 0);
}

TEST_CASE("the store prunes old unit events and tracks by itself when it opens") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 60'000;
  o.unit_event_retention_ms = 60'000;
  const Millis now = wall_now();
  {
    data::Store s(o);
    s.submit({rec::UnitEvent{"M1", now - 3'600'000, "ancient", "", "", ""},
              rec::UnitEvent{"M1", now, "recent", "", "", ""},
              rec::TrackPoint{"M1", now - 3'600'000, 29.5, 106.5},
              rec::TrackPoint{"M1", now, 29.5, 106.5}},
             [] {});
    s.flush();
    CHECK(count(t.path, "SELECT count(*) FROM unit_events") == 2);
  }
  data::Store s(o);
  const auto ev = s.unit_events("M1");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].event == "recent");
  CHECK(s.track("M1", 0, 0).size() == 1);
}

TEST_CASE("paging: 2,500 incidents in pages of 1,000, newest first, each exactly once") {
  TempDb t;
  data::Store s(t.options());
  std::vector<Write> w;
  for (std::uint64_t k = 1; k <= 2500; ++k)
    w.push_back(incident(k, "r" + std::to_string(k), k % 5 == 0 ? IncidentState::closed : IncidentState::assigned));
  s.submit(std::move(w), [] {});
  s.flush();

  data::IncidentQuery q;
  q.open_only = false;
  q.limit = 1000;
  std::set<std::string> seen;
  std::vector<std::size_t> sizes;
  std::uint64_t last_seq = UINT64_MAX;
  bool ordered = true;
  for (int page = 0; page < 10; ++page) {
    const auto got = s.incidents(q);
    sizes.push_back(got.size());
    if (got.empty()) break;
    for (const auto& r : got) {
      if (r.incident.seq >= last_seq) ordered = false;
      last_seq = r.incident.seq;
      seen.insert(r.incident.id);
    }
    q.before = got.back().incident.id;
  }
  CHECK(sizes == std::vector<std::size_t>{1000, 1000, 500, 0});
  CHECK(ordered);
  CHECK(seen.size() == 2500);
  CHECK(*seen.begin() == "I-1");

  // Open only: 2,000 of them, the same way.
  data::IncidentQuery open;
  open.limit = 1000;
  std::size_t open_seen = 0;
  std::set<std::string> open_ids;
  for (int page = 0; page < 10; ++page) {
    const auto got = s.incidents(open);
    if (got.empty()) break;
    for (const auto& r : got) {
      CHECK(r.incident.state != IncidentState::closed);
      open_ids.insert(r.incident.id);
      ++open_seen;
    }
    open.before = got.back().incident.id;
  }
  CHECK(open_seen == 2000);
  CHECK(open_ids.size() == 2000);

  // `before` names the boundary, not a position: the page starts right below it.
  data::IncidentQuery below;
  below.open_only = false;
  below.limit = 3;
  below.before = "I-2000";
  const auto page = s.incidents(below);
  REQUIRE(page.size() == 3);
  CHECK(page[0].incident.id == "I-1999");
  CHECK(page[2].incident.id == "I-1997");
  below.before = "I-1";
  CHECK(s.incidents(below).empty());
  below.before = "I-404404";  // unknown
  CHECK(s.incidents(below).empty());
  below.before = "";
  below.limit = 0;
  CHECK(s.incidents(below).empty());
}

TEST_CASE("paging never skips incidents that share a seq (rows migrated from version 1)") {
  TempDb t;
  data::Store s(t.options());
  std::vector<Write> w;
  for (const char* id : {"OLD-a", "OLD-b", "OLD-c", "OLD-d"}) {
    auto i = incident(0, id);
    i.id = id;  // no trailing number: seq 0 for them all
    w.push_back(i);
  }
  w.push_back(incident(1, "new"));
  s.submit(std::move(w), [] {});
  s.flush();
  data::IncidentQuery q;
  q.open_only = false;
  q.limit = 1;
  std::vector<std::string> ids;
  for (int k = 0; k < 10; ++k) {
    const auto got = s.incidents(q);
    if (got.empty()) break;
    ids.push_back(got[0].incident.id);
    q.before = got[0].incident.id;
  }
  CHECK(ids == std::vector<std::string>{"I-1", "OLD-d", "OLD-c", "OLD-b", "OLD-a"});
}

TEST_CASE("each unit is restored at its newest track point") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    s.add_units({unit("M1"), unit("M2"), unit("M3")});
    s.submit({rec::TrackPoint{"M1", 5000, 29.5, 106.5}, rec::TrackPoint{"M1", 9000, 29.6, 106.6},
              rec::TrackPoint{"M2", 7000, 29.7, 106.7}, rec::TrackPoint{"M2", 6000, 29.1, 106.1}},
             [] {});
    s.flush();
  }
  data::Store s(o);
  auto snap = s.load();
  REQUIRE(snap.last_positions.size() == 2);  // M3 was never seen
  std::sort(snap.last_positions.begin(), snap.last_positions.end(),
            [](const auto& a, const auto& b) { return a.unit < b.unit; });
  CHECK(snap.last_positions[0].unit == "M1");
  CHECK(snap.last_positions[0].ts == 9000);
  CHECK(snap.last_positions[0].lat == 29.6);
  CHECK(snap.last_positions[1].unit == "M2");
  CHECK(snap.last_positions[1].ts == 7000);
  CHECK(snap.last_positions[1].lon == 106.7);
}

// ---- PostgreSQL only

#define PG_ONLY()                                        \
  do {                                                   \
    if (!on_pg()) {                                      \
      MESSAGE("PostgreSQL only; skipped on SQLite");     \
      return;                                            \
    }                                                    \
  } while (0)

TEST_CASE("PostgreSQL: a new database gets the schema, its version and the lease row") {
  PG_ONLY();
  TempDb t;
  { data::Store s(t.options()); }
  CHECK(count(t.path, "SELECT max(version) FROM schema_version") == data::Store::schema_version());
  for (const char* table : {"units", "incidents", "assignments", "timeline", "unit_events", "tracks", "pages", "claims"}) {
    CAPTURE(table);
    CHECK(count(t.path, std::string("SELECT count(*) FROM pg_tables WHERE tablename='") + table + "'") == 1);
  }
  CHECK(count(t.path, "SELECT epoch FROM lease WHERE id = 1") == 0);
  { data::Store again(t.options()); }  // opening it again changes nothing
  CHECK(count(t.path, "SELECT count(*) FROM schema_version") == 1);
}

TEST_CASE("PostgreSQL: a newer schema and a foreign database are refused and left alone") {
  PG_ONLY();
  TempDb t;
  { data::Store s(t.options()); }
  count(t.path, "UPDATE schema_version SET version = 99");
  CHECK_THROWS_WITH_AS(data::Store(t.options()), doctest::Contains("schema version 99 is newer than this build's"),
                       data::StoreError);
  CHECK(count(t.path, "SELECT max(version) FROM schema_version") == 99);
  TempDb other;
  count(other.path, "CREATE TABLE somebody_elses(x int)");
  CHECK_THROWS_WITH_AS(data::Store(other.options()), doctest::Contains("not a dispatchd database"), data::StoreError);
}

TEST_CASE("PostgreSQL: a lost connection fails a commit, which is retried on a new one; nobody is told before") {
  PG_ONLY();
  TempDb t;
  data::Store s(t.options());
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  // Cut every session of the store's database (the writer's and the reader's).
  count(t.path, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()");
  std::atomic<int> done{0};
  s.submit({incident(2, "after")}, [&] { ++done; });
  s.flush();
  CHECK(done == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
  CHECK(s.incident("I-2").has_value());  // the read connection is back too
}

TEST_CASE("PostgreSQL: the lease fences a former active: its next commit fails, nothing is told, it stays fenced") {
  PG_ONLY();
  TempDb t;
  using std::chrono::milliseconds;
  data::Store a(t.options());
  data::Lease la(t.path, "a", milliseconds(200));
  std::int64_t ea = 0, eb = 0;
  REQUIRE(la.take(ea) == data::Lease::Outcome::ok);
  CHECK(ea == 1);
  a.set_epoch(ea);
  std::atomic<int> done_a{0};
  a.submit({incident(1, "while active")}, [&] { ++done_a; });
  a.flush();
  CHECK(done_a == 1);

  data::Lease lb(t.path, "b", milliseconds(200));
  CHECK(lb.take(eb) == data::Lease::Outcome::held);  // not yet expired
  CHECK(la.renew(ea) == data::Lease::Outcome::ok);
  // a stops renewing (paused): b takes the lease once it has expired.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (lb.take(eb) != data::Lease::Outcome::ok && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(milliseconds(20));
  REQUIRE(eb == ea + 1);
  CHECK(la.renew(ea) == data::Lease::Outcome::held);

  bool fenced_hook = false;
  a.on_fenced([&] { fenced_hook = true; });
  a.submit({incident(2, "after the takeover")}, [&] { ++done_a; });
  a.flush();
  CHECK(a.fenced());
  CHECK(fenced_hook);
  CHECK(done_a == 1);  // never told
  CHECK_FALSE(a.has_room());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  a.submit({incident(3, "later")}, [&] { ++done_a; });  // refused at once
  a.flush();
  CHECK(done_a == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);

  data::Store b(t.options());
  b.set_epoch(eb);
  std::atomic<int> done_b{0};
  b.submit({incident(2, "the new active")}, [&] { ++done_b; });
  b.flush();
  CHECK(done_b == 1);
  CHECK_FALSE(b.fenced());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
  lb.release(eb);
  std::int64_t ec = 0;
  CHECK(la.take(ec) == data::Lease::Outcome::ok);  // released: taken at once
  CHECK(ec == eb + 1);
}

// Service levels from what is on disk (issue 12, item 5).
TEST_CASE("load: service samples from the history on disk, closed incidents included") {
  TempDb t;  // SQLite, or PostgreSQL under DISPATCH_TEST_BACKEND=postgresql
  auto o = t.options();
  o.track_retention_ms = o.unit_event_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    std::vector<Write> w;
    rec::Incident i;
    i.seq = 1;
    i.id = "I-1";
    i.report_id = "r1";
    i.state = IncidentState::closed;
    i.severity = Severity::critical;
    i.district = "巫溪县";
    i.reported_ts = 1'000'000;
    i.received_ts = 1'002'000;
    i.liability_ts = 1'100'000;
    i.source = "reporter:cc";
    w.push_back(i);
    auto asg = [&](std::uint64_t seq, Task task, Millis assigned, Millis arrived) {
      rec::Assignment a;
      a.seq = seq;
      a.id = "A-" + std::to_string(seq);
      a.incident = "I-1";
      a.unit = "U" + std::to_string(seq);
      a.task = task;
      a.state = AssignmentState::cleared;
      a.assigned_ts = assigned;
      a.arrived_ts = arrived;
      return a;
    };
    w.push_back(asg(1, Task::scene, 1'005'000, 1'300'000));         // first assigned: 3 s
    w.push_back(asg(2, Task::secure_lz, 1'006'000, 1'200'000));     // at the LZ: not the scene
    w.push_back(asg(3, Task::landing_zone, 1'006'000, 1'250'000));  // the heli: not the scene
    w.push_back(asg(4, Task::scene, 1'007'000, 1'400'000));         // the second on scene
    auto line = [](Millis ts, const char* ev) { return rec::Timeline{"I-1", ts, ev, "", "gateway", "avl"}; };
    w.push_back(line(1'006'000, "heli_called"));
    w.push_back(line(1'066'000, "airborne"));
    w.push_back(line(1'070'000, "airborne"));  // an old duplicate: the first counts
    w.push_back(line(1'250'000, "landed"));
    w.push_back(line(2'006'000, "transferred"));
    rec::Claim c;
    c.seq = 1;
    c.id = "C-1";
    c.incident = "I-1";
    c.insurer = "PICC";
    c.created_ts = 1'100'000;
    c.deadline_ts = 2'000'000;
    c.paid = true;
    c.paid_ts = 1'600'000;
    w.push_back(c);
    s.submit(std::move(w), [] {});
    s.flush();
  }
  data::Store s(o);
  const Snapshot snap = s.load();
  CHECK(snap.open_incidents.empty());
  std::map<std::string, std::vector<double>> by_stage;
  for (const auto& x : snap.service_samples) {
    CHECK(x.district == "巫溪县");
    CHECK(x.severity == Severity::critical);
    by_stage[x.stage].push_back(x.seconds);
  }
  CHECK(by_stage["to_assign"] == std::vector<double>{3});
  CHECK(by_stage["to_scene"] == std::vector<double>{298});
  CHECK(by_stage["to_liability"] == std::vector<double>{100});
  CHECK(by_stage["to_claim_paid"] == std::vector<double>{600});
  CHECK(by_stage["airborne"] == std::vector<double>{60});
  CHECK(by_stage["landed"] == std::vector<double>{244});
  CHECK(by_stage["transferred"] == std::vector<double>{1000});

  // The engine counts them as it would have live.
  Engine e;
  e.restore(snap, 3'000'000);
  const auto& sl = e.service_levels().at("巫溪县|critical");
  CHECK(sl.to_scene.count == 1);
  CHECK(sl.to_scene.max_s == doctest::Approx(298));
  CHECK(sl.call_to_hospital.sum_s == doctest::Approx(1000));
  s.close();
}

TEST_CASE("history filters: time range, district, severity, state, plate; combined; paged with before") {
  TempDb t;
  data::Store s(t.options());
  // 300 incidents: reported a minute apart; districts, severities and states in cycles;
  // every seventh with the plate 渝C77777 (written "渝c 77777" on some).
  const char* districts[] = {"渝中区", "江北区", "沙坪坝区"};
  const Severity severities[] = {Severity::minor, Severity::injury, Severity::critical, Severity::minor};
  const IncidentState states[] = {IncidentState::closed, IncidentState::assigned, IncidentState::remote,
                                  IncidentState::cancelled, IncidentState::on_scene};
  const std::int64_t t0 = 1'700'000'000'000;
  std::vector<Write> w;
  for (std::uint64_t k = 1; k <= 300; ++k) {
    auto i = incident(k, "r" + std::to_string(k), states[k % 5]);
    i.district = districts[k % 3];
    i.severity = severities[k % 4];
    i.reported_ts = t0 + static_cast<std::int64_t>(k) * 60'000;
    i.vehicles = {{"渝A" + std::to_string(10000 + k), "PICC"}};
    if (k % 7 == 0) i.vehicles.push_back({k % 2 ? "渝c 77777" : "渝C77777", "平安"});
    w.push_back(std::move(i));
  }
  s.submit(std::move(w), [] {});
  s.flush();

  // Every id the query gives, paging through with `before` in pages of `page`.
  auto all_pages = [&](data::IncidentQuery q, std::size_t page) {
    q.limit = page;
    std::vector<std::uint64_t> seqs;
    for (int n = 0; n < 1000; ++n) {
      const auto got = s.incidents(q);
      CHECK(got.size() <= page);
      for (const auto& r : got) seqs.push_back(r.incident.seq);
      if (got.size() < page) break;
      q.before = got.back().incident.id;
    }
    return seqs;
  };
  auto expect = [](auto pred) {
    std::vector<std::uint64_t> seqs;
    for (std::uint64_t k = 300; k >= 1; --k)
      if (pred(k)) seqs.push_back(k);
    return seqs;
  };
  data::IncidentQuery base;
  base.open_only = false;

  SUBCASE("from and to are inclusive") {
    auto q = base;
    q.from = t0 + 10 * 60'000;
    q.to = t0 + 20 * 60'000;
    CHECK(all_pages(q, 4) == expect([](auto k) { return k >= 10 && k <= 20; }));
    q.to.reset();
    CHECK(all_pages(q, 50) == expect([](auto k) { return k >= 10; }));
    q.from.reset();
    q.to = t0 + 60'000;
    CHECK(all_pages(q, 50) == std::vector<std::uint64_t>{1});
  }
  SUBCASE("district exact") {
    auto q = base;
    q.district = "江北区";
    CHECK(all_pages(q, 17) == expect([](auto k) { return k % 3 == 1; }));
    q.district = "江北";
    CHECK(all_pages(q, 17).empty());
  }
  SUBCASE("severity") {
    auto q = base;
    q.severity = "critical";
    CHECK(all_pages(q, 9) == expect([](auto k) { return k % 4 == 2; }));
  }
  SUBCASE("state: one state, or open only") {
    auto q = base;
    q.state = "remote";
    CHECK(all_pages(q, 11) == expect([](auto k) { return k % 5 == 2; }));
    auto open = base;
    open.open_only = true;
    open.district = "渝中区";  // filtered: through the filtered statement
    CHECK(all_pages(open, 11) == expect([](auto k) { return k % 3 == 0 && k % 5 != 0 && k % 5 != 3; }));
    open.state = "closed";  // open and closed: nothing
    CHECK(all_pages(open, 11).empty());
  }
  SUBCASE("plate: any vehicle of the incident, spaces and case ignored") {
    auto q = base;
    q.plate = "渝C77777";
    CHECK(all_pages(q, 5) == expect([](auto k) { return k % 7 == 0; }));
    q.plate = "渝c 77777";
    CHECK(all_pages(q, 5) == expect([](auto k) { return k % 7 == 0; }));
    q.plate = "渝A10123";
    CHECK(all_pages(q, 5) == std::vector<std::uint64_t>{123});
    q.plate = "渝A1012";  // not a prefix search
    CHECK(all_pages(q, 5).empty());
    q.plate = "渝A1012_";  // LIKE's wildcards are plain characters here
    CHECK(all_pages(q, 5).empty());
    q.plate = "%";
    CHECK(all_pages(q, 5).empty());
    q.plate = "PICC";  // an insurer is not a plate
    CHECK(all_pages(q, 5).empty());
  }
  SUBCASE("all combined, and a page boundary inside the matches") {
    auto q = base;
    q.from = t0 + 50 * 60'000;
    q.to = t0 + 280 * 60'000;
    q.district = "渝中区";
    q.severity = "minor";
    q.state = "closed";
    // k % 3 == 0, k % 4 in {0, 3}, k % 5 == 0, 50 <= k <= 280
    const auto want =
        expect([](auto k) { return k >= 50 && k <= 280 && k % 3 == 0 && (k % 4 == 0 || k % 4 == 3) && k % 5 == 0; });
    REQUIRE(want.size() >= 4);
    CHECK(all_pages(q, 1) == want);
    CHECK(all_pages(q, 2) == want);
    CHECK(all_pages(q, 1000) == want);
    q.plate = "渝C77777";
    CHECK(all_pages(q, 2) ==
          expect([](auto k) { return k >= 50 && k <= 280 && k % 3 == 0 && (k % 4 == 0 || k % 4 == 3) && k % 5 == 0 && k % 7 == 0; }));
  }
  SUBCASE("the records carry their assignments like unfiltered pages") {
    s.submit({assignment(1, "I-7", "M1")}, [] {});
    s.flush();
    auto q = base;
    q.plate = "渝C77777";
    q.limit = 300;
    const auto got = s.incidents(q);
    REQUIRE(!got.empty());
    CHECK(got.back().incident.id == "I-7");
    CHECK(got.back().assignments.size() == 1);
    CHECK(got.back().incident.vehicles.size() == 2);
  }
}
