// The store's write connection gathers a commit's WAL frames into one write
// (data/wal_batch_vfs.hpp): what it saves, and that nothing another connection or a crash
// can see differs from SQLite's own VFS.
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/wal_batch_vfs.hpp"

namespace {

namespace fs = std::filesystem;
using dispatch::data::sql::wal_batch_stats;
using dispatch::data::sql::wal_batch_vfs;

struct Dir {
  fs::path path;
  Dir() {
    char tmpl[] = "/tmp/dispatch-walbatch-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string db() const { return (path / "t.db").string(); }
};

sqlite3* open(const std::string& path, const char* vfs) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) == SQLITE_OK);
  return db;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << ": " << (err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

std::string scalar(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  return out;
}

// A writer as the store opens one: through the VFS, WAL, synchronous=FULL.
sqlite3* open_writer(const std::string& path) {
  sqlite3* db = open(path, wal_batch_vfs());
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0");
  exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX IF NOT EXISTS t_v ON t(v)");
  return db;
}

}  // namespace

TEST_CASE("a commit's WAL frames reach the file in one write, and other connections read them") {
  Dir dir;
  sqlite3* w = open_writer(dir.db());
  sqlite3* r = open(dir.db(), nullptr);  // SQLite's own VFS, as the store's readers

  // One transaction that dirties many pages (two B-trees of 150 rows of 200 bytes: about
  // 20 frames, within one write of at most 128 KiB).
  const auto before = wal_batch_stats();
  exec(w, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150) "
          "INSERT INTO t(v) SELECT randomblob(200) FROM n; COMMIT");
  const auto after = wal_batch_stats();
  const auto in = after.writes_in - before.writes_in, out = after.writes_out - before.writes_out;
  INFO("SQLite's writes " << in << ", the file's " << out);
  CHECK(in >= 2 * 12);  // a header and a page per frame
  CHECK(out == 1);
  CHECK(scalar(r, "SELECT count(*) FROM t") == "150");

  // Commits one after another, each read at once by the other connection.
  for (int i = 0; i < 50; ++i) {
    exec(w, "INSERT INTO t(v) VALUES (randomblob(100))");
    REQUIRE(scalar(r, "SELECT count(*) FROM t") == std::to_string(151 + i));
  }
  // A checkpoint (reads the WAL back, writes the database file) and a restart of the WAL.
  exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
  exec(w, "INSERT INTO t(v) VALUES (randomblob(100))");
  CHECK(scalar(r, "SELECT count(*) FROM t") == "201");
  CHECK(scalar(r, "PRAGMA integrity_check") == "ok");
  sqlite3_close(r);
  sqlite3_close(w);
}

TEST_CASE("a transaction larger than the page cache: spilled frames written again, read back, all there") {
  Dir dir;
  sqlite3* w = open_writer(dir.db());
  // Eight pages of cache: the transaction spills dirty pages to the WAL before its commit,
  // reads them back and writes some of them again.
  exec(w, "PRAGMA cache_size=8");
  exec(w, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
          "INSERT INTO t(id, v) SELECT i, randomblob(150) FROM n; "
          "UPDATE t SET v = randomblob(150) WHERE id % 7 = 0; COMMIT");
  sqlite3* r = open(dir.db(), nullptr);
  CHECK(scalar(r, "SELECT count(*) FROM t") == "5000");
  CHECK(scalar(r, "SELECT sum(id) FROM t") == "12502500");
  CHECK(scalar(r, "PRAGMA integrity_check") == "ok");
  sqlite3_close(r);
  sqlite3_close(w);
}

