// The store's throughput and commit latency at batch sizes 1, 10, 100 and 1000, for
// synchronous=FULL and NORMAL, on a real file. Run: build/data/bench_store [DIR]
// (DIR defaults to /tmp; use a folder on the disk you care about, not tmpfs), or
// build/data/bench_store postgresql://USER:PASSWORD@HOST:PORT/DB for PostgreSQL (an empty
// database it may fill; "sync" is then the server's own setting, one run).
//
// build/data/bench_store DIR --open-loop [SECONDS]: the latency a report sees, submit to
// confirmed, with reports arriving at Poisson times (not each waiting for the one
// before, as in the table above), at 100, 1,000 and 3,000 reports/s, each report the
// writes dispatchd makes for one (an incident, its timeline, an assignment, a unit event
// and a track point of the moving fleet), synchronous=FULL and NORMAL run alternately.
// This is the store alone, no server, no clients: what the disk and group commit cost.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data/store.hpp"

using namespace dispatch;
using Clock = std::chrono::steady_clock;

namespace {

double pct(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

void remove_db(const std::string& path) {
  for (const char* ext : {"", "-wal", "-shm"}) std::filesystem::remove(path + ext);
}

// One report's writes, shaped like the engine's for report -> assign.
std::vector<engine::Write> report_writes(std::uint64_t seq, std::mt19937_64& rng) {
  namespace rec = engine::rec;
  std::vector<engine::Write> w;
  const std::int64_t ts = 1764300000000 + static_cast<std::int64_t>(seq);
  rec::Incident r;
  r.seq = seq;
  r.id = "I-" + std::to_string(seq);
  r.report_id = "bench-" + std::to_string(seq);
  r.lat = 29.56;
  r.lon = 106.55;
  r.reported_ts = r.received_ts = ts;
  r.vehicles = {{"渝A12345", "PICC"}};
  w.push_back(r);
  const std::string unit = "M" + std::to_string(rng() % 10000);
  for (const char* ev : {"reported", "accepted", "assigned"})
    w.push_back(rec::Timeline{r.id, ts, ev, unit, "", ""});
  rec::Assignment a;
  a.seq = seq;
  a.id = "A-" + std::to_string(seq);
  a.incident = r.id;
  a.unit = unit;
  a.assigned_ts = ts;
  w.push_back(a);
  w.push_back(rec::UnitEvent{unit, ts, "assigned", r.id, "", ""});
  w.push_back(rec::TrackPoint{"M" + std::to_string(rng() % 10000), ts, 29.5, 106.5});
  return w;
}

void open_loop(const std::string& dir, int seconds) {
  std::printf("| sync | reports/s | commits/s | report confirmed p50 ms | p90 ms | p99 ms | max ms |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n");
  for (double rate : {100.0, 1000.0, 3000.0})
    for (int round = 0; round < 2; ++round)
      for (bool full : {true, false}) {
        const std::string path = dir + "/dispatch-bench-open-loop.db";
        remove_db(path);
        data::StoreOptions o;
        o.path = path;
        o.synchronous_full = full;
        std::vector<double> lat;
        std::mutex lat_mu;
        std::uint64_t commits = 0;
        {
          data::Store store(o);
          std::mt19937_64 rng(42);
          std::exponential_distribution<double> gap(rate);
          auto next = Clock::now();
          const auto end = next + std::chrono::seconds(seconds);
          std::uint64_t seq = 0;
          const auto c0 = store.stats().commits;
          while (next < end) {
            next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
            std::this_thread::sleep_until(next);
            const auto sent = Clock::now();
            store.submit(report_writes(++seq, rng), [&, sent] {
              const double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
              std::lock_guard lk(lat_mu);
              lat.push_back(ms);
            });
          }
          store.flush();
          commits = store.stats().commits - c0;
        }
        remove_db(path);
        std::lock_guard lk(lat_mu);
        const double n = static_cast<double>(lat.size());
        std::sort(lat.begin(), lat.end());
        std::printf("| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |\n",
                    full ? "FULL" : "NORMAL", n / seconds,
                    static_cast<double>(commits) / seconds, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99),
                    lat.empty() ? 0 : lat.back());
        std::fflush(stdout);
      }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  if (argc > 2 && std::strcmp(argv[2], "--open-loop") == 0) {
    open_loop(dir, argc > 3 ? std::atoi(argv[3]) : 5);
    return 0;
  }
  const bool pg = dir.rfind("postgres", 0) == 0;
  std::printf("| sync | batch | rows/s | commit p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (bool full : {true, false}) {
    if (pg && !full) break;
    for (std::size_t batch : {1, 10, 100, 1000}) {
      const std::string path = pg ? dir : dir + "/dispatch-bench-store.db";
      if (!pg) remove_db(path);
      data::StoreOptions o;
      o.path = path;
      o.synchronous_full = full;
      o.batch_max = batch;
      std::vector<double> lat;
      std::uint64_t rows = 0, seq = 0;
      {
        data::Store store(o);
        const auto t0 = Clock::now();
        // About two seconds of batches, each waited for (the commit latency).
        while (Clock::now() - t0 < std::chrono::seconds(2)) {
          std::vector<engine::Write> w;
          for (std::size_t i = 0; i < batch; ++i) {
            engine::rec::Incident r;
            r.seq = ++seq;
            r.id = "I-" + std::to_string(seq) + "-" + std::to_string(batch) + (full ? "F" : "N");
            r.report_id = "bench-" + std::to_string(seq);
            r.lat = 29.56;
            r.lon = 106.55;
            r.reported_ts = r.received_ts = 1764300000000 + static_cast<std::int64_t>(seq);
            r.vehicles = {{"渝A12345", "PICC"}};
            w.push_back(std::move(r));
          }
          std::promise<void> done;
          const auto s = Clock::now();
          store.submit(std::move(w), [&] { done.set_value(); });
          done.get_future().wait();
          lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
          rows += batch;
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        std::sort(lat.begin(), lat.end());
        std::printf("| %s | %zu | %.0f | %.2f | %.2f | %.2f | %.2f |\n", pg ? "PostgreSQL" : full ? "FULL" : "NORMAL", batch,
                    static_cast<double>(rows) / secs, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), lat.back());
      }
      if (!pg) remove_db(path);
    }
  }
}
