// Small RAII wrappers over the SQLite C API, private to data/: a connection, a prepared
// statement, a query cursor that resets its statement, and a transaction that rolls back
// unless committed. Failures on the write and read paths are return codes (the writer
// retries them); only opening and preparing, which happen at start-up, throw StoreError.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::data::sql {

class Statement;

// One connection. Used by one thread at a time (opened SQLITE_OPEN_NOMUTEX): the writer
// connection belongs to the writer thread, the read connection is behind a mutex.
class Db {
 public:
  // Throws StoreError when the file cannot be opened. `vfs`: a registered VFS's name
  // (wal_batch_vfs()), or null for SQLite's default.
  Db(const std::string& path, int flags, const char* vfs = nullptr);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  // Runs SQL text without results (pragmas, DDL). Returns the SQLite result code.
  int exec(const char* sql);
  // exec() that throws StoreError with `what` and SQLite's message; start-up only.
  void exec_or_throw(const char* sql, std::string_view what);
  // A pragma's single integer answer, or nullopt on error.
  std::optional<std::int64_t> pragma_int(const char* sql);
  std::string errmsg() const;
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
  std::int64_t changes() const { return sqlite3_changes64(db_); }

  // Prepared once per connection, for Transaction.
  Statement& begin_immediate();
  Statement& begin_deferred();
  Statement& commit();
  Statement& rollback();

 private:
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statement> begin_immediate_, begin_deferred_, commit_, rollback_;
};

// A prepared statement, prepared once and reused; always bound, never built from strings.
class Statement {
 public:
  // Throws StoreError when the SQL does not prepare (a programming error, found at start).
  Statement(Db& db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds parameters 1..n in order. Accepts integers, bool, double, strings and
  // std::optional of those (nullopt binds NULL). Returns the first failing code or SQLITE_OK.
  template <class... A>
  int bind(const A&... args) {
    int rc = SQLITE_OK;
    int i = 0;
    ((rc = rc == SQLITE_OK ? bind_one(++i, args) : rc), ...);
    (void)i;
    return rc;
  }
  // Binds, steps to the end, resets. SQLITE_OK or the failing code.
  template <class... A>
  int run(const A&... args) {
    int rc = bind(args...);
    if (rc == SQLITE_OK) rc = step_to_end();
    reset();
    return rc;
  }

  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  sqlite3_stmt* get() const { return stmt_; }
  Db& db() const { return db_; }

 private:
  int step_to_end();
  int bind_one(int i, std::int64_t v) { return sqlite3_bind_int64(stmt_, i, v); }
  int bind_one(int i, std::uint64_t v) {
    return sqlite3_bind_int64(stmt_, i, static_cast<std::int64_t>(v));
  }
  int bind_one(int i, int v) { return sqlite3_bind_int64(stmt_, i, v); }
  int bind_one(int i, bool v) { return sqlite3_bind_int(stmt_, i, v ? 1 : 0); }
  int bind_one(int i, double v) { return sqlite3_bind_double(stmt_, i, v); }
  int bind_one(int i, std::string_view v) {
    return sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  }
  int bind_one(int i, const std::string& v) { return bind_one(i, std::string_view(v)); }
  int bind_one(int i, const char* v) { return bind_one(i, std::string_view(v)); }
  template <class T>
  int bind_one(int i, const std::optional<T>& v) {
    return v ? bind_one(i, *v) : sqlite3_bind_null(stmt_, i);
  }

  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Steps a bound statement row by row and resets it when it goes out of scope, so an
// early return cannot leave a read transaction open on the statement.
class Query {
 public:
  template <class... A>
  explicit Query(Statement& s, const A&... args) : s_(s) {
    rc_ = s_.bind(args...);
  }
  ~Query() { s_.reset(); }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  // True while a row is available; afterwards rc() tells a clean end (SQLITE_DONE) from
  // an error.
  bool next() {
    if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW) return false;
    rc_ = s_.step();
    return rc_ == SQLITE_ROW;
  }
  bool ok() const { return rc_ == SQLITE_DONE || rc_ == SQLITE_ROW || rc_ == SQLITE_OK; }
  int rc() const { return rc_; }

  bool is_null(int col) const { return sqlite3_column_type(s_.get(), col) == SQLITE_NULL; }
  std::int64_t int64(int col) const { return sqlite3_column_int64(s_.get(), col); }
  double real(int col) const { return sqlite3_column_double(s_.get(), col); }
  std::string text(int col) const;

 private:
  Statement& s_;
  int rc_ = SQLITE_OK;
};

// BEGIN on construction; rolls back on destruction unless commit() succeeded. SQLite may
// already have rolled back by itself after SQLITE_FULL or SQLITE_IOERR, hence the check.
class Transaction {
 public:
  enum class Mode { deferred, immediate };
  Transaction(Db& db, Mode mode);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  int begin_rc() const { return begin_rc_; }
  int commit();

 private:
  Db& db_;
  int begin_rc_;
  bool committed_ = false;
};

// "SQLITE_FULL (13): database or disk is full" for log lines.
std::string describe(int rc, const Db& db);

}  // namespace dispatch::data::sql
