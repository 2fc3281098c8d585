// Point-in-district lookups over Chongqing's 38 districts (GEOS prepared geometries
// behind an STRtree), the GCJ-02 inverse, and loading the district file.
// Run: <build>/sim/bench/bench_zones. Each locate iteration is one lookup, so the "Time"
// column is the time per lookup.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "geo/gcj02.hpp"
#include "geo/zones.hpp"

using namespace dispatch::geo;

namespace {

const char* const districts = DISPATCH_SOURCE_DIR "/assets/geo/chongqing_districts_gcj02.geojson";

const Zones& chongqing() {
  static const Zones z = [] {
    ZoneOptions o;
    o.gcj02 = true;
    return Zones::load(districts, o);
  }();
  return z;
}

// Points drawn before timing, so the figure is the lookup and not the random generator.
std::vector<LatLon> points(double lat0, double lat1, double lon0, double lon1) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> lat(lat0, lat1), lon(lon0, lon1);
  std::vector<LatLon> out(1 << 16);
  for (auto& p : out) p = {lat(rng), lon(rng)};
  return out;
}

void locate_over(benchmark::State& state, const std::vector<LatLon>& pts) {
  const Zones& z = chongqing();
  std::size_t i = 0, found = 0;
  for (auto _ : state) {
    const auto hit = z.locate(pts[i++ & (pts.size() - 1)]);
    benchmark::DoNotOptimize(hit);
    found += hit.has_value();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["inside_share"] = static_cast<double>(found) / static_cast<double>(state.iterations());
}

}  // namespace

// The municipality's bounding box: about 40% of the points fall inside a district, the rest
// outside Chongqing (still tested against the districts whose boxes cover them).
static void BM_ZoneLocate_Municipality(benchmark::State& state) {
  static const auto pts = points(28.16, 32.20, 105.29, 110.19);
  locate_over(state, pts);
}
BENCHMARK(BM_ZoneLocate_Municipality);

// The urban core, where most incidents are: small districts, many shared borders.
static void BM_ZoneLocate_UrbanCore(benchmark::State& state) {
  static const auto pts = points(29.35, 29.85, 106.30, 106.85);
  locate_over(state, pts);
}
BENCHMARK(BM_ZoneLocate_UrbanCore);

static void BM_Gcj02ToWgs84(benchmark::State& state) {
  static const auto pts = points(28.16, 32.20, 105.29, 110.19);
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(gcj02_to_wgs84(pts[i++ & (pts.size() - 1)]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Gcj02ToWgs84);

// Start-up cost: read, convert every vertex from GCJ-02, validate, prepare, index.
static void BM_ZonesLoad(benchmark::State& state) {
  ZoneOptions o;
  o.gcj02 = true;
  for (auto _ : state) benchmark::DoNotOptimize(Zones::load(districts, o).size());
}
BENCHMARK(BM_ZonesLoad)->Unit(benchmark::kMillisecond)->Iterations(5);

BENCHMARK_MAIN();
