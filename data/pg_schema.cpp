#include "data/pg_schema.hpp"

#include <fmt/format.h>

#include "data/pg.hpp"
#include "data/schema.hpp"

namespace dispatch::data::pg_schema {

namespace {

// Steps `from` -> `to`. A PostgreSQL database never held the versions before 4 (the first
// version PostgreSQL ran), so its first step creates version 4 at once; later versions
// are one step each, like SQLite's. Same history rule: a released step is never edited.
struct Migration {
  int from;
  int to;
  const char* what;
  const char* sql;
};

// Booleans are BIGINT 0/1 as in SQLite (INTEGER), so that one SQL text serves both;
// ids sort by bytes (COLLATE "C") as in SQLite.
constexpr Migration migrations[] = {
    {0, 4, "create the version-4 schema and the lease",
     R"sql(
CREATE TABLE units(
  id TEXT COLLATE "C" PRIMARY KEY,
  kind TEXT NOT NULL,
  callsign TEXT NOT NULL DEFAULT '',
  capcode TEXT NOT NULL DEFAULT '',
  base_lat DOUBLE PRECISION,
  base_lon DOUBLE PRECISION,
  status TEXT NOT NULL,
  updated_ts BIGINT
);
CREATE TABLE incidents(
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  report_id TEXT COLLATE "C" NOT NULL,
  state TEXT NOT NULL,
  severity TEXT NOT NULL,
  lat DOUBLE PRECISION NOT NULL,
  lon DOUBLE PRECISION NOT NULL,
  district TEXT NOT NULL DEFAULT '',
  reported_ts BIGINT NOT NULL,
  received_ts BIGINT NOT NULL,
  injured BIGINT NOT NULL DEFAULT 0,
  drivable BIGINT NOT NULL DEFAULT 0,
  parties_agree BIGINT NOT NULL DEFAULT 0,
  vehicles TEXT NOT NULL DEFAULT '[]',
  note TEXT NOT NULL DEFAULT '',
  source TEXT COLLATE "C" NOT NULL DEFAULT '',
  at_fault TEXT NOT NULL DEFAULT '',
  liability_ts BIGINT,
  closed_ts BIGINT,
  hospital TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incidents_seq ON incidents(seq);
CREATE INDEX incidents_open ON incidents(seq) WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX incidents_source_report ON incidents(source, report_id);
CREATE TABLE assignments(
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  incident TEXT COLLATE "C" NOT NULL,
  unit TEXT COLLATE "C" NOT NULL,
  task TEXT NOT NULL DEFAULT 'scene',
  state TEXT NOT NULL,
  lat DOUBLE PRECISION NOT NULL DEFAULT 0,
  lon DOUBLE PRECISION NOT NULL DEFAULT 0,
  eta_s BIGINT NOT NULL DEFAULT 0,
  assigned_ts BIGINT NOT NULL,
  acked_ts BIGINT,
  arrived_ts BIGINT,
  cleared_ts BIGINT,
  ended_ts BIGINT,
  end_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX assignments_incident ON assignments(incident);
CREATE TABLE timeline(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  incident TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  actor_role TEXT NOT NULL DEFAULT '',
  actor_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX timeline_incident ON timeline(incident, ts);
CREATE TABLE unit_events(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  actor_role TEXT NOT NULL DEFAULT '',
  actor_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX unit_events_unit ON unit_events(unit, ts);
CREATE INDEX unit_events_ts ON unit_events(ts);
CREATE TABLE tracks(
  unit TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  lat DOUBLE PRECISION NOT NULL,
  lon DOUBLE PRECISION NOT NULL,
  PRIMARY KEY(unit, ts)
);
CREATE INDEX tracks_ts ON tracks(ts);
CREATE TABLE pages(
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  unit TEXT COLLATE "C" NOT NULL,
  capcode TEXT NOT NULL,
  assignment TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL,
  delivered BIGINT NOT NULL DEFAULT 0,
  created_ts BIGINT NOT NULL,
  delivered_ts BIGINT
);
CREATE INDEX pages_undelivered ON pages(seq) WHERE delivered = 0;
CREATE TABLE claims(
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  incident TEXT COLLATE "C" NOT NULL,
  insurer TEXT NOT NULL,
  plates TEXT NOT NULL DEFAULT '[]',
  insured_at_fault BIGINT NOT NULL DEFAULT 0,
  paid BIGINT NOT NULL DEFAULT 0,
  created_ts BIGINT NOT NULL,
  deadline_ts BIGINT NOT NULL,
  paid_ts BIGINT,
  amount DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX claims_incident ON claims(incident);
CREATE INDEX claims_unpaid ON claims(seq) WHERE paid = 0;

-- Contract section 9: which dispatchd is active. One row; epoch grows by one at every
-- takeover; expires_at is on the database's clock, the one clock every server shares.
CREATE TABLE lease(
  id INT PRIMARY KEY CHECK (id = 1),
  epoch BIGINT NOT NULL,
  holder TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO lease VALUES(1, 0, '', '-infinity');
-- The first statement of every commit of an active server: waits for a takeover in
-- progress (the row lock) and fails the transaction when the epoch is not its own.
CREATE FUNCTION dispatch_fence(e BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM lease WHERE id = 1 AND epoch = e FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'fenced: the lease is no longer at epoch %', e USING ERRCODE = 'DF001';
  END IF;
END $$;
)sql"},

    {4, 5, "reserved for version 5 (another branch's step; at a merge, its step replaces this one)",
     "SELECT 1"},

    {5, 6, "rural stations: sightings, hazards and their history, incidents' plates and signals",
     // As SQLite's step 5 (additive); the incidents already stored get their plates indexed.
     R"sql(
CREATE TABLE sightings(
  station TEXT COLLATE "C" NOT NULL,
  plate TEXT NOT NULL,
  plate_key TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  lat DOUBLE PRECISION NOT NULL,
  lon DOUBLE PRECISION NOT NULL,
  direction TEXT NOT NULL DEFAULT '',
  note TEXT NOT NULL DEFAULT '',
  received_ts BIGINT NOT NULL,
  PRIMARY KEY(station, plate_key, ts)
);
CREATE INDEX sightings_plate_ts ON sightings(plate_key, ts);
CREATE INDEX sightings_ts ON sightings(ts);
CREATE TABLE hazards(
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGINT NOT NULL,
  report_id TEXT COLLATE "C" NOT NULL,
  source TEXT COLLATE "C" NOT NULL,
  station TEXT COLLATE "C" NOT NULL DEFAULT '',
  lat DOUBLE PRECISION NOT NULL,
  lon DOUBLE PRECISION NOT NULL,
  ts BIGINT NOT NULL,
  kind TEXT NOT NULL,
  note TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  received_ts BIGINT NOT NULL,
  cleared_ts BIGINT,
  cleared_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX hazards_seq ON hazards(seq);
CREATE INDEX hazards_open ON hazards(seq) WHERE state = 'open';
CREATE INDEX hazards_source_report ON hazards(source, report_id);
CREATE TABLE hazard_events(
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hazard TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL,
  actor_role TEXT NOT NULL,
  actor_name TEXT NOT NULL
);
CREATE INDEX hazard_events_hazard ON hazard_events(hazard, ts);
CREATE TABLE incident_plates(
  plate_key TEXT COLLATE "C" NOT NULL,
  incident TEXT COLLATE "C" NOT NULL,
  plate TEXT NOT NULL,
  reported_ts BIGINT NOT NULL,
  PRIMARY KEY(plate_key, incident)
);
CREATE INDEX incident_plates_key_ts ON incident_plates(plate_key, reported_ts);
CREATE INDEX incident_plates_ts ON incident_plates(reported_ts);
INSERT INTO incident_plates(plate_key, incident, plate, reported_ts)
  SELECT replace(replace(replace(replace(replace(upper(v->>'plate'), ' ', ''), '.', ''), '-', ''),
                 chr(183), ''), chr(12539), ''),
         i.id, v->>'plate', i.reported_ts
  FROM incidents i, jsonb_array_elements(CASE WHEN i.vehicles ~ '^\s*\[' THEN i.vehicles::jsonb ELSE '[]'::jsonb END) v
  WHERE coalesce(v->>'plate', '') != ''
  ON CONFLICT DO NOTHING;
CREATE TABLE incident_signals(
  incident TEXT COLLATE "C" PRIMARY KEY,
  computed_ts BIGINT NOT NULL,
  stage TEXT NOT NULL,
  signals TEXT NOT NULL DEFAULT '[]'
);
)sql"},

    {6, 7, "the candidates weighed for each assignment (JSON array text; protocol.md \"Candidates\")",
     R"sql(
ALTER TABLE assignments ADD COLUMN candidates TEXT NOT NULL DEFAULT '';
)sql"},
};

constexpr bool steps_in_order() {
  int v = 0;
  for (const auto& m : migrations) {
    if (m.from != v || m.to <= m.from) return false;
    v = m.to;
  }
  return v == schema::version;
}
static_assert(steps_in_order(), "the PostgreSQL steps go from 0 to schema::version without gaps");

// The lock that serialises schema changes between servers starting at once.
constexpr const char* lock_key = "7311409";

std::int64_t scalar(pg::Conn& c, const std::string& sql, const std::string& where) {
  auto r = c.exec(sql);
  if (!r.ok() || r.rows() != 1) throw StoreError(fmt::format("cannot read {}: {}", where, r.error()));
  return pg::ResultRow(r, 0).int64(0);
}

void run(pg::Conn& c, const std::string& sql, const std::string& what) {
  auto r = c.exec(sql);
  if (!r.ok()) throw StoreError(fmt::format("{}: {}", what, r.error()));
}

}  // namespace

void prepare(pg::Conn& c, const std::string& where) {
  run(c, "BEGIN", "cannot begin preparing the schema of " + where);
  try {
    run(c, std::string("SELECT pg_advisory_xact_lock(") + lock_key + ")", "cannot lock " + where);
    const bool has_version =
        scalar(c, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_version'",
               where) == 1;
    std::int64_t current = 0;
    if (has_version) {
      current = scalar(c, "SELECT coalesce(max(version), 0) FROM schema_version", where);
    } else if (scalar(c, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()", where) > 0) {
      throw StoreError(
          fmt::format("{} is not a dispatchd database (it has tables but no schema_version)", where));
    }
    if (current > schema::version)
      throw StoreError(fmt::format("database schema version {} is newer than this build's {}; upgrade dispatchd",
                                   current, schema::version));
    if (!has_version) run(c, "CREATE TABLE schema_version(version INT NOT NULL)", "cannot create schema_version");
    for (const auto& m : migrations) {
      if (m.from < current) continue;
      auto r = c.exec(m.sql);
      if (!r.ok())
        throw StoreError(fmt::format("migrating {} from schema version {} to {} ({}) failed: {}", where, m.from, m.to,
                                     m.what, r.error()));
    }
    if (current < schema::version) {
      run(c, "DELETE FROM schema_version", "cannot record the schema version");
      run(c, fmt::format("INSERT INTO schema_version VALUES({})", schema::version),
          "cannot record the schema version");
    }
    run(c, "COMMIT", "cannot commit the schema of " + where);
  } catch (...) {
    c.exec("ROLLBACK");
    throw;
  }
}

}  // namespace dispatch::data::pg_schema
