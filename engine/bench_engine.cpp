// The engine in-process: a batch of positions, and the assignment path (report -> nearest
// -> assign -> clear) at 1k, 10k and 100k units. Run: build/engine/bench_engine
#include <benchmark/benchmark.h>

#include <random>

#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

struct Fleet {
  Engine engine;
  Principal gw{"gateway", "gw", true, {}, {}};
  std::vector<cmd::Position> batch;
  Millis now = 1'764'300'000'000;
  explicit Fleet(std::size_t n) {
    Snapshot s;
    for (std::size_t i = 0; i < n; ++i) {
      rec::Unit u;
      u.id = "M" + std::to_string(i);
      u.callsign = u.id;
      s.units.push_back(u);
    }
    engine.restore(s, now);
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
    for (std::size_t i = 0; i < n; ++i) batch.push_back({"M" + std::to_string(i), lat(rng), lon(rng), now, {}, {}});
    Output out;
    engine.positions(batch, Origin{1, &gw}, now, out);
  }
};

void BM_Positions(benchmark::State& state) {
  Fleet f(static_cast<std::size_t>(state.range(0)));
  Output out;
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> step(-0.0002, 0.0002);
  std::size_t i = 0;
  std::vector<cmd::Position> frame(500);
  for (auto _ : state) {
    f.now += 1000;
    for (auto& p : frame) {
      p = f.batch[i++ % f.batch.size()];
      p.lat += step(rng);
      p.lon += step(rng);
      p.ts = f.now;
    }
    out.clear();
    f.engine.positions(frame, Origin{1, &f.gw}, f.now, out);
  }
  state.SetItemsProcessed(state.iterations() * 500);
}

void BM_ReportAssignClear(benchmark::State& state) {
  Fleet f(static_cast<std::size_t>(state.range(0)));
  Principal rep{"reporter", "cc", false, {}, {}};
  Output out;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
  std::uint64_t n = 0;
  for (auto _ : state) {
    cmd::Report r;
    r.id = "b-" + std::to_string(++n);
    r.lat = lat(rng);
    r.lon = lon(rng);
    r.severity = Severity::injury;
    out.clear();
    f.engine.handle(r, Origin{2, &rep}, f.now, out);
    std::string assignment;
    for (auto& m : out.messages)
      if (auto* a = std::get_if<ev::Assign>(&m.payload)) assignment = a->assignment;
    out.clear();
    f.engine.handle(cmd::Cleared{assignment}, Origin{1, &f.gw}, f.now, out);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_Positions)->Arg(1000)->Arg(10000)->Arg(100000);
BENCHMARK(BM_ReportAssignClear)->Arg(1000)->Arg(10000)->Arg(100000);
BENCHMARK_MAIN();
