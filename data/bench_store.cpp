// The store's throughput and commit latency at batch sizes 1, 10, 100 and 1000, for
// synchronous=FULL and NORMAL, on a real file. Run: build/data/bench_store [DIR]
// (DIR defaults to /tmp; use a folder on the disk you care about, not tmpfs), or
// build/data/bench_store postgresql://USER:PASSWORD@HOST:PORT/DB for PostgreSQL (an empty
// database it may fill; "sync" is then the server's own setting, one run).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "data/store.hpp"

using namespace dispatch;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  const bool pg = dir.rfind("postgres", 0) == 0;
  std::printf("| sync | batch | rows/s | commit p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (bool full : {true, false}) {
    if (pg && !full) break;
    for (std::size_t batch : {1, 10, 100, 1000}) {
      const std::string path = pg ? dir : dir + "/dispatch-bench-store.db";
      if (!pg)
        for (const char* ext : {"", "-wal", "-shm"}) std::filesystem::remove(path + ext);
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
        auto pct = [&](double p) { return lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * static_cast<double>(lat.size())))]; };
        std::printf("| %s | %zu | %.0f | %.2f | %.2f | %.2f | %.2f |\n", pg ? "PostgreSQL" : full ? "FULL" : "NORMAL", batch,
                    static_cast<double>(rows) / secs, pct(0.5), pct(0.9), pct(0.99), lat.back());
      }
      if (!pg)
        for (const char* ext : {"", "-wal", "-shm"}) std::filesystem::remove(path + ext);
    }
  }
}
