// Small RAII wrappers over libpq, private to data/: a connection that knows its URL and
// can connect again, and a result. Failures are values (the writer retries them); only
// opening at start-up throws StoreError.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/backend.hpp"

namespace dispatch::data::pg {

class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result& operator=(Result&& o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;

  PGresult* get() const { return r_; }
  ExecStatusType status() const { return r_ ? PQresultStatus(r_) : PGRES_FATAL_ERROR; }
  bool ok() const { return status() == PGRES_COMMAND_OK || status() == PGRES_TUPLES_OK; }
  int rows() const { return r_ ? PQntuples(r_) : 0; }
  std::int64_t changes() const;
  std::string sqlstate() const;
  std::string error() const;

 private:
  PGresult* r_ = nullptr;
};

// A row of a result, as data::Row for the shared readers.
struct ResultRow final : Row {
  ResultRow(const Result& r, int row) : r_(r.get()), row_(row) {}
  bool is_null(int c) const override { return PQgetisnull(r_, row_, c) != 0; }
  std::int64_t int64(int c) const override;
  double real(int c) const override;
  std::string text(int c) const override;
  PGresult* r_;
  int row_;
};

// The text form of parameters, kept alive while a statement is sent.
struct TextParams {
  explicit TextParams(const Params& p);
  std::vector<std::optional<std::string>> text;
  std::vector<const char*> values;
  int count() const { return static_cast<int>(values.size()); }
};

// "?1 ... ?12" -> "$1 ... $12": the statements are written once for both backends.
std::string dollar_params(const std::string& sql);

class Conn {
 public:
  Conn(std::string url, std::string what) : url_(std::move(url)), what_(std::move(what)) {}
  ~Conn() { PQfinish(c_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Connects (again) when not connected; false with `error` when the server is not there.
  bool connect(std::string& error);
  void connect_or_throw();
  bool connected() const { return c_ && PQstatus(c_) == CONNECTION_OK; }
  // Drops the connection (after a failure that left it in an unknown state).
  void reset();
  PGconn* get() const { return c_; }
  std::string error() const;

  Result exec(const std::string& sql);
  Result exec(const std::string& sql, const Params& p);
  // Prepared under `name` once per connection (prepared again after a reconnect).
  Result exec_prepared(const std::string& name, const std::string& sql, const Params& p);
  bool send_prepared(const std::string& name, const std::string& sql, const Params& p);
  // Forgets what was prepared (a new connection has nothing prepared).
  std::uint64_t generation() const { return generation_; }

 private:
  bool ensure_prepared(const std::string& name, const std::string& sql, int nparams);

  std::string url_;
  std::string what_;  // "write", "read", "lease": for log lines
  PGconn* c_ = nullptr;
  std::uint64_t generation_ = 0;
  std::vector<std::string> prepared_;
};

// The URL without its password, for messages.
std::string redact(const std::string& url);

}  // namespace dispatch::data::pg
