// The durable store: SQLite in WAL mode (a file path) or PostgreSQL (a postgresql:// or
// postgres:// URL), one writer thread with group commit, and a separate read connection
// for REST and history. Neither <sqlite3.h> nor <libpq-fe.h> appears in this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/records.hpp"

namespace dispatch::data {

// Thrown at start-up only (cannot open, newer schema than this build knows, ...).
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct StoreOptions {
  // A SQLite file, or postgresql://USER:PASSWORD@HOST:PORT/DB (libpq's URI form).
  std::string path;
  bool synchronous_full = true;          // false: synchronous=NORMAL
  std::size_t batch_max = 1024;          // commit when this many writes are pending ...
  std::chrono::microseconds batch_delay{0};  // ... or this long after the first one came
  std::chrono::milliseconds retry_after{500};  // after a failed commit, try again
  std::int64_t track_retention_ms = 7LL * 24 * 3600 * 1000;
  // unit_events (the units' audit trail) older than this are pruned like tracks.
  std::int64_t unit_event_retention_ms = 90LL * 24 * 3600 * 1000;
  // Sightings (rural stations) older than this are pruned like tracks.
  std::int64_t sighting_retention_ms = 90LL * 24 * 3600 * 1000;
  // The write queue's bound, in writes submitted and not yet committed. Over it,
  // has_room() is false (the server answers `unavailable` to commands that need a
  // write) and submit_optional() drops its writes. submit() always queues: what it is
  // given is bounded by the engine's state (timers ending assignments), not by clients.
  std::size_t max_queued_writes = 100'000;
  // How long the destructor (and close()) keeps trying to commit what is queued while
  // the disk fails, before it gives up on it. What is given up was never confirmed.
  std::chrono::milliseconds close_deadline{5000};
};

// A page of incidents, newest first (GET /api/incidents). The filters combine (AND) with
// each other and with limit/before; an unset filter matches everything.
struct IncidentQuery {
  bool open_only = true;
  std::size_t limit = 1000;      // at most this many
  std::string before;            // only incidents older (smaller seq) than this id; "" = newest
                                 // (an id the store does not know gives an empty page)
  std::optional<std::int64_t> from, to;  // reported_ts in ms, inclusive
  std::string district;          // exactly this district ("" = any)
  std::string severity;          // minor | injury | critical ("" = any)
  std::string state;             // exactly this incident state ("" = any); with open_only, both apply
  std::string plate;             // an incident with a vehicle of this plate (spaces and letter
                                 // case ignored; "" = any)
  bool filtered() const {
    return from || to || !district.empty() || !severity.empty() || !state.empty() || !plate.empty();
  }
};

// An incident as read back for REST, with its assignments and timeline.
struct IncidentRecord {
  engine::rec::Incident incident;
  std::vector<engine::rec::Assignment> assignments;
  std::vector<engine::rec::Timeline> timeline;
  std::vector<engine::Signal> signals{};  // fraud signals (rural stations), [] when none
};

// Rural stations (contract v2 section 10): GET /api/hazards, newest first.
struct HazardQuery {
  bool open_only = true;
  std::size_t limit = 1000;
};
struct HazardRecord {
  engine::rec::Hazard hazard;
  std::vector<engine::rec::HazardEvent> events;  // its history, oldest first
};
// GET /api/vehicles/{plate}: its sightings and incidents, newest first, each list at most
// `limit` long and older than `before_ts` (0: no bound). The plate matches as a key
// (engine::SignalBook::normalize_plate).
struct VehicleQuery {
  std::string plate;
  std::size_t limit = 100;
  engine::Millis before_ts = 0;
};
struct VehicleHistory {
  std::vector<engine::rec::Sighting> sightings;
  struct Incident {
    std::string id;
    engine::Millis reported_ts = 0;
    std::string severity, state;
    double lat = 0, lon = 0;
    std::string district;
  };
  std::vector<Incident> incidents;
};

struct StoreStats {
  std::uint64_t commits = 0;
  std::uint64_t writes = 0;
  std::uint64_t failures = 0;
  bool healthy = true;
  std::uint64_t queued = 0;    // writes submitted and not yet committed
  std::uint64_t dropped = 0;   // writes submit_optional() dropped (queue over its bound)
  std::uint64_t abandoned = 0; // writes given up at close() (the disk kept failing)
};

class Store {
 public:
  // Opens or creates the database, creates or migrates the schema. Throws StoreError.
  explicit Store(StoreOptions options);
  // Commits everything submitted, stops the writer, closes cleanly.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Recovery, before the writer is busy: the open state and the counters.
  engine::Snapshot load();
  // Adds roster units the database does not have yet (units already stored stay as they
  // are). Synchronous; at start-up.
  void add_units(const std::vector<engine::rec::Unit>& units);

