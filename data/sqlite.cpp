#include "data/sqlite.hpp"

#include <fmt/format.h>

#include <cstdio>

#include "data/store.hpp"

namespace dispatch::data::sql {

Db::Db(const std::string& path, int flags, const char* vfs) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw StoreError(fmt::format("cannot open database {}: {}", path, msg));
  }
  sqlite3_extended_result_codes(db_, 1);
}

Db::~Db() {
  // Statements first: sqlite3_close refuses to close while any is still prepared.
  begin_immediate_.reset();
  begin_deferred_.reset();
  commit_.reset();
  rollback_.reset();
  if (db_ && sqlite3_close(db_) != SQLITE_OK)
    std::fprintf(stderr, "dispatch store: closing the database failed: %s\n",
                 sqlite3_errmsg(db_));
}

int Db::exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }

void Db::exec_or_throw(const char* sql, std::string_view what) {
  if (exec(sql) != SQLITE_OK) throw StoreError(fmt::format("{}: {}", what, errmsg()));
}

std::optional<std::int64_t> Db::pragma_int(const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) return std::nullopt;
  std::optional<std::int64_t> out;
  if (sqlite3_step(s) == SQLITE_ROW) out = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return out;
}

std::string Db::errmsg() const { return sqlite3_errmsg(db_); }

Statement& Db::begin_immediate() {
  if (!begin_immediate_) begin_immediate_ = std::make_unique<Statement>(*this, "BEGIN IMMEDIATE");
  return *begin_immediate_;
}
Statement& Db::begin_deferred() {
  if (!begin_deferred_) begin_deferred_ = std::make_unique<Statement>(*this, "BEGIN");
  return *begin_deferred_;
}
Statement& Db::commit() {
  if (!commit_) commit_ = std::make_unique<Statement>(*this, "COMMIT");
  return *commit_;
}
Statement& Db::rollback() {
  if (!rollback_) rollback_ = std::make_unique<Statement>(*this, "ROLLBACK");
  return *rollback_;
}

Statement::Statement(Db& db, std::string_view sql) : db_(db) {
  const int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK)
    throw StoreError(fmt::format("cannot prepare \"{}\": {}", sql, db.errmsg()));
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

int Statement::step_to_end() {
  int rc;
  while ((rc = sqlite3_step(stmt_)) == SQLITE_ROW) {
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

std::string Query::text(int col) const {
  const auto* p = sqlite3_column_text(s_.get(), col);
  if (!p) return {};
  const int n = sqlite3_column_bytes(s_.get(), col);
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

Transaction::Transaction(Db& db, Mode mode)
    : db_(db),
      begin_rc_((mode == Mode::immediate ? db.begin_immediate() : db.begin_deferred()).run()) {}

Transaction::~Transaction() {
  if (!committed_ && db_.in_transaction()) db_.rollback().run();
}

int Transaction::commit() {
  const int rc = db_.commit().run();
  committed_ = rc == SQLITE_OK;
  return rc;
}

std::string describe(int rc, const Db& db) {
  // The connection's message can be more specific than the code's generic text
  // ("database or disk is full" either way for SQLITE_FULL; a path for SQLITE_CANTOPEN).
  std::string msg = db.get() ? db.errmsg() : std::string();
  const char* generic = sqlite3_errstr(rc);
  if (msg.empty() || msg == "not an error") msg = generic;
  return fmt::format("{} (SQLite code {})", msg, rc);
}

}  // namespace dispatch::data::sql
