#include "data/store.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include "data/schema.hpp"
#include "data/sqlite.hpp"
#include "data/stations_store.hpp"

namespace dispatch::data {

namespace rec = engine::rec;
using Clock = std::chrono::steady_clock;
using engine::Millis;

namespace {

// How often the writer deletes old track points and unit events, and how many per
// transaction: the writer runs one chunk between two batches, so that a large backlog
// never holds the queue up for long.
constexpr auto prune_every = std::chrono::minutes(5);
constexpr std::int64_t prune_chunk = 10000;
// The write connection's busy wait (another process holding the lock), as
// sqlite3_busy_timeout would, except that it ends at the close deadline.
constexpr int busy_timeout_ms = 5000;

void log_line(const std::string& line) { std::fprintf(stderr, "dispatch store: %s\n", line.c_str()); }

// 0 means "not yet" in the records and NULL in the database.
std::optional<std::int64_t> ts_or_null(Millis t) {
  return t == 0 ? std::nullopt : std::optional<std::int64_t>(t);
}

std::string vehicles_json(const std::vector<engine::Vehicle>& vehicles) {
  boost::json::array a;
  a.reserve(vehicles.size());
  for (const auto& v : vehicles) a.push_back({{"plate", v.plate}, {"insurer", v.insurer}});
  return boost::json::serialize(a);
}

std::vector<engine::Vehicle> parse_vehicles(const std::string& text) {
  std::vector<engine::Vehicle> out;
  boost::system::error_code ec;
  const auto jv = boost::json::parse(text, ec);
  if (ec || !jv.is_array()) return out;
  for (const auto& item : jv.get_array()) {
    const auto* o = item.if_object();
    if (!o) continue;
    engine::Vehicle v;
    if (const auto* p = o->if_contains("plate"); p && p->is_string()) v.plate = p->get_string();
    if (const auto* p = o->if_contains("insurer"); p && p->is_string())
      v.insurer = p->get_string();
    out.push_back(std::move(v));
  }
  return out;
}

// Column lists: the readers below take the columns in exactly this order.
#define UNIT_COLS "id, kind, callsign, capcode, base_lat, base_lon, status, updated_ts"
#define INCIDENT_COLS                                                                      \
  "id, seq, report_id, state, severity, lat, lon, district, reported_ts, received_ts, " \
  "injured, drivable, parties_agree, vehicles, note, source, at_fault, liability_ts, "  \
  "closed_ts, hospital"
#define ASSIGNMENT_COLS                                                                  \
  "id, seq, incident, unit, task, state, lat, lon, eta_s, assigned_ts, acked_ts, "      \
  "arrived_ts, cleared_ts, ended_ts, end_reason"
#define A_ASSIGNMENT_COLS                                                                  \
  "a.id, a.seq, a.incident, a.unit, a.task, a.state, a.lat, a.lon, a.eta_s, "             \
  "a.assigned_ts, a.acked_ts, a.arrived_ts, a.cleared_ts, a.ended_ts, a.end_reason"
#define TIMELINE_COLS "incident, ts, event, detail, actor_role, actor_name"
#define T_TIMELINE_COLS "t.incident, t.ts, t.event, t.detail, t.actor_role, t.actor_name"
#define UNIT_EVENT_COLS "unit, ts, event, detail, actor_role, actor_name"
#define TRACK_COLS "unit, ts, lat, lon"
#define PAGE_COLS                                                                          \
  "id, seq, unit, capcode, assignment, text, delivered, created_ts, delivered_ts"
#define CLAIM_COLS                                                                         \
  "id, seq, incident, insurer, plates, insured_at_fault, paid, created_ts, deadline_ts, "  \
  "paid_ts, amount"
#define C_CLAIM_COLS                                                                       \
  "c.id, c.seq, c.incident, c.insurer, c.plates, c.insured_at_fault, c.paid, c.created_ts, " \
  "c.deadline_ts, c.paid_ts, c.amount"
#define OPEN_STATE "state NOT IN ('closed', 'cancelled')"

rec::Unit read_unit(const sql::Query& q) {
  rec::Unit u;
  u.id = q.text(0);
  u.kind = engine::parse_unit_kind(q.text(1)).value_or(engine::UnitKind::moto);
  u.callsign = q.text(2);
  u.capcode = q.text(3);
  if (!q.is_null(4) && !q.is_null(5)) u.base = geo::LatLon{q.real(4), q.real(5)};
  u.status = engine::parse_unit_status(q.text(6)).value_or(engine::UnitStatus::available);
  u.updated_ts = q.int64(7);
  return u;
}

rec::Incident read_incident(const sql::Query& q) {
  rec::Incident i;
  i.id = q.text(0);
  i.seq = static_cast<std::uint64_t>(q.int64(1));
  i.report_id = q.text(2);
  i.state = engine::parse_incident_state(q.text(3)).value_or(engine::IncidentState::reported);
  i.severity = engine::parse_severity(q.text(4)).value_or(engine::Severity::minor);
  i.lat = q.real(5);
  i.lon = q.real(6);
  i.district = q.text(7);
  i.reported_ts = q.int64(8);
  i.received_ts = q.int64(9);
  i.injured = static_cast<int>(q.int64(10));
  i.drivable = q.int64(11) != 0;
  i.parties_agree = q.int64(12) != 0;
  i.vehicles = parse_vehicles(q.text(13));
  i.note = q.text(14);
  i.source = q.text(15);
  i.at_fault = q.text(16);
  i.liability_ts = q.int64(17);
  i.closed_ts = q.int64(18);
  i.hospital = q.text(19);
  return i;
}

std::string strings_json(const std::vector<std::string>& v) {
  boost::json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return boost::json::serialize(a);
}

std::vector<std::string> parse_strings(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  const auto jv = boost::json::parse(text, ec);
  if (ec || !jv.is_array()) return out;
  for (const auto& e : jv.get_array())
    if (e.is_string()) out.emplace_back(e.get_string());
  return out;
}

rec::Claim read_claim(const sql::Query& q) {
  rec::Claim c;
  c.id = q.text(0);
  c.seq = static_cast<std::uint64_t>(q.int64(1));
  c.incident = q.text(2);
  c.insurer = q.text(3);
  c.plates = parse_strings(q.text(4));
  c.insured_at_fault = q.int64(5) != 0;
  c.paid = q.int64(6) != 0;
  c.created_ts = q.int64(7);
  c.deadline_ts = q.int64(8);
  c.paid_ts = q.int64(9);
  c.amount = q.real(10);
  return c;
}

rec::Assignment read_assignment(const sql::Query& q) {
  rec::Assignment a;
  a.id = q.text(0);
  a.seq = static_cast<std::uint64_t>(q.int64(1));
  a.incident = q.text(2);
  a.unit = q.text(3);
  a.task = engine::parse_task(q.text(4)).value_or(engine::Task::scene);
  a.state = engine::parse_assignment_state(q.text(5)).value_or(engine::AssignmentState::assigned);
  a.lat = q.real(6);
  a.lon = q.real(7);
  a.eta_s = static_cast<int>(q.int64(8));
  a.assigned_ts = q.int64(9);
  a.acked_ts = q.int64(10);
  a.arrived_ts = q.int64(11);
  a.cleared_ts = q.int64(12);
  a.ended_ts = q.int64(13);
  a.end_reason = q.text(14);
  return a;
}

rec::Timeline read_timeline(const sql::Query& q) {
  return rec::Timeline{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)};
}

rec::UnitEvent read_unit_event(const sql::Query& q) {
  return rec::UnitEvent{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)};
}