  // Queues writes. `done(true)` runs on the writer thread once the batch holding them has
  // committed. A failed commit is retried (every retry_after) until it succeeds, so done
  // is only ever called with true, late if the disk is in trouble; meanwhile healthy()
  // is false. An empty `writes` still waits for everything queued before it.
  void submit(std::vector<engine::Write> writes, std::function<void()> done);
  // Queues writes nobody waits for (track points) unless the queue is over its bound;
  // returns false when they were dropped.
  bool submit_optional(std::vector<engine::Write> writes);
  // False while the queue is over max_queued_writes or commits are failing.
  bool has_room() const;
  // Commits what it can within close_deadline, stops the writer and closes the
  // database. Idempotent; the destructor calls it. Returns false when writes were
  // given up (the disk kept failing).
  bool close();
  // Blocks until everything submitted so far has committed (or was given up by close()).
  // After close(), submit() drops its writes (logged; done is never called) and
  // submit_optional() returns false.
  void flush();
  // Like flush(), but gives up after `deadline`; true when everything committed.
  bool flush_for(std::chrono::milliseconds deadline);
  // False while commits are failing (disk full, I/O error); true again once one succeeds.
  bool healthy() const;
  StoreStats stats() const;
  // Commit latency histogram hook: called on the writer thread with each commit's
  // duration in microseconds and its number of writes.
  void on_commit(std::function<void(std::int64_t micros, std::size_t writes)> hook);

  // Reads, on their own connection (thread-safe; serialised internally).
  std::optional<IncidentRecord> incident(const std::string& id);
  std::vector<IncidentRecord> incidents(const IncidentQuery& query);
  // Points with since <= ts <= until, oldest first; until == 0 means no upper bound.
  std::vector<engine::rec::TrackPoint> track(const std::string& unit, engine::Millis since,
                                             engine::Millis until);
  std::vector<engine::rec::UnitEvent> unit_events(const std::string& unit);
  // Rural stations (data/stations_store.cpp).
  std::vector<HazardRecord> hazards(const HazardQuery& query);
  VehicleHistory vehicle(const VehicleQuery& query);

  // Deletes track points older than now - track_retention_ms (and unit_events older
  // than now - unit_event_retention_ms, sightings older than now - sighting_retention_ms) and returns how many rows went. The
  // writer also does this by itself at start and every few minutes (wall clock), so
  // this is for tests and tools. Blocks until the writer has done it.
  std::size_t prune_tracks(engine::Millis now);
  // Test hook: PRAGMA max_page_count on the write connection (0 lifts the limit); runs on
  // the writer thread even while it is retrying a failed commit. Returns the limit in
  // force (SQLite never sets it below the current size).
  std::int64_t set_max_page_count_for_test(std::int64_t pages);

  static int schema_version();

  // ---- several servers on one database (PostgreSQL; wire contract section 9)
  // True when other dispatchd may share this database, so that a lease (data/lease.hpp)
  // decides which one is active. False for SQLite: always active, no lease.
  bool shared() const;
  // Every commit from now on first checks, in its own transaction, that the lease still
  // has this epoch (0: no check). Blocks until the writer has taken it.
  void set_epoch(std::int64_t epoch);
  // True once a commit found the lease's epoch changed: that batch and everything queued
  // were given up (their done never runs), and every later write is refused. Final.
  bool fenced() const;
  // Called once, on the writer thread, when the store becomes fenced.
  void on_fenced(std::function<void()> hook);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dispatch::data
