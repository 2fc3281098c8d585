// The store when things go wrong or fill up: a full or failing disk, a bounded queue,
// optional writes, the WAL under writes that never pause, close and the destructor on a
// failing disk, a lost PostgreSQL connection and a fenced former active. Same backends as
// test_store.cpp.
#include <algorithm>
#include <filesystem>

#include "data/lease.hpp"
#include "tests/data/store_fixtures.hpp"

using namespace store_test;
namespace fs = std::filesystem;

TEST_CASE("disk full: unhealthy, nothing confirmed, then everything lands once it works again") {
  SQLITE_ONLY();
  TempDb t;
  data::Store s(t.options());
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  const auto pages = count(t.path, "PRAGMA page_count");
  s.set_max_page_count_for_test(pages);  // no room to grow
  std::atomic<int> done{0};
  const std::string big(4000, 'x');
  for (int n = 2; n < 40; ++n) {
    auto i = incident(static_cast<std::uint64_t>(n), "r" + std::to_string(n));
    i.note = big;
    s.submit({i}, [&] { ++done; });
  }
  for (int k = 0; k < 200 && s.healthy(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(s.healthy());
  CHECK_FALSE(s.has_room());  // unhealthy: no room, however short the queue
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(done == 0);  // nobody told
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  CHECK(s.stats().failures > 0);
  s.set_max_page_count_for_test(0);  // the disk has room again
  s.flush();
  CHECK(s.healthy());
  CHECK(s.has_room());
  CHECK(done == 38);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 39);
}

TEST_CASE("the WAL stays bounded under writes that never pause; everything committed is there") {
  // Checkpoints run on a thread of their own, and a PASSIVE checkpoint there never
  // completes while the writer keeps writing: the writer must complete one itself, or the
  // WAL grows without end (it did: 1.4 GB in 14 s at 1,000 reports/s).
  SQLITE_ONLY();
  TempDb t;
  const std::string wal = t.path + "-wal";
  const std::string note(3000, 'n');  // about a page of WAL per incident
  constexpr int jobs = 4000, per_job = 5;  // 20k pages: five times the bound below
  std::uintmax_t largest = 0;
  {
    auto o = t.options();
    o.batch_max = 100;  // commits of about 100 pages, so the WAL's length is seen closely
    data::Store s(o);
    std::atomic<int> done{0};
    for (int j = 0; j < jobs; ++j) {
      std::vector<Write> w;
      for (int k = 0; k < per_job; ++k) {
        rec::Incident r;
        r.seq = static_cast<std::uint64_t>(j * per_job + k + 1);
        r.id = "I-" + std::to_string(r.seq);
        r.report_id = "wal-" + std::to_string(r.seq);
        r.reported_ts = r.received_ts = 1764300000000 + static_cast<std::int64_t>(r.seq);
        r.note = note;
        w.push_back(std::move(r));
      }
      s.submit(std::move(w), [&] { ++done; });
    }
    // All queued at once: the writer commits without a pause while the WAL's length is
    // sampled (its file never shrinks while open, so the largest sample is its peak).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (done < jobs && std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      largest = std::max(largest, fs::file_size(wal, ec));
      std::this_thread::sleep_for(milliseconds(2));
    }
    CHECK(s.flush_for(milliseconds(30000)));
    std::error_code ec;
    largest = std::max(largest, fs::file_size(wal, ec));
    CHECK(done == jobs);
  }
  // The bound: 8,000 frames of 4 KiB and their headers, and a batch's worth over it.
  CHECK(largest > 0);
  CHECK(largest < std::uintmax_t{9000} * (4096 + 24));
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == jobs * per_job);
}

TEST_CASE("bounded queue: has_room and submit_optional follow max_queued_writes") {
  TempDb t;
  auto o = t.options();
  o.max_queued_writes = 10;
  HeldWriter writer;
  data::Store s(o);
  writer.attach(s);
  std::atomic<int> done{0};
  s.submit({rec::TrackPoint{"M1", 1, 29.5, 106.5}}, [&] { ++done; });
  REQUIRE(writer.held());
  CHECK(s.stats().queued == 1);  // committed, but its commit has not returned yet
  CHECK(s.has_room());
  std::vector<Write> nine;
  for (int k = 0; k < 9; ++k) nine.push_back(rec::TrackPoint{"M1", 100 + k, 29.5, 106.5});
  CHECK(s.submit_optional(nine));  // 10: at the bound, not over it
  CHECK(s.stats().queued == 10);
  CHECK(s.has_room());
  CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M1", 200, 29.5, 106.5}}));  // would be 11
  CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M2", 200, 29.5, 106.5},
                                 rec::TrackPoint{"M2", 201, 29.5, 106.5}}));
  CHECK(s.stats().dropped == 3);
  CHECK(s.stats().queued == 10);
  s.submit({rec::TrackPoint{"M3", 300, 29.5, 106.5}}, [&] { ++done; });  // always queued
  CHECK(s.stats().queued == 11);
  CHECK_FALSE(s.has_room());  // over the bound
  CHECK(s.healthy());
  writer.release();
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(done == 2);
  CHECK(s.has_room());
  CHECK(s.stats().queued == 0);
  CHECK(s.submit_optional({rec::TrackPoint{"M4", 400, 29.5, 106.5}}));
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1 + 9 + 1 + 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks WHERE unit = 'M2' OR ts = 200") == 0);
  CHECK(s.stats().dropped == 3);
}

