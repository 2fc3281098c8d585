// A database for one test: a fresh SQLite file in a temporary folder, or, with
// DISPATCH_TEST_BACKEND=postgresql, a fresh database on the PostgreSQL server that libpq's
// environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD: ctest runs test_data_pg under
// pg_virtualenv). Shared by the store's test files.
#pragma once

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/store.hpp"

namespace test_db {

namespace fs = std::filesystem;

inline bool on_pg() {
  const char* b = std::getenv("DISPATCH_TEST_BACKEND");
  return b && std::string(b) == "postgresql";
}

// Runs SQL on the PostgreSQL server (the maintenance database, or `db`); the first
// column of the first row, or "" (and a failed check) on error.
inline std::string pg_scalar(const std::string& sql, const std::string& db = "postgres") {
  PGconn* c = PQconnectdb(("dbname=" + db).c_str());
  REQUIRE_MESSAGE(PQstatus(c) == CONNECTION_OK, "PostgreSQL: " << PQerrorMessage(c));
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  INFO(sql << " -> " << PQresultErrorMessage(r));
  CHECK((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK));
  std::string out = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  PQfinish(c);
  return out;
}

inline std::string pg_url(const std::string& db) {
  auto env = [](const char* k, const char* d) {
    const char* v = std::getenv(k);
    return std::string(v && *v ? v : d);
  };
  return "postgresql://" + env("PGUSER", "postgres") + ":" + env("PGPASSWORD", "") + "@" +
         env("PGHOST", "localhost") + ":" + env("PGPORT", "5432") + "/" + db;
}

#define SQLITE_ONLY()                                   \
  do {                                                  \
    if (on_pg()) {                                      \
      MESSAGE("SQLite only; skipped on PostgreSQL");    \
      return;                                           \
    }                                                   \
  } while (0)

#define PG_ONLY()                                       \
  do {                                                  \
    if (!on_pg()) {                                     \
      MESSAGE("PostgreSQL only; skipped on SQLite");    \
      return;                                           \
    }                                                   \
  } while (0)

struct TempDb {
  fs::path dir;
  std::string path;
  std::string pg_db;  // PostgreSQL: the database made for this test
  TempDb() {
    if (on_pg()) {
      // No server at all: say so and skip the whole run (ctest: SKIP_RETURN_CODE 77).
      static const bool reachable = [] {
        PGconn* c = PQconnectdb("dbname=postgres");
        const bool ok = PQstatus(c) == CONNECTION_OK;
        if (!ok)
          std::fprintf(stderr, "SKIP: DISPATCH_TEST_BACKEND=postgresql but no PostgreSQL is reachable (%s); "
                               "run under pg_virtualenv\n", PQerrorMessage(c));
        PQfinish(c);
        return ok;
      }();
      if (!reachable) std::exit(77);
      static int n = 0;
      pg_db = "dispatch_test_" + std::to_string(getpid()) + "_" + std::to_string(++n);
      pg_scalar("CREATE DATABASE " + pg_db);
      path = pg_url(pg_db);
      return;
    }
    char tmpl[] = "/tmp/dispatch-store-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    dir = tmpl;
    path = (dir / "dispatch.db").string();
  }
  ~TempDb() {
    if (!pg_db.empty()) {
      pg_scalar("DROP DATABASE IF EXISTS " + pg_db + " WITH (FORCE)");
      return;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  dispatch::data::StoreOptions options() const {
    dispatch::data::StoreOptions o;
    o.path = path;
    o.retry_after = std::chrono::milliseconds(20);
    return o;
  }
};

// A second, independent connection: what is really on disk. The first column of the
// first row of `sql`, or -1.
inline std::int64_t count(const std::string& path, const std::string& sql) {
  if (path.rfind("postgresql://", 0) == 0) {
    const std::string v = pg_scalar(sql, path.substr(path.rfind('/') + 1));
    return v.empty() ? -1 : std::stoll(v);
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// Runs `sql` on a SQLite file through its own connection (tests that tamper with it).
inline void exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << " -> " << (err ? err : ""));
  CHECK(rc == SQLITE_OK);
  sqlite3_free(err);
  sqlite3_close(db);
}

}  // namespace test_db
