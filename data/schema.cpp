#include "data/schema.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <string_view>

#include "data/store.hpp"

namespace dispatch::data::schema {

namespace {

// One step, version `from` -> `from + 1`. Steps are history: once released, a step is
// never edited; a change to the schema is a new step at the end. A new database runs
// every step from 0, so a fresh file and a migrated one have the very same schema.
struct Migration {
  int from;
  const char* what;
  const char* sql;
};

constexpr Migration migrations[] = {
    {0, "create the version-1 schema",
     // Version 1 was the first sketch: units, incidents and assignments, nothing more.
     R"sql(
CREATE TABLE units(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  status TEXT NOT NULL
);
CREATE TABLE incidents(
  id TEXT PRIMARY KEY,
  report_id TEXT NOT NULL,
  state TEXT NOT NULL,
  severity TEXT NOT NULL,
  lat REAL NOT NULL,
  lon REAL NOT NULL,
  reported_ts INTEGER NOT NULL
);
CREATE TABLE assignments(
  id TEXT PRIMARY KEY,
  incident TEXT NOT NULL,
  unit TEXT NOT NULL,
  state TEXT NOT NULL,
  assigned_ts INTEGER NOT NULL
);
)sql"},

    {1, "full records, timeline, unit events, tracks, pages",
     // The three old tables are rebuilt (STRICT, new columns with their place in the
     // row) rather than altered; seq is recovered from the number at the end of the id,
     // so that new ids continue after the old ones.
     R"sql(
CREATE TABLE units_v2(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  callsign TEXT NOT NULL DEFAULT '',
  capcode TEXT NOT NULL DEFAULT '',
  base_lat REAL,
  base_lon REAL,
  status TEXT NOT NULL,
  updated_ts INTEGER
) STRICT;
INSERT INTO units_v2(id, kind, status) SELECT id, kind, status FROM units;
DROP TABLE units;
ALTER TABLE units_v2 RENAME TO units;

CREATE TABLE incidents_v2(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  report_id TEXT NOT NULL,
  state TEXT NOT NULL,
  severity TEXT NOT NULL,
  lat REAL NOT NULL,
  lon REAL NOT NULL,
  district TEXT NOT NULL DEFAULT '',
  reported_ts INTEGER NOT NULL,
  received_ts INTEGER NOT NULL,
  injured INTEGER NOT NULL DEFAULT 0,
  drivable INTEGER NOT NULL DEFAULT 0,
  parties_agree INTEGER NOT NULL DEFAULT 0,
  vehicles TEXT NOT NULL DEFAULT '[]',
  note TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  at_fault TEXT NOT NULL DEFAULT '',
  liability_ts INTEGER,
  closed_ts INTEGER
) STRICT;
INSERT INTO incidents_v2(id, seq, report_id, state, severity, lat, lon, reported_ts,
                         received_ts)
  SELECT id, trailing_number(id), report_id, state, severity, lat, lon, reported_ts,
         reported_ts
  FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_v2 RENAME TO incidents;
CREATE INDEX incidents_seq ON incidents(seq);
CREATE INDEX incidents_open ON incidents(seq) WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX incidents_report ON incidents(report_id);

CREATE TABLE assignments_v2(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  incident TEXT NOT NULL,
  unit TEXT NOT NULL,
  task TEXT NOT NULL DEFAULT 'scene',
  state TEXT NOT NULL,
  lat REAL NOT NULL DEFAULT 0,
  lon REAL NOT NULL DEFAULT 0,
  eta_s INTEGER NOT NULL DEFAULT 0,
  assigned_ts INTEGER NOT NULL,
  acked_ts INTEGER,
  arrived_ts INTEGER,
  cleared_ts INTEGER,
  ended_ts INTEGER,
  end_reason TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT INTO assignments_v2(id, seq, incident, unit, state, assigned_ts)
  SELECT id, trailing_number(id), incident, unit, state, assigned_ts FROM assignments;
DROP TABLE assignments;
ALTER TABLE assignments_v2 RENAME TO assignments;
CREATE INDEX assignments_incident ON assignments(incident);

CREATE TABLE timeline(
  id INTEGER PRIMARY KEY,
  incident TEXT NOT NULL,
  ts INTEGER NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  actor_role TEXT NOT NULL DEFAULT '',
  actor_name TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX timeline_incident ON timeline(incident, ts);

CREATE TABLE unit_events(
  id INTEGER PRIMARY KEY,
  unit TEXT NOT NULL,
  ts INTEGER NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  actor_role TEXT NOT NULL DEFAULT '',
  actor_name TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX unit_events_unit ON unit_events(unit, ts);

CREATE TABLE tracks(
  unit TEXT NOT NULL,
  ts INTEGER NOT NULL,
  lat REAL NOT NULL,
  lon REAL NOT NULL,
  PRIMARY KEY(unit, ts)
) STRICT, WITHOUT ROWID;
CREATE INDEX tracks_ts ON tracks(ts);

CREATE TABLE pages(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  unit TEXT NOT NULL,
  capcode TEXT NOT NULL,
  assignment TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL,
  delivered INTEGER NOT NULL DEFAULT 0,
  created_ts INTEGER NOT NULL,
  delivered_ts INTEGER
) STRICT;
CREATE INDEX pages_undelivered ON pages(seq) WHERE delivered = 0;
)sql"},

    {2, "claims for insurers, the receiving hospital of an incident",
     R"sql(
ALTER TABLE incidents ADD COLUMN hospital TEXT NOT NULL DEFAULT '';
CREATE TABLE claims(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  incident TEXT NOT NULL,
  insurer TEXT NOT NULL,
  plates TEXT NOT NULL DEFAULT '[]',
  insured_at_fault INTEGER NOT NULL DEFAULT 0,
  paid INTEGER NOT NULL DEFAULT 0,
  created_ts INTEGER NOT NULL,
  deadline_ts INTEGER NOT NULL,
  paid_ts INTEGER,
  amount REAL NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX claims_incident ON claims(incident);
CREATE INDEX claims_unpaid ON claims(seq) WHERE paid = 0;
)sql"},

    {3, "report ids scoped to their token: index incidents by (source, report_id); "
        "unit_events by age",
     // Contract v2: two tokens may use the same report id for different accidents, so
     // the key of a report is (source, report_id). The index is deliberately not UNIQUE:
     // nothing ever enforced the pair before (version-1 rows all have source '' and
     // report ids nobody checked), so a UNIQUE index could fail this migration on an
     // existing file, and at run time a violation would fail a commit that the writer
     // retries forever. The engine keeps reports idempotent; the index is for lookups.
     R"sql(
DROP INDEX incidents_report;
CREATE INDEX incidents_source_report ON incidents(source, report_id);
-- unit_events are pruned by age like tracks (unit_event_retention_ms), oldest first.
CREATE INDEX unit_events_ts ON unit_events(ts);
)sql"},

    {4, "reserved for version 5 (another branch's step; at a merge, its step replaces this "
        "one, and the rural stations' step stays the step to version 6)",
     "SELECT 1;"},

    {5, "rural stations: sightings, hazards and their history, incidents' plates and signals",
     // Additive: new tables only. The incidents already stored get their plates indexed
     // (the key drops spaces and dots and upper-cases ASCII, as SignalBook::normalize_plate).
     R"sql(
CREATE TABLE sightings(
  station TEXT NOT NULL,
  plate TEXT NOT NULL,
  plate_key TEXT NOT NULL,
  ts INTEGER NOT NULL,
  lat REAL NOT NULL,
  lon REAL NOT NULL,
  direction TEXT NOT NULL DEFAULT '',
  note TEXT NOT NULL DEFAULT '',
  received_ts INTEGER NOT NULL,
  PRIMARY KEY(station, plate_key, ts)
) STRICT, WITHOUT ROWID;
CREATE INDEX sightings_plate_ts ON sightings(plate_key, ts);
CREATE INDEX sightings_ts ON sightings(ts);

CREATE TABLE hazards(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  report_id TEXT NOT NULL,
  source TEXT NOT NULL,
  station TEXT NOT NULL DEFAULT '',
  lat REAL NOT NULL,
  lon REAL NOT NULL,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  received_ts INTEGER NOT NULL,
  cleared_ts INTEGER,
  cleared_by TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX hazards_seq ON hazards(seq);
CREATE INDEX hazards_open ON hazards(seq) WHERE state = 'open';
CREATE INDEX hazards_source_report ON hazards(source, report_id);

CREATE TABLE hazard_events(
  id INTEGER PRIMARY KEY,
  hazard TEXT NOT NULL,
  ts INTEGER NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL,
  actor_role TEXT NOT NULL,
  actor_name TEXT NOT NULL
) STRICT;
CREATE INDEX hazard_events_hazard ON hazard_events(hazard, ts);

CREATE TABLE incident_plates(
  plate_key TEXT NOT NULL,
  incident TEXT NOT NULL,
  plate TEXT NOT NULL,
  reported_ts INTEGER NOT NULL,
  PRIMARY KEY(plate_key, incident)
) STRICT, WITHOUT ROWID;
CREATE INDEX incident_plates_key_ts ON incident_plates(plate_key, reported_ts);
CREATE INDEX incident_plates_ts ON incident_plates(reported_ts);
INSERT OR IGNORE INTO incident_plates(plate_key, incident, plate, reported_ts)
  SELECT upper(replace(replace(replace(replace(replace(json_extract(v.value, '$.plate'),
                 ' ', ''), '.', ''), '-', ''), char(183), ''), char(12539), '')),
         i.id, json_extract(v.value, '$.plate'), i.reported_ts
  FROM incidents i, json_each(i.vehicles) v
  WHERE json_valid(i.vehicles) AND json_extract(v.value, '$.plate') IS NOT NULL
    AND json_extract(v.value, '$.plate') != '';

CREATE TABLE incident_signals(
  incident TEXT PRIMARY KEY,
  computed_ts INTEGER NOT NULL,
  stage TEXT NOT NULL,
  signals TEXT NOT NULL DEFAULT '[]'
) STRICT;
)sql"},

    {6, "the candidates weighed for each assignment (JSON array text; protocol.md \"Candidates\")",
     R"sql(
ALTER TABLE assignments ADD COLUMN candidates TEXT NOT NULL DEFAULT '';
)sql"},
};

constexpr bool steps_in_order() {
  for (std::size_t i = 0; i < std::size(migrations); ++i)
    if (migrations[i].from != static_cast<int>(i)) return false;
  return true;
}
static_assert(std::size(migrations) == version, "one migration step per version");
static_assert(steps_in_order(), "step i migrates version i to i + 1");

// trailing_number('INC-000123') = 123; 0 when the text does not end in a digit.
void trailing_number(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const auto* p = sqlite3_value_text(argv[0]);
  if (!p) {
    sqlite3_result_int64(ctx, 0);
    return;
  }
  const std::string_view s(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_value_bytes(argv[0])));
  std::size_t start = s.size();
  while (start > 0 && s[start - 1] >= '0' && s[start - 1] <= '9') --start;
  std::int64_t n = 0;
  for (std::size_t i = start; i < s.size() && n < (INT64_MAX - 9) / 10; ++i)
    n = n * 10 + (s[i] - '0');
  sqlite3_result_int64(ctx, n);
}

std::int64_t user_version(sql::Db& db, const std::string& path) {
  const auto v = db.pragma_int("PRAGMA user_version");
  if (!v) throw StoreError(fmt::format("cannot read {}: {}", path, db.errmsg()));
  return *v;
}

void refuse_newer(std::int64_t found) {
  if (found > version)
    throw StoreError(fmt::format(
        "database schema version {} is newer than this build's {}; upgrade dispatchd", found,
        version));
}

}  // namespace

void register_functions(sql::Db& db) {
  sqlite3_create_function_v2(db.get(), "trailing_number", 1,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr,
                             trailing_number, nullptr, nullptr, nullptr);
}

void prepare(sql::Db& db, const std::string& path) {
  // Look before touching anything: a newer database must be left exactly as it is.
  const std::int64_t found = user_version(db, path);
  refuse_newer(found);
  if (found == 0) {
    const auto objects = db.pragma_int("SELECT count(*) FROM sqlite_schema");
    if (!objects) throw StoreError(fmt::format("cannot read {}: {}", path, db.errmsg()));
    if (*objects > 0)
      throw StoreError(fmt::format(
          "{} is not a dispatchd database (it has tables but no schema version)", path));
  }

  {
    sql::Statement wal(db, "PRAGMA journal_mode=WAL");
    sql::Query q(wal);
    if (!q.next() || q.text(0) != "wal")
      throw StoreError(fmt::format("cannot switch {} to WAL mode: {}", path, db.errmsg()));
  }

  register_functions(db);
  sql::Transaction tx(db, sql::Transaction::Mode::immediate);
  if (tx.begin_rc() != SQLITE_OK)
    throw StoreError(fmt::format("cannot lock {} to prepare its schema: {}", path,
                                 db.errmsg()));
  // Again under the write lock: another process may have migrated it meanwhile.
  const std::int64_t current = user_version(db, path);
  refuse_newer(current);
  for (std::int64_t v = current; v < version; ++v) {
    const Migration& m = migrations[v];
    if (db.exec(m.sql) != SQLITE_OK)
      throw StoreError(fmt::format("migrating {} from schema version {} to {} ({}) failed: {}",
                                   path, v, v + 1, m.what, db.errmsg()));
  }
  if (current < version) {
    db.exec_or_throw(fmt::format("PRAGMA user_version = {}", version).c_str(),
                     "cannot record the schema version");
  }
  if (tx.commit() != SQLITE_OK)
    throw StoreError(fmt::format("cannot commit the schema of {}: {}", path, db.errmsg()));
}

}  // namespace dispatch::data::schema