TEST_CASE("killed at any moment: every commit that returned is there, and the file is sound") {
  for (int round = 0; round < 4; ++round) {
    Dir dir;
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Commits as fast as it can and says which one returned; never closes.
      close(fds[0]);
      sqlite3* w = nullptr;
      if (sqlite3_open_v2(dir.db().c_str(), &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, wal_batch_vfs()) != SQLITE_OK)
        _exit(2);
      if (sqlite3_exec(w, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=100; "
                          "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t(v)",
                       nullptr, nullptr, nullptr) != SQLITE_OK)
        _exit(3);
      for (std::int64_t i = 1;; ++i) {
        // Commit i: rows 2i and 2i + 1.
        const std::string sql = "BEGIN; INSERT INTO t(id, v) VALUES (" + std::to_string(2 * i) +
                                ", randomblob(300)); INSERT INTO t(id, v) VALUES (" + std::to_string(2 * i + 1) +
                                ", randomblob(300)); COMMIT";
        if (sqlite3_exec(w, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(4);
        if (write(fds[1], &i, sizeof i) != sizeof i) _exit(5);
      }
    }
    close(fds[1]);
    // Let it commit a few hundred times, then kill it mid-stride.
    std::int64_t last = 0, got = 0;
    const std::int64_t stop_after = 200 + 150 * round;
    while (last < stop_after && read(fds[0], &got, sizeof got) == static_cast<ssize_t>(sizeof got)) last = got;
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    while (read(fds[0], &got, sizeof got) == static_cast<ssize_t>(sizeof got)) last = got;
    close(fds[0]);
    REQUIRE_MESSAGE(last >= stop_after, "the writer stopped early: status " << status);

    sqlite3* r = open(dir.db(), nullptr);
    INFO("round " << round << ", last commit confirmed " << last);
    CHECK(scalar(r, "PRAGMA integrity_check") == "ok");
    // Every confirmed commit is there whole (both its rows), and at most the one after it.
    const std::int64_t rows = std::stoll(scalar(r, "SELECT count(*) FROM t"));
    CHECK(scalar(r, "SELECT count(*) FROM t WHERE id <= " + std::to_string(2 * last + 1)) == std::to_string(2 * last));
    CHECK((rows == 2 * last || rows == 2 * (last + 1)));
    CHECK(scalar(r, "SELECT max(id) FROM t") == std::to_string(rows + 1));
    sqlite3_close(r);
  }
}

TEST_CASE("a full disk (a small tmpfs): the commit that does not fit fails, none before it is lost, and commits go on once there is room") {
  Dir dir;
  const std::string mnt = (dir.path / "small").string();
  fs::create_directory(mnt);
  // Mounting needs root (CAP_SYS_ADMIN); elsewhere there is nothing to fill.
  if (std::system(("mount -t tmpfs -o size=1m tmpfs " + mnt + " 2>/dev/null").c_str()) != 0) {
    MESSAGE("cannot mount a tmpfs here (not root?): skipped");
    return;
  }
  struct Unmount {
    std::string at;
    ~Unmount() { (void)std::system(("umount " + at).c_str()); }
  } unmount{mnt};
  const std::string path = mnt + "/t.db", filler = mnt + "/filler";
  // Room to give back later.
  REQUIRE(std::system(("head -c 262144 /dev/zero > " + filler).c_str()) == 0);

  sqlite3* w = open_writer(path);
  int committed = 0, rc = SQLITE_OK;
  for (int i = 0; i < 10000; ++i) {  // two rows a commit: the disk is full long before
    rc = sqlite3_exec(w, "BEGIN; INSERT INTO t(v) VALUES (randomblob(500)); INSERT INTO t(v) VALUES (randomblob(500)); COMMIT",
                      nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) break;
    ++committed;
  }
  if (rc != SQLITE_OK) sqlite3_exec(w, "ROLLBACK", nullptr, nullptr, nullptr);  // if it is still open
  INFO("committed " << committed << ", then " << std::string(sqlite3_errstr(rc)));
  REQUIRE(rc != SQLITE_OK);
  CHECK((rc & 0xff) == SQLITE_FULL);
  CHECK(committed > 20);
  {
    sqlite3* r = open(path, nullptr);
    CHECK(scalar(r, "SELECT count(*) FROM t") == std::to_string(2 * committed));
    sqlite3_close(r);
  }
  // Room again: the next commits go through, and nothing is missing or doubled.
  fs::remove(filler);
  exec(w, "INSERT INTO t(v) VALUES (randomblob(500))");
  sqlite3* r = open(path, nullptr);
  CHECK(scalar(r, "SELECT count(*) FROM t") == std::to_string(2 * committed + 1));
  CHECK(scalar(r, "PRAGMA integrity_check") == "ok");
  sqlite3_close(r);
  sqlite3_close(w);
}
