// The spatial index: move (update) and nearest at 1k, 10k, 100k and 1M units.
// Run: build/sim/bench/bench_index
// Each line also reports bytes_per_unit: the heap the index holds per unit right after the
// fleet was inserted one by one (malloc's in-use bytes, mallinfo2), which is what it adds
// to the server's RSS.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <random>
#include <vector>

#include "geo/unit_index.hpp"

using namespace dispatch::geo;

namespace {

std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

struct Fleet {
  UnitIndex index;
  std::vector<LatLon> where;
  double bytes_per_unit = 0;
  explicit Fleet(std::size_t n) {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> lat(28.16, 32.20), lon(105.29, 110.19);
    where.resize(n);
    for (auto& p : where) p = {lat(rng), lon(rng)};
    const std::size_t before = heap_in_use();
    for (std::uint32_t i = 0; i < n; ++i) index.upsert(i, where[i]);
    bytes_per_unit = static_cast<double>(heap_in_use() - before) / static_cast<double>(n);
  }
};

Fleet& fleet(std::size_t n) {
  static std::vector<std::unique_ptr<Fleet>> cache;
  for (auto& f : cache)
    if (f->where.size() == n) return *f;
  cache.push_back(std::make_unique<Fleet>(n));
  return *cache.back();
}

void BM_IndexMove(benchmark::State& state) {
  Fleet& f = fleet(static_cast<std::size_t>(state.range(0)));
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> step(-0.0003, 0.0003);  // about 30 m
  const auto n = f.where.size();
  std::uint32_t id = 0;
  for (auto _ : state) {
    id = static_cast<std::uint32_t>((id + 7919) % n);
    auto& p = f.where[id];
    p.lat += step(rng);
    p.lon += step(rng);
    f.index.upsert(id, p);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_unit"] = f.bytes_per_unit;
}

void BM_IndexNearest(benchmark::State& state) {
  Fleet& f = fleet(static_cast<std::size_t>(state.range(0)));
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> lat(28.16, 32.20), lon(105.29, 110.19);
  for (auto _ : state) {
    auto hit = f.index.nearest({lat(rng), lon(rng)});
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_unit"] = f.bytes_per_unit;
}

void BM_IndexNearestFiltered(benchmark::State& state) {
  Fleet& f = fleet(static_cast<std::size_t>(state.range(0)));
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<double> lat(28.16, 32.20), lon(105.29, 110.19);
  for (auto _ : state) {
    // Half the units refused (busy, declined): the query walks on.
    auto hit = f.index.nearest({lat(rng), lon(rng)}, [](std::uint32_t id) { return id % 2 == 0; });
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_unit"] = f.bytes_per_unit;
}

}  // namespace

BENCHMARK(BM_IndexMove)->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_IndexNearest)->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_IndexNearestFiltered)->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000);
BENCHMARK_MAIN();
