// Point-in-district lookups over Chongqing's 38 districts (GEOS prepared geometries
// behind an STRtree). Run: build/sim/bench/bench_zones
#include <benchmark/benchmark.h>

#include <random>

#include "geo/zones.hpp"

using namespace dispatch::geo;

static void BM_ZoneLocate(benchmark::State& state) {
  ZoneOptions o;
  o.gcj02 = true;
  static Zones z = Zones::load(DISPATCH_SOURCE_DIR "/assets/geo/chongqing_districts_gcj02.geojson", o);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> lat(28.16, 32.20), lon(105.29, 110.19);
  std::size_t found = 0;
  for (auto _ : state) found += z.locate({lat(rng), lon(rng)}).has_value();
  state.SetItemsProcessed(state.iterations());
  state.counters["found_share"] = static_cast<double>(found) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_ZoneLocate);
BENCHMARK_MAIN();