TEST_CASE("optional writes ride along a few at a time: a commit somebody waits for is never a long one") {
  // (With nobody waiting they go 256 a commit, so that a burst drains at a large
  // transaction's pace.)
  TempDb t;
  HeldWriter writer;  // everything below is queued together
  data::Store s(t.options());
  writer.attach(s);
  s.submit({rec::TrackPoint{"M0", 1, 29.5, 106.5}}, [] {});
  REQUIRE(writer.held());
  // 600 track points (as one frame of positions can give), then a report's writes.
  std::vector<Write> points;
  for (int k = 0; k < 600; ++k) points.push_back(rec::TrackPoint{"M" + std::to_string(k % 50 + 1), 10 + k, 29.5, 106.5});
  REQUIRE(s.submit_optional(std::move(points)));
  std::atomic<std::int64_t> tracks_when_told{-1};
  std::size_t batches_when_told = 0;
  s.submit({incident(1, "r1")}, [&] {
    tracks_when_told = count(t.path, "SELECT count(*) FROM tracks");
    std::lock_guard lk(writer.m);
    batches_when_told = writer.batch_writes.size();
  });
  // And a flush after them: it waits for every point queued before it.
  std::atomic<bool> flushed{false};
  std::thread flusher([&] { flushed = s.flush_for(milliseconds(10000)); });
  writer.release();
  flusher.join();
  CHECK(flushed);
  // The report was told after its own commit, which carried at most 32 of the points.
  CHECK(tracks_when_told >= 1);
  CHECK(tracks_when_told <= 1 + 32);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 601);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  std::lock_guard lk(writer.m);
  const auto& batch_writes = writer.batch_writes;
  REQUIRE(batches_when_told >= 2);
  for (std::size_t i = 0; i < batches_when_told; ++i) CHECK(batch_writes[i] <= 32 + 1);
  // The rest of the points (at least 568) in a few large commits, not in 32s.
  std::size_t later = 0;
  for (std::size_t i = batches_when_told; i < batch_writes.size(); ++i) later += batch_writes[i] > 0 ? 1 : 0;
  CHECK(later <= 3);
  CHECK(s.stats().dropped == 0);
}

TEST_CASE("a report queued behind thousands of optional writes goes in the next commit") {
  TempDb t;
  HeldWriter writer;
  data::Store s(t.options());
  writer.attach(s);
  s.submit({rec::TrackPoint{"M0", 1, 29.5, 106.5}}, [] {});
  REQUIRE(writer.held());
  // Every unit's first point at 100k units comes as 200 frames of 500: here 20 of them.
  for (int f = 0; f < 20; ++f) {
    std::vector<Write> points;
    for (int k = 0; k < 500; ++k) points.push_back(rec::TrackPoint{"U" + std::to_string(f * 500 + k), 10, 29.5, 106.5});
    REQUIRE(s.submit_optional(std::move(points)));
  }
  std::atomic<std::int64_t> tracks_when_told{-1};
  s.submit({incident(1, "r1")}, [&] { tracks_when_told = count(t.path, "SELECT count(*) FROM tracks"); });
  writer.release();
  REQUIRE(s.flush_for(milliseconds(20000)));
  CHECK(tracks_when_told >= 1);
  CHECK(tracks_when_told <= 1 + 32);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1 + 10000);
}

TEST_CASE("flush_for gives up on a failing disk within its deadline, succeeds once it works") {
  SQLITE_ONLY();
  TempDb t;
  data::Store s(t.options());
  std::atomic<int> done{0};
  fill_disk_and_fail(s, t.path, done, 20);
  const auto t0 = SteadyClock::now();
  CHECK_FALSE(s.flush_for(milliseconds(300)));
  const auto took = ms_since(t0);
  CHECK(took >= 290);
  CHECK(took < 300 + 3000);
  CHECK(done == 0);
  s.set_max_page_count_for_test(0);
  CHECK(s.flush_for(milliseconds(10000)));
  CHECK(done == 20);
  CHECK(s.healthy());
}