rec::TrackPoint read_track_point(const sql::Query& q) {
  return rec::TrackPoint{q.text(0), q.int64(1), q.real(2), q.real(3)};
}

rec::Page read_page(const sql::Query& q) {
  rec::Page p;
  p.id = q.text(0);
  p.seq = static_cast<std::uint64_t>(q.int64(1));
  p.unit = q.text(2);
  p.capcode = q.text(3);
  p.assignment = q.text(4);
  p.text = q.text(5);
  p.delivered = q.int64(6) != 0;
  p.created_ts = q.int64(7);
  p.delivered_ts = q.int64(8);
  return p;
}

// The writer connection's statements, prepared once after the schema is in place.
struct WriteStatements {
  explicit WriteStatements(sql::Db& db)
      : upsert_unit(db,
                    "INSERT INTO units(" UNIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                    "ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, "
                    "callsign = excluded.callsign, capcode = excluded.capcode, "
                    "base_lat = excluded.base_lat, base_lon = excluded.base_lon, "
                    "status = excluded.status, updated_ts = excluded.updated_ts"),
        insert_unit_if_absent(db, "INSERT INTO units(" UNIT_COLS
                                  ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                                  "ON CONFLICT(id) DO NOTHING"),
        upsert_incident(
            db,
            "INSERT INTO incidents(" INCIDENT_COLS
            ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
            "?17, ?18, ?19, ?20) "
            "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, report_id = excluded.report_id, "
            "state = excluded.state, severity = excluded.severity, lat = excluded.lat, "
            "lon = excluded.lon, district = excluded.district, "
            "reported_ts = excluded.reported_ts, received_ts = excluded.received_ts, "
            "injured = excluded.injured, drivable = excluded.drivable, "
            "parties_agree = excluded.parties_agree, vehicles = excluded.vehicles, "
            "note = excluded.note, source = excluded.source, at_fault = excluded.at_fault, "
            "liability_ts = excluded.liability_ts, closed_ts = excluded.closed_ts, "
            "hospital = excluded.hospital"),
        upsert_assignment(
            db,
            "INSERT INTO assignments(" ASSIGNMENT_COLS
            ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
            "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, incident = excluded.incident, "
            "unit = excluded.unit, task = excluded.task, state = excluded.state, "
            "lat = excluded.lat, lon = excluded.lon, eta_s = excluded.eta_s, "
            "assigned_ts = excluded.assigned_ts, acked_ts = excluded.acked_ts, "
            "arrived_ts = excluded.arrived_ts, cleared_ts = excluded.cleared_ts, "
            "ended_ts = excluded.ended_ts, end_reason = excluded.end_reason"),
        insert_timeline(db, "INSERT INTO timeline(" TIMELINE_COLS
                            ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
        insert_unit_event(db, "INSERT INTO unit_events(" UNIT_EVENT_COLS
                              ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
        // The same unit at the same millisecond is the same point: keep the later fix.
        insert_track(db, "INSERT INTO tracks(" TRACK_COLS ") VALUES(?1, ?2, ?3, ?4) "
                         "ON CONFLICT(unit, ts) DO UPDATE SET lat = excluded.lat, "
                         "lon = excluded.lon"),
        upsert_page(db,
                    "INSERT INTO pages(" PAGE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, unit = excluded.unit, "
                    "capcode = excluded.capcode, assignment = excluded.assignment, "
                    "text = excluded.text, delivered = excluded.delivered, "
                    "created_ts = excluded.created_ts, delivered_ts = excluded.delivered_ts"),
        upsert_claim(db, "INSERT INTO claims(" CLAIM_COLS
                         ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
                         "ON CONFLICT(id) DO UPDATE SET paid = excluded.paid, "
                         "paid_ts = excluded.paid_ts, amount = excluded.amount, "
                         "insured_at_fault = excluded.insured_at_fault"),
        prune_tracks(db,
                     "DELETE FROM tracks WHERE (unit, ts) IN "
                     "(SELECT unit, ts FROM tracks WHERE ts < ?1 ORDER BY ts LIMIT ?2)"),
        prune_unit_events(db,
                          "DELETE FROM unit_events WHERE id IN "
                          "(SELECT id FROM unit_events WHERE ts < ?1 ORDER BY ts LIMIT ?2)") {}

  sql::Statement upsert_unit, insert_unit_if_absent, upsert_incident, upsert_assignment,
      insert_timeline, insert_unit_event, insert_track, upsert_page, upsert_claim, prune_tracks,
      prune_unit_events;
};

// The read connection's statements.
struct ReadStatements {
  explicit ReadStatements(sql::Db& db)
      : units(db, "SELECT " UNIT_COLS " FROM units ORDER BY id"),
        open_incidents(db,
                       "SELECT " INCIDENT_COLS " FROM incidents WHERE " OPEN_STATE " ORDER BY seq"),
        open_assignments(db, "SELECT " A_ASSIGNMENT_COLS
                             " FROM assignments a JOIN incidents i ON i.id = a.incident "
                             "WHERE i." OPEN_STATE " ORDER BY a.seq, a.id"),
        open_timeline(db, "SELECT " T_TIMELINE_COLS
                          " FROM timeline t JOIN incidents i ON i.id = t.incident "
                          "WHERE i." OPEN_STATE " ORDER BY t.ts, t.id"),
        undelivered_pages(db,
                          "SELECT " PAGE_COLS " FROM pages WHERE delivered = 0 ORDER BY seq"),
        report_ids(db, "SELECT source, report_id, id FROM incidents ORDER BY seq"),
        max_seqs(db,
                 "SELECT (SELECT max(seq) FROM incidents), (SELECT max(seq) FROM assignments), "
                 "(SELECT max(seq) FROM pages), (SELECT max(seq) FROM claims)"),
        live_claims(db, "SELECT " C_CLAIM_COLS " FROM claims c JOIN incidents i ON i.id = c.incident "
                        "WHERE c.paid = 0 OR i." OPEN_STATE " ORDER BY c.seq"),
        incident(db, "SELECT " INCIDENT_COLS " FROM incidents WHERE id = ?1"),
        assignments_of(db, "SELECT " ASSIGNMENT_COLS
                           " FROM assignments WHERE incident = ?1 ORDER BY seq, id"),
        timeline_of(db, "SELECT " TIMELINE_COLS
                        " FROM timeline WHERE incident = ?1 ORDER BY ts, id"),
        // Pages, newest first. The key is (seq, id): seq is unique for everything the engine
        // wrote, but rows migrated from version 1 whose ids end in no number share seq 0;
        // with id as the tie-break no page boundary can skip or repeat one of them.
        // `seq <= ?1` keeps the range on the seq index; the rest is the exact boundary.
        newest(db, "SELECT " INCIDENT_COLS " FROM incidents WHERE seq <= ?1 AND "
                   "(seq < ?1 OR id < ?2) ORDER BY seq DESC, id DESC LIMIT ?3"),
        newest_open(db, "SELECT " INCIDENT_COLS " FROM incidents WHERE " OPEN_STATE
                        " AND seq <= ?1 AND (seq < ?1 OR id < ?2) "
                        "ORDER BY seq DESC, id DESC LIMIT ?3"),
        seq_of(db, "SELECT seq FROM incidents WHERE id = ?1"),
        track(db, "SELECT " TRACK_COLS
                  " FROM tracks WHERE unit = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts"),
        unit_events(db, "SELECT " UNIT_EVENT_COLS
                        " FROM unit_events WHERE unit = ?1 ORDER BY ts, id") {}

  sql::Statement units, open_incidents, open_assignments, open_timeline, undelivered_pages,
      report_ids, max_seqs, live_claims, incident, assignments_of, timeline_of, newest, newest_open, seq_of,
      track, unit_events;
};

// One submit(): its writes go into one transaction together, its done runs after it.
struct Job {
  std::vector<engine::Write> writes;
  std::function<void()> done;
  Clock::time_point queued;
  bool insert_only = false;  // add_units: a unit already stored stays as it is
};

std::int64_t micros_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

Millis wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One round of pruning: tracks, then unit events, then sightings, a chunk at a time.
struct PruneRound {
  Millis track_cutoff = 0;
  Millis event_cutoff = 0;
  Millis sighting_cutoff = 0;
  bool tracks_left = false;
  bool events_left = false;
  bool sightings_left = false;
  bool active() const { return tracks_left || events_left || sightings_left; }
};

}  // namespace

struct Store::Impl {
  explicit Impl(StoreOptions o) : options(std::move(o)) {
    if (options.batch_max == 0) options.batch_max = 1;
    wdb = std::make_unique<sql::Db>(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // A checkpoint or another process can hold the lock for a moment; wait rather than
    // fail, but never past the close deadline.
    sqlite3_busy_handler(wdb->get(), &Impl::busy_wait, this);
    schema::prepare(*wdb, options.path);
    wdb->exec_or_throw(options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                       "cannot set synchronous");
    ws = std::make_unique<WriteStatements>(*wdb);
    sw = std::make_unique<StationWrites>(*wdb);
    rdb = std::make_unique<sql::Db>(options.path, SQLITE_OPEN_READWRITE);
    sqlite3_busy_timeout(rdb->get(), busy_timeout_ms);
    rdb->exec_or_throw("PRAGMA query_only = 1", "cannot set up the read connection");
    rs = std::make_unique<ReadStatements>(*rdb);
    sr = std::make_unique<StationReads>(*rdb);
    // The prune "at start" runs here, before anything can be submitted: the writer's own
    // rounds come every prune_every after it, so a point submitted now is never pruned
    // by surprise before then.
    prune_all(wall_ms());
    writer = std::thread([this] { run(); });
  }

  ~Impl() { close(); }

  // ---- shutdown ----

  bool close() {
    std::lock_guard cl(close_mu);
    if (closed) return !gave_up.load();
    if (writer.joinable() && std::this_thread::get_id() == writer.get_id()) {
      log_line("close called on the writer thread (from a completion); not closing");
      return false;
    }
    {
      std::lock_guard lk(mu);
      stop = true;
      stop_deadline = Clock::now() + options.close_deadline;
      busy_deadline_ns.store(stop_deadline.time_since_epoch().count());
      stopping.store(true);
    }
    cv.notify_all();
    if (writer.joinable()) writer.join();
    {
      // Statements before their connections; readers wait for the read in progress.
      std::lock_guard rl(read_mu);
      sr.reset();
      rs.reset();
      rdb.reset();
    }
    sw.reset();
    ws.reset();
    // Fails at once on a failing disk, and waits for no other process past the deadline.
    if (wdb) wdb->exec("PRAGMA wal_checkpoint(TRUNCATE)");
    wdb.reset();
    closed = true;
    return !gave_up.load();
  }

  // The write connection's busy handler: back off like sqlite3_busy_timeout, up to
  // busy_timeout_ms, and give up at once when closing past the deadline.
  static int busy_wait(void* arg, int count) {
    static constexpr int delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    constexpr int n = static_cast<int>(std::size(delays));
    int waited = 0;
    for (int i = 0; i < count && i < n; ++i) waited += delays[i];
    if (count > n) waited += (count - n) * delays[n - 1];
    if (waited >= busy_timeout_ms) return 0;
    auto delay = std::chrono::milliseconds(std::min(delays[std::min(count, n - 1)], busy_timeout_ms - waited));
    auto* m = static_cast<Impl*>(arg);
    if (m->stopping.load()) {
      const auto deadline = Clock::time_point(Clock::duration(m->busy_deadline_ns.load()));
      const auto now = Clock::now();
      if (now >= deadline) return 0;
      delay = std::min(delay, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    }
    std::this_thread::sleep_for(delay);
    return 1;
  }

  // ---- the writer thread ----

  void run_controls(std::unique_lock<std::mutex>& lk) {
    while (!controls.empty()) {
      auto f = std::move(controls.front());
      controls.pop_front();
      lk.unlock();
      f();
      lk.lock();
    }
  }

  void run() {
    auto last_prune = Clock::now();  // the constructor pruned
    PruneRound prune;
    std::vector<Job> batch;
    std::unique_lock lk(mu);
    for (;;) {
      run_controls(lk);
      if (stop && !queue.empty() && Clock::now() >= stop_deadline) {
        // Healthy but slow (a long queue): what the deadline did not reach is given up.
        lk.unlock();
        abandon(batch);
        lk.lock();
        continue;
      }
      if (!stop) {
        // Periodic pruning, one chunk between two batches.
        if (!prune.active() && Clock::now() - last_prune >= prune_every)
          prune = start_prune(wall_ms());
        if (prune.active()) {
          lk.unlock();
          prune_step(prune);
          lk.lock();
          if (!prune.active()) last_prune = Clock::now();
          run_controls(lk);
        }
      }
      if (queue.empty()) {
        if (stop) break;
        if (prune.active()) continue;
        cv.wait_until(lk, std::min(Clock::now() + std::chrono::seconds(1), last_prune + prune_every),
                      [&] { return stop || !queue.empty() || !controls.empty(); });
        continue;
      }
      // Group commit: wait for batch_max writes or batch_delay after the first one.
      if (options.batch_delay.count() > 0 && !stop && queued_writes < options.batch_max) {
        const auto deadline = queue.front().queued + options.batch_delay;
        cv.wait_until(lk, deadline, [&] { return stop || queued_writes >= options.batch_max || !controls.empty(); });
      }
      std::size_t n = 0;
      while (!queue.empty() && (batch.empty() || n + queue.front().writes.size() <= options.batch_max)) {
        n += queue.front().writes.size();
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      lk.unlock();
      if (commit_with_retry(batch, n)) {
        {
          std::lock_guard ql(mu);
          queued_writes -= n;
        }
        for (auto& j : batch)
          if (j.done) j.done();
        batch.clear();
      } else {
        abandon(batch);
      }
      lk.lock();
    }
    writer_exited = true;
  }

  // At close, past the deadline: gives up `batch` and everything still queued. Their
  // completions are never called; whoever waits in flush() wakes up (its promise is
  // broken). Called without mu.
  void abandon(std::vector<Job>& batch) {
    std::deque<Job> rest;
    std::size_t lost = 0;
    {
      std::lock_guard lk(mu);
      rest.swap(queue);
      lost = queued_writes;  // the batch's writes too: they leave the count when committed
      queued_writes = 0;
    }
    std::size_t jobs = batch.size() + rest.size();
    batch.clear();
    rest.clear();
    if (jobs == 0) return;
    abandoned.fetch_add(lost, std::memory_order_relaxed);
    if (lost > 0) gave_up = true;
    log_line(fmt::format("closing: gave up {} unconfirmed writes ({} submissions) after {} ms; "
                         "nobody was told of them",
                         lost, jobs, options.close_deadline.count()));
  }

  // True once the batch committed; false when the store is closing, its deadline passed
  // and the batch was not committed (the caller gives it up).
  bool commit_with_retry(std::vector<Job>& batch, std::size_t n) {
    for (;;) {
      const auto t0 = Clock::now();
      std::string error;
      const int rc = commit_once(batch, error);
      if (rc == SQLITE_OK) {
        commits.fetch_add(1, std::memory_order_relaxed);
        writes.fetch_add(n, std::memory_order_relaxed);
        if (!healthy.exchange(true)) log_line("writing again: the store works");
        std::function<void(std::int64_t, std::size_t)> h;
        {
          std::lock_guard hl(hook_mu);
          h = hook;
        }
        if (h) h(micros_since(t0), n);
        return true;
      }
      failures.fetch_add(1, std::memory_order_relaxed);
      if (healthy.exchange(false))
        log_line("commit failed, reports are refused until it works again: " + error);
      // Wait until the next try, but let controls (tests lifting a limit) through, and
      // once closing, never past its deadline.
      const auto retry_at = Clock::now() + options.retry_after;
      std::unique_lock lk(mu);
      for (;;) {
        run_controls(lk);
        const auto now = Clock::now();
        if (stop && now >= stop_deadline) return false;
        const auto wake = stop ? std::min(retry_at, stop_deadline) : retry_at;
        if (now >= wake) break;
        const bool was_stopping = stop;
        cv.wait_until(lk, wake, [&] { return !controls.empty() || stop != was_stopping; });
      }
    }
  }

  int commit_once(std::vector<Job>& batch, std::string& error) {
    sql::Transaction tx(*wdb, sql::Transaction::Mode::immediate);
    if (tx.begin_rc() != SQLITE_OK) {
      error = sql::describe(tx.begin_rc(), *wdb);
      return tx.begin_rc();
    }
    for (auto& job : batch)
      for (auto& w : job.writes) {
        const int rc = apply(w, job.insert_only);
        if (rc != SQLITE_OK) {
          error = sql::describe(rc, *wdb);
          return rc;
        }
      }
    const int rc = tx.commit();
    if (rc != SQLITE_OK) error = sql::describe(rc, *wdb);
    return rc;
  }

  int apply(const engine::Write& w, bool insert_only) {
    return std::visit(
        [&](const auto& r) -> int {
          using R = std::decay_t<decltype(r)>;
          if constexpr (std::is_same_v<R, rec::Unit>) {
            auto& st = insert_only ? ws->insert_unit_if_absent : ws->upsert_unit;
            return st.run(r.id, std::string(engine::to_string(r.kind)), r.callsign, r.capcode,
                          r.base ? std::optional<double>(r.base->lat) : std::nullopt,
                          r.base ? std::optional<double>(r.base->lon) : std::nullopt,
                          std::string(engine::to_string(r.status)), ts_or_null(r.updated_ts));
          } else if constexpr (std::is_same_v<R, rec::Incident>) {
            return ws->upsert_incident.run(
                r.id, r.seq, r.report_id, std::string(engine::to_string(r.state)),
                std::string(engine::to_string(r.severity)), r.lat, r.lon, r.district, r.reported_ts,
                r.received_ts, r.injured, r.drivable, r.parties_agree, vehicles_json(r.vehicles), r.note,
                r.source, r.at_fault, ts_or_null(r.liability_ts), ts_or_null(r.closed_ts), r.hospital);
          } else if constexpr (std::is_same_v<R, rec::Assignment>) {
            return ws->upsert_assignment.run(
                r.id, r.seq, r.incident, r.unit, std::string(engine::to_string(r.task)),
                std::string(engine::to_string(r.state)), r.lat, r.lon, r.eta_s, r.assigned_ts,
                ts_or_null(r.acked_ts), ts_or_null(r.arrived_ts), ts_or_null(r.cleared_ts),
                ts_or_null(r.ended_ts), r.end_reason);
          } else if constexpr (std::is_same_v<R, rec::Timeline>) {
            return ws->insert_timeline.run(r.incident, r.ts, r.event, r.detail, r.actor_role, r.actor_name);
          } else if constexpr (std::is_same_v<R, rec::UnitEvent>) {
            return ws->insert_unit_event.run(r.unit, r.ts, r.event, r.detail, r.actor_role, r.actor_name);
          } else if constexpr (std::is_same_v<R, rec::TrackPoint>) {
            return ws->insert_track.run(r.unit, r.ts, r.lat, r.lon);
          } else if constexpr (std::is_same_v<R, rec::Page>) {
            return ws->upsert_page.run(r.id, r.seq, r.unit, r.capcode, r.assignment, r.text, r.delivered,
                                       r.created_ts, ts_or_null(r.delivered_ts));
          } else if constexpr (std::is_same_v<R, rec::Claim>) {
            return ws->upsert_claim.run(r.id, r.seq, r.incident, r.insurer, strings_json(r.plates),
                                        r.insured_at_fault, r.paid, r.created_ts, r.deadline_ts,
                                        ts_or_null(r.paid_ts), r.amount);
          } else {
            return sw->apply(r);  // rural stations (stations_store.cpp)
          }
        },
        w);
  }

  // ---- pruning (on the writer thread, or in the constructor before it starts) ----

  PruneRound start_prune(Millis now) const {
    PruneRound r;
    r.track_cutoff = now - options.track_retention_ms;
    r.event_cutoff = now - options.unit_event_retention_ms;
    r.sighting_cutoff = now - options.sighting_retention_ms;
    r.tracks_left = r.events_left = r.sightings_left = true;
    return r;
  }

  // Deletes one chunk (tracks first, then unit events); returns the rows deleted. A
  // failure (disk trouble) ends the round: the next one tries again.
  std::int64_t prune_step(PruneRound& r) {
    if (!r.tracks_left && !r.events_left) {
      const std::int64_t n = sw->prune(r.sighting_cutoff, prune_chunk);
      if (n < prune_chunk) r.sightings_left = false;
      return std::max<std::int64_t>(n, 0);
    }
    const bool tracks = r.tracks_left;
    auto& st = tracks ? ws->prune_tracks : ws->prune_unit_events;
    const int rc = st.run(tracks ? r.track_cutoff : r.event_cutoff, prune_chunk);
    const std::int64_t n = rc == SQLITE_OK ? wdb->changes() : 0;
    if (rc != SQLITE_OK) r.tracks_left = r.events_left = r.sightings_left = false;
    if (n < prune_chunk) (tracks ? r.tracks_left : r.events_left) = false;
    return n;
  }

  std::int64_t prune_all(Millis now) {
    auto r = start_prune(now);
    std::int64_t total = 0;
    while (r.active()) total += prune_step(r);
    return total;
  }

  // Runs f on the writer thread and waits for its result; `fallback` once the writer
  // has stopped.
  template <class F, class R = std::invoke_result_t<F&>>
  R on_writer(F f, std::type_identity_t<R> fallback) {
    auto p = std::make_shared<std::promise<R>>();
    auto fut = p->get_future();
    {
      std::lock_guard lk(mu);
      if (writer_exited) return fallback;
      controls.push_back([p, f]() mutable { p->set_value(f()); });
    }
    cv.notify_all();
    return fut.get();
  }

  // Queues a job; false (and the job is not queued) once closing, except for an empty
  // one (a flush marker), which is refused only once the writer has stopped.
  bool enqueue(Job job) {
    job.queued = Clock::now();
    {
      std::lock_guard lk(mu);
      if (writer_exited || (stop && !job.writes.empty())) return false;
      queued_writes += job.writes.size();
      queue.push_back(std::move(job));
    }
    cv.notify_all();
    return true;
  }

  // Waits for everything queued before it, at most `deadline` (nullopt: no limit). True
  // when it all committed; false when it gave up waiting or writes were given up.
  bool enqueue_and_wait(std::vector<engine::Write> w, bool insert_only,
                        std::optional<std::chrono::milliseconds> deadline) {
    if (std::this_thread::get_id() == writer.get_id()) {
      log_line("flush called on the writer thread; not waiting");
      return false;
    }
    auto committed = std::make_shared<std::promise<void>>();
    auto fut = committed->get_future();
    Job job;
    job.writes = std::move(w);
    // The job is the promise's only owner: given up at close, it breaks the promise.
    job.done = [committed = std::move(committed)] { committed->set_value(); };
    job.insert_only = insert_only;
    const std::size_t n = job.writes.size();
    if (!enqueue(std::move(job))) return job_refused(n);
    if (deadline) {
      if (fut.wait_for(*deadline) != std::future_status::ready) return false;
    } else {
      fut.wait();
    }
    try {
      fut.get();
      return true;
    } catch (const std::future_error&) {
      return false;  // given up at close
    }
  }

  // A job refused because the store is closing or closed: its writes count as given up.
  bool job_refused(std::size_t writes_refused) {
    if (writes_refused == 0) return !gave_up.load();
    abandoned.fetch_add(writes_refused, std::memory_order_relaxed);
    gave_up = true;
    log_line(fmt::format("the store is closing: {} writes refused, nobody is told of them",
                         writes_refused));
    return false;
  }

  StoreOptions options;
  std::unique_ptr<sql::Db> wdb;
  std::unique_ptr<WriteStatements> ws;
  std::unique_ptr<sql::Db> rdb;  // null once closed
  std::unique_ptr<ReadStatements> rs;
  std::unique_ptr<StationWrites> sw;  // rural stations, on the write connection
  std::unique_ptr<StationReads> sr;   // and on the read connection
  std::mutex read_mu;

  std::mutex mu;  // guards the queue, queued_writes, controls, stop and writer_exited
  std::condition_variable cv;
  std::deque<Job> queue;
  std::size_t queued_writes = 0;  // submitted, not yet committed (nor given up)
  std::deque<std::function<void()>> controls;
  bool stop = false;
  Clock::time_point stop_deadline;
  bool writer_exited = false;

  // For the busy handler, which runs inside SQLite calls on the writer thread.
  std::atomic<bool> stopping{false};
  std::atomic<Clock::rep> busy_deadline_ns{0};

  std::mutex close_mu;
  bool closed = false;
  std::atomic<bool> gave_up{false};

  std::atomic<bool> healthy{true};
  std::atomic<std::uint64_t> commits{0}, writes{0}, failures{0}, dropped{0}, abandoned{0};
  std::mutex hook_mu;
  std::function<void(std::int64_t, std::size_t)> hook;

  std::thread writer;
};

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Store::~Store() {
  if (impl_) impl_->close();
}

int Store::schema_version() { return schema::version; }

engine::Snapshot Store::load() {
  flush();
  auto& m = *impl_;
  std::lock_guard lk(m.read_mu);
  engine::Snapshot s;
  if (!m.rs) return s;  // closed
  {
    sql::Query q(m.rs->units);
    while (q.next()) s.units.push_back(read_unit(q));
  }
  {
    sql::Query q(m.rs->open_incidents);
    while (q.next()) s.open_incidents.push_back(read_incident(q));
  }
  {
    sql::Query q(m.rs->open_assignments);
    while (q.next()) s.assignments.push_back(read_assignment(q));
  }
  {
    sql::Query q(m.rs->open_timeline);
    while (q.next()) s.timeline.push_back(read_timeline(q));
  }
  {
    sql::Query q(m.rs->undelivered_pages);
    while (q.next()) s.undelivered_pages.push_back(read_page(q));
  }
  {
    sql::Query q(m.rs->report_ids);
    while (q.next())
      s.report_ids.push_back(engine::Snapshot::ReportKey{q.text(0), q.text(1), q.text(2)});
  }
  {
    sql::Query q(m.rs->live_claims);
    while (q.next()) s.claims.push_back(read_claim(q));
  }
  {
    sql::Query q(m.rs->max_seqs);
    if (q.next()) {
      s.max_incident_seq = static_cast<std::uint64_t>(q.int64(0));
      s.max_assignment_seq = static_cast<std::uint64_t>(q.int64(1));
      s.max_page_seq = static_cast<std::uint64_t>(q.int64(2));
      s.max_claim_seq = static_cast<std::uint64_t>(q.int64(3));
    }
  }
  m.sr->load(s.stations, wall_ms());
  return s;
}

void Store::add_units(const std::vector<engine::rec::Unit>& units) {
  std::vector<engine::Write> w(units.begin(), units.end());
  impl_->enqueue_and_wait(std::move(w), true, std::nullopt);
}

void Store::submit(std::vector<engine::Write> writes, std::function<void()> done) {
  Job job;
  job.writes = std::move(writes);
  job.done = std::move(done);
  const std::size_t n = job.writes.size();
  if (!impl_->enqueue(std::move(job))) impl_->job_refused(n);
}

bool Store::submit_optional(std::vector<engine::Write> writes) {
  if (writes.empty()) return true;
  auto& m = *impl_;
  const std::size_t n = writes.size();
  {
    std::unique_lock lk(m.mu);
    // Optional writes never take the queue over its bound (only submit() can).
    if (m.stop || m.writer_exited || m.queued_writes + n > m.options.max_queued_writes) {
      lk.unlock();
      m.dropped.fetch_add(n, std::memory_order_relaxed);
      return false;
    }
    Job job;
    job.writes = std::move(writes);
    job.queued = Clock::now();
    m.queued_writes += n;
    m.queue.push_back(std::move(job));
  }
  m.cv.notify_all();
  return true;
}

bool Store::has_room() const {
  auto& m = *impl_;
  if (!m.healthy.load()) return false;
  std::lock_guard lk(m.mu);
  return !m.stop && m.queued_writes <= m.options.max_queued_writes;
}

bool Store::close() { return impl_->close(); }

void Store::flush() { impl_->enqueue_and_wait({}, false, std::nullopt); }

bool Store::flush_for(std::chrono::milliseconds deadline) {
  return impl_->enqueue_and_wait({}, false, deadline);
}

bool Store::healthy() const { return impl_->healthy.load(); }

StoreStats Store::stats() const {
  StoreStats s;
  s.commits = impl_->commits.load();
  s.writes = impl_->writes.load();
  s.failures = impl_->failures.load();
  s.healthy = impl_->healthy.load();
  s.dropped = impl_->dropped.load();
  s.abandoned = impl_->abandoned.load();
  {
    std::lock_guard lk(impl_->mu);
    s.queued = impl_->queued_writes;
  }
  return s;
}

void Store::on_commit(std::function<void(std::int64_t, std::size_t)> hook) {
  std::lock_guard lk(impl_->hook_mu);
  impl_->hook = std::move(hook);
}

namespace {

void read_children(ReadStatements& rs, StationReads& sr, IncidentRecord& r) {
  r.signals = sr.signals_of(r.incident.id);
  {
    sql::Query q(rs.assignments_of, r.incident.id);
    while (q.next()) r.assignments.push_back(read_assignment(q));
  }
  sql::Query q(rs.timeline_of, r.incident.id);
  while (q.next()) r.timeline.push_back(read_timeline(q));
}

}  // namespace

std::optional<IncidentRecord> Store::incident(const std::string& id) {
  auto& m = *impl_;
  std::lock_guard lk(m.read_mu);
  if (!m.rs) return std::nullopt;
  IncidentRecord r;
  {
    sql::Query q(m.rs->incident, id);
    if (!q.next()) return std::nullopt;
    r.incident = read_incident(q);
  }
  read_children(*m.rs, *m.sr, r);
  return r;
}

std::vector<IncidentRecord> Store::incidents(const IncidentQuery& query) {
  auto& m = *impl_;
  std::vector<IncidentRecord> out;
  if (query.limit == 0) return out;
  std::lock_guard lk(m.read_mu);
  if (!m.rs) return out;
  // The page starts after (seq, id) of `before`; the first page after everything.
  std::int64_t before_seq = std::numeric_limits<std::int64_t>::max();
  if (!query.before.empty()) {
    sql::Query q(m.rs->seq_of, query.before);
    if (!q.next()) return out;  // an id we do not know: no page
    before_seq = q.int64(0);
  }
  const auto limit = static_cast<std::int64_t>(
      std::min<std::size_t>(query.limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
  {
    sql::Query q(query.open_only ? m.rs->newest_open : m.rs->newest, before_seq, query.before, limit);
    while (q.next()) out.push_back(IncidentRecord{read_incident(q), {}, {}});
  }
  for (auto& r : out) read_children(*m.rs, *m.sr, r);
  return out;
}

std::vector<engine::rec::TrackPoint> Store::track(const std::string& unit, engine::Millis since,
                                                  engine::Millis until) {
  auto& m = *impl_;
  std::vector<engine::rec::TrackPoint> out;
  std::lock_guard lk(m.read_mu);
  if (!m.rs) return out;
  sql::Query q(m.rs->track, unit, static_cast<std::int64_t>(since),
               static_cast<std::int64_t>(until == 0 ? std::numeric_limits<std::int64_t>::max() : until));
  while (q.next()) out.push_back(read_track_point(q));
  return out;
}

std::vector<engine::rec::UnitEvent> Store::unit_events(const std::string& unit) {
  auto& m = *impl_;
  std::vector<engine::rec::UnitEvent> out;
  std::lock_guard lk(m.read_mu);
  if (!m.rs) return out;
  sql::Query q(m.rs->unit_events, unit);
  while (q.next()) out.push_back(read_unit_event(q));
  return out;
}

std::vector<HazardRecord> Store::hazards(const HazardQuery& query) {
  auto& m = *impl_;
  std::lock_guard lk(m.read_mu);
  if (!m.sr) return {};
  return m.sr->hazards(query);
}

VehicleHistory Store::vehicle(const VehicleQuery& query) {
  auto& m = *impl_;
  std::lock_guard lk(m.read_mu);
  if (!m.sr) return {};
  return m.sr->vehicle(query);
}

std::size_t Store::prune_tracks(engine::Millis now) {
  return static_cast<std::size_t>(
      impl_->on_writer([this, now] { return impl_->prune_all(now); }, std::int64_t{0}));
}

std::int64_t Store::set_max_page_count_for_test(std::int64_t pages) {
  return impl_->on_writer(
      [this, pages]() -> std::int64_t {
        const std::string sqltext = "PRAGMA max_page_count = " + std::to_string(pages == 0 ? 4294967294LL : pages);
        return impl_->wdb->pragma_int(sqltext.c_str()).value_or(-1);
      },
      std::int64_t{-1});
}

}  // namespace dispatch::data
