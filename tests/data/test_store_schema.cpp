// The store's schema: a new database (SQLite or PostgreSQL), one from a newer build refused
// and left alone, and every migration from the versions before. Same backends as
// test_store.cpp (DISPATCH_TEST_BACKEND=postgresql: a fresh PostgreSQL database).
#include "data/lease.hpp"
#include "tests/data/store_fixtures.hpp"

using namespace store_test;

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
