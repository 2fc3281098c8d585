// Shared by the store's test files (test_store*.cpp, each `using namespace store_test`):
// records to write, a writer held inside its commit, polling with a deadline, a database's
// schema as text, a full disk, and test_db's temporary database.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/store.hpp"
#include "engine/engine.hpp"
#include "tests/data/temp_db.hpp"

namespace store_test {

using namespace dispatch;
using namespace dispatch::engine;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using test_db::count;
using test_db::exec;
using test_db::on_pg;
using test_db::pg_scalar;
using test_db::TempDb;

inline rec::Unit unit(std::string id, UnitKind k = UnitKind::moto) {
  rec::Unit u;
  u.id = std::move(id);
  u.kind = k;
  u.callsign = "渝警保" + u.id;
  u.capcode = "12000" + u.id;
  return u;
}

inline rec::Incident incident(std::uint64_t seq, std::string report, IncidentState st = IncidentState::assigned) {
  rec::Incident i;
  i.seq = seq;
  i.id = "I-" + std::to_string(seq);
  i.report_id = std::move(report);
  i.state = st;
  i.severity = Severity::injury;
  i.lat = 29.56;
  i.lon = 106.55;
  i.district = "渝中区";
  i.reported_ts = 1000;
  i.received_ts = 1001;
  i.injured = 1;
  i.vehicles = {{"渝A12345", "PICC"}, {"渝B00001", ""}};
  i.note = "追尾 \"two\" cars";
  i.source = "reporter:cc";
  i.hospital = "西南医院";
  return i;
}

inline rec::Assignment assignment(std::uint64_t seq, const std::string& inc, const std::string& unit,
                           AssignmentState st = AssignmentState::assigned) {
  rec::Assignment a;
  a.seq = seq;
  a.id = "A-" + std::to_string(seq);
  a.incident = inc;
  a.unit = unit;
  a.state = st;
  a.task = Task::scene;
  a.lat = 29.56;
  a.lon = 106.55;
  a.eta_s = 120;
  a.assigned_ts = 2000;
  return a;
}

// Holds the store's writer (healthy) inside its commit hook, its commit done but not yet
// returned, so that whatever is submitted meanwhile stays queued; records each batch's
// number of writes. Declared before the store it holds, so that it outlives the writer.
struct HeldWriter {
  std::mutex m;
  std::condition_variable cv;
  bool hold = true, in_hook = false;
  std::vector<std::size_t> batch_writes;  // under m

  void attach(data::Store& s) {
    s.on_commit([this](std::int64_t, std::size_t n) {
      std::unique_lock lk(m);
      batch_writes.push_back(n);
      in_hook = true;
      cv.notify_all();
      cv.wait_for(lk, std::chrono::seconds(10), [&] { return !hold; });
    });
  }
  // True once the writer is inside the hook.
  bool held() {
    std::unique_lock lk(m);
    return cv.wait_for(lk, std::chrono::seconds(5), [&] { return in_hook; });
  }
  void release() {
    {
      std::lock_guard lk(m);
      hold = false;
    }
    cv.notify_all();
  }
};

// Polls `pred` until it holds or `limit` passes; the test goes on as soon as it holds.
template <class P>
inline bool wait_for(P pred, milliseconds limit = milliseconds(5000)) {
  const auto end = SteadyClock::now() + limit;
  while (!pred()) {
    if (SteadyClock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

inline std::int64_t ms_since(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t0).count();
}

inline std::string schema_of(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT type, name, sql FROM sqlite_schema ORDER BY name", -1, &st,
                             nullptr) == SQLITE_OK);
  std::string out;
  while (sqlite3_step(st) == SQLITE_ROW)
    for (int c = 0; c < 3; ++c) {
      const auto* p = sqlite3_column_text(st, c);
      out += p ? reinterpret_cast<const char*>(p) : "";
      out += c == 2 ? "\n" : " | ";
    }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

inline Millis wall_now() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Fills the disk (no page more than the file has) and waits until a commit failed.
inline void fill_disk_and_fail(data::Store& s, const std::string& path, std::atomic<int>& done, int n) {
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  s.set_max_page_count_for_test(count(path, "PRAGMA page_count"));
  const std::string big(4000, 'x');
  for (int k = 0; k < n; ++k) {
    auto i = incident(static_cast<std::uint64_t>(k + 2), "r" + std::to_string(k));
    i.note = big;
    s.submit({i}, [&] { ++done; });
  }
  REQUIRE(wait_for([&] { return !s.healthy(); }));
}

}  // namespace store_test
