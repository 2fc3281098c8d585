// The engine in-process: a batch of positions, and the assignment path (report -> nearest
// -> assign -> clear) at 1k, 10k and 100k units; a unit freed while 100, 1k or 10k
// incidents wait; the heap the engine holds per unit. Run: build/engine/bench_engine
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <chrono>
#include <memory>
#include <random>

#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

// tagged("M", i), without GCC 12's false -Wrestrict on operator+.
std::string tagged(const char* tag, std::size_t i) {
  std::string s = tag;
  s += std::to_string(i);
  return s;
}

struct Fleet {
  Engine engine;
  Principal gw{"gateway", "gw", true, {}, {}};
  std::vector<cmd::Position> batch;
  Millis now = 1'764'300'000'000;
  explicit Fleet(std::size_t n, Config config = {}) : engine(config) {
    Snapshot s;
    for (std::size_t i = 0; i < n; ++i) {
      rec::Unit u;
      u.id = tagged("M", i);
      u.callsign = u.id;
      s.units.push_back(u);
    }
    engine.restore(s, now);
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
    for (std::size_t i = 0; i < n; ++i) batch.push_back({tagged("M", i), lat(rng), lon(rng), now, {}, {}});
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
    r.id = tagged("b-", ++n);
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

// As BM_ReportAssignClear with every other unit off duty: each assignment's candidates
// then hold the nearest few units that could not go (docs/performance.md "Candidates").
void BM_ReportAssignClearHalfOff(benchmark::State& state) {
  Fleet f(static_cast<std::size_t>(state.range(0)));
  Principal rep{"reporter", "cc", false, {}, {}};
  Output out;
  for (std::size_t i = 0; i < f.batch.size(); i += 2) {
    out.clear();
    f.engine.handle(cmd::Status{f.batch[i].unit, UnitStatus::off_duty}, Origin{1, &f.gw}, f.now, out);
  }
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
  std::uint64_t n = 0;
  for (auto _ : state) {
    cmd::Report r;
    r.id = tagged("b-", ++n);
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

// N incidents wait (1,000 motos, all busy; severities 80% minor, 17% injury, 3% critical);
// each iteration one unit is freed (its assignment cleared: the incident closes and the unit
// takes the most urgent waiting incident) and, untimed, a new report joins the queue so
// that N stay waiting. The time is that of the `cleared` alone: µs per freed unit.
void BM_FreedUnitWithWaiting(benchmark::State& state) {
  const std::size_t units = 1000, waiting = static_cast<std::size_t>(state.range(0));
  Config config;
  config.max_open_per_source = 0;
  Fleet f(units, config);
  Principal rep{"reporter", "cc", false, {}, {}};
  Output out;
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9), mix(0, 1);
  std::uint64_t n = 0;
  auto report = [&] {
    cmd::Report r;
    r.id = tagged("w-", ++n);
    r.lat = lat(rng);
    r.lon = lon(rng);
    const double m = mix(rng);
    r.severity = m < 0.80 ? Severity::minor : m < 0.97 ? Severity::injury : Severity::critical;
    out.clear();
    f.engine.handle(r, Origin{2, &rep}, f.now, out);
  };
  for (std::size_t i = 0; i < units + waiting; ++i) report();
  if (f.engine.waiting_count() != waiting) state.SkipWithError("setup: wrong number waiting");
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < units; ++i) ids.push_back(tagged("M", i));
  std::size_t next = 0;
  for (auto _ : state) {
    const Unit* u = f.engine.unit(ids[next++ % units]);
    const cmd::Cleared c{u->active->rec.id};
    out.clear();
    const auto t0 = std::chrono::steady_clock::now();
    f.engine.handle(c, Origin{1, &f.gw}, f.now, out);
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    if (!u->active) state.SkipWithError("the freed unit took no waiting incident");
    report();
  }
  if (f.engine.waiting_count() != waiting) state.SkipWithError("waiting count drifted");
  state.SetItemsProcessed(state.iterations());
}

std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The heap an Engine holds per unit: a roster restored from a Snapshot (ids, callsigns and
// capcodes shaped like dispatch-sim's fleet), then one position for each unit through the
// gateway path (so the index, the moved list and the track state are filled), with the
// snapshot, the position batch and the Output freed again. malloc's in-use bytes
// (mallinfo2: uordblks + hblkhd) after, minus before.
void BM_MemoryPerUnit(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  double bytes = 0;
  for (auto _ : state) {
    malloc_trim(0);
    const std::size_t before = heap_in_use();
    auto engine = std::make_unique<Engine>();
    {
      Snapshot s;
      s.units.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        rec::Unit u;
        char id[32], cs[48], cap[32];
        std::snprintf(id, sizeof id, "M%04zu", i + 1);
        std::snprintf(cs, sizeof cs, "渝警保%03zu", i + 1);
        std::snprintf(cap, sizeof cap, "%zu", 1200000 + i + 1);
        u.id = id;
        u.callsign = cs;
        u.capcode = cap;
        s.units.push_back(std::move(u));
      }
      const Millis now = 1'764'300'000'000;
      engine->restore(s, now);
      Principal gw{"gateway", "gw", true, {}, {}};
      std::mt19937_64 rng(1);
      std::uniform_real_distribution<double> lat(29.3, 29.9), lon(106.2, 106.9);
      std::vector<cmd::Position> batch;
      for (const auto& u : s.units) {
        batch.push_back({u.id, lat(rng), lon(rng), now, 30.0, 90.0});
        if (batch.size() == 500) {
          Output out;
          engine->positions(batch, Origin{1, &gw}, now, out);
          batch.clear();
        }
      }
      Output out;
      engine->positions(batch, Origin{1, &gw}, now, out);
    }
    benchmark::DoNotOptimize(engine.get());
    bytes = static_cast<double>(heap_in_use() - before);
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.counters["bytes_per_unit"] = bytes / static_cast<double>(n);
  state.counters["sizeof_Unit"] = static_cast<double>(sizeof(Unit));
}

}  // namespace

BENCHMARK(BM_Positions)->Arg(1000)->Arg(10000)->Arg(100000);
BENCHMARK(BM_ReportAssignClear)->Arg(1000)->Arg(10000)->Arg(100000);
BENCHMARK(BM_ReportAssignClearHalfOff)->Arg(10000)->Arg(100000);
BENCHMARK(BM_FreedUnitWithWaiting)->Arg(100)->Arg(1000)->Arg(10000)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MemoryPerUnit)->Arg(10000)->Arg(100000)->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