TEST_CASE("close on a failing disk returns by its deadline and confirms nothing it gave up") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.close_deadline = milliseconds(300);
  o.retry_after = std::chrono::seconds(30);  // the deadline must cut the retry wait short
  o.batch_max = 4;                           // several batches left behind
  std::atomic<int> done{0};
  {
    data::Store s(o);
    fill_disk_and_fail(s, t.path, done, 30);
    // Someone else is waiting on a flush: close() must wake them too.
    std::atomic<int> flushed{-1};
    std::thread waiter([&] { flushed = s.flush_for(milliseconds(60000)) ? 1 : 0; });
    const auto t0 = SteadyClock::now();
    CHECK_FALSE(s.close());  // writes were given up
    const auto took = ms_since(t0);
    CHECK(took < 300 + 3000);
    waiter.join();
    CHECK(ms_since(t0) < 300 + 3000);  // the waiter was not left waiting for its 60 s
    CHECK(flushed == 0);
    CHECK(done == 0);  // no completion of a write that never committed
    CHECK(s.stats().abandoned == 30);
    CHECK(s.stats().queued == 0);
    // Idempotent, and harmless afterwards.
    const auto t1 = SteadyClock::now();
    CHECK_FALSE(s.close());
    CHECK(ms_since(t1) < 1000);
    s.submit({incident(100, "late")}, [&] { ++done; });
    CHECK_FALSE(s.submit_optional({rec::TrackPoint{"M1", 1, 29.5, 106.5}}));
    CHECK_FALSE(s.flush_for(milliseconds(100)));
    CHECK_FALSE(s.has_room());
    CHECK(s.incidents({}).empty());
    CHECK(s.prune_tracks(1'000'000) == 0);
  }  // the destructor closes again: nothing left to do
  CHECK(done == 0);
  // The file is intact, with only what was committed.
  data::Store s(t.options());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  s.submit({incident(50, "after")}, [] {});
  CHECK(s.flush_for(milliseconds(5000)));
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
}

TEST_CASE("the destructor cannot hang while commits keep failing") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.close_deadline = milliseconds(300);
  o.retry_after = milliseconds(20);
  std::atomic<int> done{0};
  auto s = std::make_unique<data::Store>(o);
  fill_disk_and_fail(*s, t.path, done, 50);
  const auto t0 = SteadyClock::now();
  s.reset();
  const auto took = ms_since(t0);
  CHECK(took >= 250);  // it did keep trying until the deadline
  CHECK(took < 300 + 3000);
  CHECK(done == 0);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
}

TEST_CASE("close on a healthy store commits everything queued and runs every completion") {
  TempDb t;
  auto o = t.options();
  o.batch_max = 8;
  data::Store s(o);
  std::atomic<int> done{0};
  for (int k = 1; k <= 200; ++k)
    s.submit({incident(static_cast<std::uint64_t>(k), "r" + std::to_string(k))}, [&] { ++done; });
  CHECK(s.close());
  CHECK(done == 200);
  CHECK(s.stats().abandoned == 0);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 200);
}

TEST_CASE("PostgreSQL: a lost connection fails a commit, which is retried on a new one; nobody is told before") {
  PG_ONLY();
  TempDb t;
  data::Store s(t.options());
  s.submit({incident(1, "before")}, [] {});
  s.flush();
  // Cut every session of the store's database (the writer's and the reader's).
  count(t.path, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()");
  std::atomic<int> done{0};
  s.submit({incident(2, "after")}, [&] { ++done; });
  s.flush();
  CHECK(done == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
  CHECK(s.incident("I-2").has_value());  // the read connection is back too
}

TEST_CASE("PostgreSQL: the lease fences a former active: its next commit fails, nothing is told, it stays fenced") {
  PG_ONLY();
  TempDb t;
  using std::chrono::milliseconds;
  data::Store a(t.options());
  data::Lease la(t.path, "a", milliseconds(200));
  std::int64_t ea = 0, eb = 0;
  REQUIRE(la.take(ea) == data::Lease::Outcome::ok);
  CHECK(ea == 1);
  a.set_epoch(ea);
  std::atomic<int> done_a{0};
  a.submit({incident(1, "while active")}, [&] { ++done_a; });
  a.flush();
  CHECK(done_a == 1);

  data::Lease lb(t.path, "b", milliseconds(200));
  CHECK(lb.take(eb) == data::Lease::Outcome::held);  // not yet expired
  CHECK(la.renew(ea) == data::Lease::Outcome::ok);
  // a stops renewing (paused): b takes the lease once it has expired.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (lb.take(eb) != data::Lease::Outcome::ok && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(milliseconds(20));
  REQUIRE(eb == ea + 1);
  CHECK(la.renew(ea) == data::Lease::Outcome::held);

  bool fenced_hook = false;
  a.on_fenced([&] { fenced_hook = true; });
  a.submit({incident(2, "after the takeover")}, [&] { ++done_a; });
  a.flush();
  CHECK(a.fenced());
  CHECK(fenced_hook);
  CHECK(done_a == 1);  // never told
  CHECK_FALSE(a.has_room());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  a.submit({incident(3, "later")}, [&] { ++done_a; });  // refused at once
  a.flush();
  CHECK(done_a == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);

  data::Store b(t.options());
  b.set_epoch(eb);
  std::atomic<int> done_b{0};
  b.submit({incident(2, "the new active")}, [&] { ++done_b; });
  b.flush();
  CHECK(done_b == 1);
  CHECK_FALSE(b.fenced());
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 2);
  lb.release(eb);
  std::int64_t ec = 0;
  CHECK(la.take(ec) == data::Lease::Outcome::ok);  // released: taken at once
  CHECK(ec == eb + 1);
}

// Service levels from what is on disk (issue 12, item 5).
