// The store on a real SQLite file in a fresh temporary folder.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/store.hpp"

using namespace dispatch;
using namespace dispatch::engine;
namespace fs = std::filesystem;

namespace {

struct TempDb {
  fs::path dir;
  std::string path;
  TempDb() {
    char tmpl[] = "/tmp/dispatch-store-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    dir = tmpl;
    path = (dir / "dispatch.db").string();
  }
  ~TempDb() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  data::StoreOptions options() const {
    data::StoreOptions o;
    o.path = path;
    o.retry_after = std::chrono::milliseconds(20);
    return o;
  }
};

// A second, independent connection: what is really on disk.
std::int64_t count(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

void exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << " -> " << (err ? err : ""));
  CHECK(rc == SQLITE_OK);
  sqlite3_free(err);
  sqlite3_close(db);
}

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

}  // namespace

TEST_CASE("a new database gets the schema, WAL mode and its version") {
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
  {
    data::Store s(t.options());
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
  data::Store s(t.options());
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
  CHECK(snap.report_ids.size() == 2);
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
  CHECK(s.incidents(true).size() == 1);
  CHECK(s.incidents(false).size() == 2);
  CHECK(s.incidents(false)[0].incident.id == "I-2");  // newest first
  CHECK(s.track("M1", 0, 0).size() == 2);
  CHECK(s.track("M1", 5500, 7000).size() == 1);
  CHECK(s.unit_events("M1").size() == 1);
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
  TempDb t;
  exec(t.path, "CREATE TABLE future(x); PRAGMA user_version = 99;");
  CHECK_THROWS_WITH_AS(data::Store(t.options()),
                       doctest::Contains("schema version 99 is newer than this build's"), data::StoreError);
  CHECK(count(t.path, "PRAGMA user_version") == 99);
}

TEST_CASE("a version-1 database is migrated and keeps its rows") {
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
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(done == 0);  // nobody told
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  CHECK(s.stats().failures > 0);
  s.set_max_page_count_for_test(0);  // the disk has room again
  s.flush();
  CHECK(s.healthy());
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
