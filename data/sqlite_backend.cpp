// The SQLite backend: a write connection (the writer thread's) and a read connection, both
// on one file in WAL mode; statements prepared once.
#include <fmt/format.h>

#include <pthread.h>

#include <array>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "data/backend.hpp"
#include "data/schema.hpp"
#include "data/sqlite.hpp"
#include "data/wal_batch_vfs.hpp"

namespace dispatch::data {

namespace {

using Clock = std::chrono::steady_clock;

// The write connection's busy wait (another process holding the lock), as
// sqlite3_busy_timeout would, except that it ends at the close deadline.
constexpr int busy_timeout_ms = 5000;

// WAL checkpoints (copying the WAL into the database file, then its fsync). SQLite's own
// runs inside the commit that crosses 1,000 frames: that commit waits for the copy of
// about 4 MB and the fsync (3-16 ms here, the tail of every commit under load). Instead:
// at checkpoint_frames a thread of our own copies (PASSIVE: it never stops the writer);
// at checkpoint_frames_writer the writer checkpoints after its commit, which then has
// little left to copy and completes, so that the next transaction starts the WAL over
// (a PASSIVE on another connection never completes while the writer keeps writing, and
// the WAL would grow without end); should that find the checkpoint thread busy time
// after time, at checkpoint_frames_bound the writer waits for it (RESTART). See
// docs/performance.md, "The writer under load".
constexpr int checkpoint_frames = 1000;
constexpr int checkpoint_frames_writer = 2 * checkpoint_frames;
constexpr int checkpoint_frames_bound = 8 * checkpoint_frames;

int bind_all(sql::Statement& s, const Params& p) {
  sqlite3_stmt* st = s.get();
  int i = 0;
  for (const auto& v : p) {
    ++i;
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::monostate>(v)) rc = sqlite3_bind_null(st, i);
    else if (const auto* n = std::get_if<std::int64_t>(&v)) rc = sqlite3_bind_int64(st, i, *n);
    else if (const auto* d = std::get_if<double>(&v)) rc = sqlite3_bind_double(st, i, *d);
    else {
      const auto& t = std::get<std::string>(v);
      rc = sqlite3_bind_text64(st, i, t.data(), t.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

int run(sql::Statement& s, const Params& p) {
  int rc = bind_all(s, p);
  if (rc == SQLITE_OK) {
    while ((rc = s.step()) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  s.reset();
  return rc;
}

struct SqliteRow final : Row {
  explicit SqliteRow(sqlite3_stmt* s) : s_(s) {}
  bool is_null(int c) const override { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::int64_t int64(int c) const override { return sqlite3_column_int64(s_, c); }
  double real(int c) const override { return sqlite3_column_double(s_, c); }
  std::string text(int c) const override {
    const auto* p = sqlite3_column_text(s_, c);
    if (!p) return {};
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s_, c)));
  }
  sqlite3_stmt* s_;
};

bool read_rows(sql::Statement& s, const Params& p, const EachRow& each) {
  int rc = bind_all(s, p);
  if (rc == SQLITE_OK) {
    SqliteRow row(s.get());
    while ((rc = s.step()) == SQLITE_ROW) each(row);
  }
  s.reset();
  return rc == SQLITE_DONE || rc == SQLITE_OK;
}

class SqliteBackend final : public Backend {
 public:
  SqliteBackend(const StoreOptions& o, Deadline& deadline) : deadline_(deadline) {
    // With FULL, a commit's WAL frames go to the file in one write (wal_batch_vfs.hpp).
    wdb_ = std::make_unique<sql::Db>(o.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     o.synchronous_full ? sql::wal_batch_vfs() : nullptr);
    // A checkpoint or another process can hold the lock for a moment; wait rather than
    // fail, but never past the close deadline.
    sqlite3_busy_handler(wdb_->get(), &SqliteBackend::busy_wait, this);
    schema::prepare(*wdb_, o.path);
    wdb_->exec_or_throw(o.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                        "cannot set synchronous");
    // Our hook replaces SQLite's auto-checkpoint on the write connection.
    sqlite3_wal_hook(wdb_->get(), &SqliteBackend::wal_frames, this);
    cdb_ = std::make_unique<sql::Db>(o.path, SQLITE_OPEN_READWRITE);
    // A connection learns that the file is in WAL mode when it first reads it; until
    // then a checkpoint on it does nothing.
    cdb_->exec_or_throw("SELECT count(*) FROM sqlite_schema", "cannot open the checkpoint connection");
    for (std::size_t i = 0; i < writes_.size(); ++i)
      writes_[i] = std::make_unique<sql::Statement>(*wdb_, rows::write_sql(static_cast<rows::W>(i)));
    rdb_ = std::make_unique<sql::Db>(o.path, SQLITE_OPEN_READWRITE);
    sqlite3_busy_timeout(rdb_->get(), busy_timeout_ms);
    rdb_->exec_or_throw("PRAGMA query_only = 1", "cannot set up the read connection");
    for (std::size_t i = 0; i < reads_.size(); ++i)
      reads_[i] = std::make_unique<sql::Statement>(*rdb_, rows::read_sql(static_cast<rows::R>(i)));
    // Last: nothing after it may throw (a joinable thread member would terminate).
    checkpointer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "checkpoint");
      checkpoint_loop();
    });
  }

  ~SqliteBackend() override {
    close_reader();
    close_writer();
  }

  CommitResult commit(const std::vector<Op>& ops, std::string& error, std::int64_t* changes) override {
    sql::Transaction tx(*wdb_, sql::Transaction::Mode::immediate);
    if (tx.begin_rc() != SQLITE_OK) {
      error = sql::describe(tx.begin_rc(), *wdb_);
      return CommitResult::failed;
    }
    std::int64_t n = 0;
    for (const auto& op : ops) {
      const int rc = run(*writes_[static_cast<std::size_t>(op.what)], op.params);
      if (rc != SQLITE_OK) {
        error = sql::describe(rc, *wdb_);
        return CommitResult::failed;
      }
      n += wdb_->changes();
    }
    const int rc = tx.commit();
    if (rc != SQLITE_OK) {
      error = sql::describe(rc, *wdb_);
      return CommitResult::failed;
    }
    if (changes) *changes = n;
    return CommitResult::ok;
  }

  std::int64_t set_max_page_count_for_test(std::int64_t pages) override {
    const std::string sqltext = "PRAGMA max_page_count = " + std::to_string(pages == 0 ? 4294967294LL : pages);
    return wdb_->pragma_int(sqltext.c_str()).value_or(-1);
  }

  void close_writer() override {
    stop_checkpointer();
    for (auto& s : writes_) s.reset();
    // Fails at once on a failing disk, and waits for no other process past the deadline.
    if (wdb_) wdb_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
    wdb_.reset();
  }

  bool read(rows::R what, const Params& p, const EachRow& each) override {
    if (!rdb_) return false;
    return read_rows(*reads_[static_cast<std::size_t>(what)], p, each);
  }

  bool read_text(const std::string& sqltext, const Params& p, const EachRow& each) override {
    if (!rdb_) return false;
    sql::Statement s(*rdb_, sqltext);
    return read_rows(s, p, each);
  }

  void close_reader() override {
    for (auto& s : reads_) s.reset();
    rdb_.reset();
  }

  bool shared() const override { return false; }

 private:
  // After each commit on the write connection (its write lock released), with the
  // WAL's length in frames.
  static int wal_frames(void* arg, sqlite3* db, const char*, int frames) {
    auto* self = static_cast<SqliteBackend*>(arg);
    if (frames >= checkpoint_frames_bound) {
      // Waits (busy handler) for the checkpoint thread's copy, then completes.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    } else if (frames >= checkpoint_frames_writer) {
      // Busy (the checkpoint thread is copying): tried again after the next commit.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (frames >= checkpoint_frames) {
      {
        std::lock_guard lk(self->cmu_);
        self->checkpoint_wanted_ = true;
      }
      self->ccv_.notify_one();
    }
    return SQLITE_OK;
  }

  void checkpoint_loop() {
    std::unique_lock lk(cmu_);
    for (;;) {
      ccv_.wait(lk, [&] { return checkpoint_wanted_ || checkpoint_stop_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
      lk.unlock();
      sqlite3_wal_checkpoint_v2(cdb_->get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lk.lock();
    }
  }

  void stop_checkpointer() {
    {
      std::lock_guard lk(cmu_);
      checkpoint_stop_ = true;
    }
    ccv_.notify_one();
    if (checkpointer_.joinable()) checkpointer_.join();
    cdb_.reset();
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
    auto& d = static_cast<SqliteBackend*>(arg)->deadline_;
    if (d.stopping.load()) {
      const auto deadline = Clock::time_point(Clock::duration(d.deadline_ns.load()));
      const auto now = Clock::now();
      if (now >= deadline) return 0;
      delay = std::min(delay, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    }
    std::this_thread::sleep_for(delay);
    return 1;
  }

  Deadline& deadline_;
  std::unique_ptr<sql::Db> wdb_, rdb_;
  std::unique_ptr<sql::Db> cdb_;  // the checkpoint thread's connection
  std::thread checkpointer_;
  std::mutex cmu_;
  std::condition_variable ccv_;
  bool checkpoint_wanted_ = false, checkpoint_stop_ = false;
  std::array<std::unique_ptr<sql::Statement>, static_cast<std::size_t>(rows::W::count_)> writes_;
  std::array<std::unique_ptr<sql::Statement>, static_cast<std::size_t>(rows::R::count_)> reads_;
};

}  // namespace

std::unique_ptr<Backend> open_sqlite(const StoreOptions& options, Deadline& deadline) {
  return std::make_unique<SqliteBackend>(options, deadline);
}

bool is_postgres_url(const std::string& path) {
  return path.rfind("postgresql://", 0) == 0 || path.rfind("postgres://", 0) == 0;
}

}  // namespace dispatch::data
