// The database behind the Store, private to data/: SQLite (sqlite_backend.cpp) or
// PostgreSQL (pg_backend.cpp). The Store's core (store.cpp) owns the queue, the writer
// thread, group commit, retries, health and the reads' logic; a backend only runs
// statements: a batch of writes in one transaction, and reads row by row.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "data/rows.hpp"
#include "data/store.hpp"

namespace dispatch::data {

// A statement parameter: NULL, an integer, a double or text.
using Param = std::variant<std::monostate, std::int64_t, double, std::string>;
using Params = std::vector<Param>;

inline Param to_param(std::int64_t v) { return v; }
inline Param to_param(std::uint64_t v) { return static_cast<std::int64_t>(v); }
inline Param to_param(int v) { return std::int64_t{v}; }
inline Param to_param(bool v) { return std::int64_t{v ? 1 : 0}; }
inline Param to_param(double v) { return v; }
inline Param to_param(std::string v) { return v; }
inline Param to_param(const char* v) { return std::string(v); }
template <class T>
Param to_param(const std::optional<T>& v) {
  return v ? to_param(*v) : Param{};
}
template <class... A>
Params params(const A&... a) {
  Params p;
  p.reserve(sizeof...(A));
  (p.push_back(to_param(a)), ...);
  return p;
}

// One statement of a batch.
struct Op {
  rows::W what;
  Params params;
};

// A row of a read; valid only inside the callback.
struct Row {
  virtual ~Row() = default;
  virtual bool is_null(int col) const = 0;
  virtual std::int64_t int64(int col) const = 0;  // 0 for NULL
  virtual double real(int col) const = 0;
  virtual std::string text(int col) const = 0;    // "" for NULL
};
using EachRow = std::function<void(const Row&)>;

enum class CommitResult {
  ok,
  failed,  // transient (disk full, I/O error, connection lost): the core retries
  fenced,  // PostgreSQL: the lease's epoch is not ours any more; never retried
};

// The close deadline, shared with a backend that may wait inside a call (SQLite's busy
// handler): once `stopping`, no wait goes past `deadline_ns` (steady clock).
struct Deadline {
  std::atomic<bool> stopping{false};
  std::atomic<std::chrono::steady_clock::rep> deadline_ns{0};
};

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- the writer thread
  // Runs `ops` in one transaction (checking the fencing epoch first, when one is set);
  // `changes` (if given) gets the rows they changed. Nothing is left open on failure.
  virtual CommitResult commit(const std::vector<Op>& ops, std::string& error,
                              std::int64_t* changes = nullptr) = 0;
  // Every later commit checks that the lease still has this epoch (0: no check).
  virtual void set_epoch(std::int64_t epoch) { (void)epoch; }
  // SQLite's PRAGMA max_page_count (tests); -1 elsewhere.
  virtual std::int64_t set_max_page_count_for_test(std::int64_t pages) {
    (void)pages;
    return -1;
  }
  // Closes the write side (SQLite: checkpoints the WAL). After the writer stopped.
  virtual void close_writer() = 0;

  // ---- reads (the core serialises them)
  virtual bool read(rows::R what, const Params& p, const EachRow& each) = 0;
  // An ad hoc read (a query built from filters), ?N parameters.
  virtual bool read_text(const std::string& sql, const Params& p, const EachRow& each) = 0;
  virtual void close_reader() = 0;

  // True: several servers may share this database (a lease decides which is active).
  virtual bool shared() const = 0;
};

// The reads, once for both backends (store_reads.cpp).
namespace reads {
engine::Snapshot load(Backend& db);
std::optional<IncidentRecord> incident(Backend& db, const std::string& id);
std::vector<IncidentRecord> incidents(Backend& db, const IncidentQuery& query);
std::vector<engine::rec::TrackPoint> track(Backend& db, const std::string& unit, engine::Millis since,
                                           engine::Millis until);
std::vector<engine::rec::UnitEvent> unit_events(Backend& db, const std::string& unit);
}  // namespace reads

// Open the database, create or migrate its schema. Throw StoreError.
std::unique_ptr<Backend> open_sqlite(const StoreOptions& options, Deadline& deadline);
std::unique_ptr<Backend> open_postgres(const StoreOptions& options);

// True when `path` names a PostgreSQL database (postgresql:// or postgres://).
bool is_postgres_url(const std::string& path);

}  // namespace dispatch::data
