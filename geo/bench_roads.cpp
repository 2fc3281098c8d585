// bench_roads: figures for docs/performance.md ("Roads"). Not a timed test: it prints.
//
//   bench_roads [--source-dir DIR] [--work-dir DIR] [--grid-side N] [--targets N]
//   bench_roads --write-grid FILE [--grid-side N]   only writes the grid as .osm (for a
//                                                   dispatchd --roads load run)
//
// 1. Load time and memory per node: the river fixture, the real core-city network (read
//    from ../shared and converted by scripts/topojson-to-osm.py into --work-dir; skipped
//    when absent), and a synthetic grid of N x N nodes (default 708 x 708 = 501,264)
//    written as .osm XML and read back through libosmium.
// 2. One to_target with the K straight-line-nearest of 10,000 units, K = 16, 32, 64, on
//    the grid: mean, p50, p99, max.
// 3. How often the road-nearest unit is not among the first K straight-line candidates
//    (grid with 10,000 units; core network with 300 units).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "geo/roads.hpp"

namespace geo = dispatch::geo;
using geo::LatLon;
using geo::RoadNetwork;
using Clock = std::chrono::steady_clock;

namespace {

// Thread CPU time: the figure that does not count being preempted (two cores shared with
// builds on the machine where these figures were taken).
double cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

void report_load(const char* what, const RoadNetwork& net, double ms) {
  std::printf("%-28s %9zu nodes %9zu arcs %9zu segs  load %8.1f ms  %6.1f MiB  %5.1f B/node\n", what,
              net.node_count(), net.edge_count(), net.segment_count(), ms,
              static_cast<double>(net.memory_bytes()) / (1 << 20),
              static_cast<double>(net.memory_bytes()) / static_cast<double>(net.node_count()));
}

// A grid city: 100 m blocks; every 10th street a primary road (two-way), the others
// residential, every third of those one way (alternating direction).
constexpr double grid_lat0 = 29.30, grid_lon0 = 106.20, step_m = 100;
LatLon grid_point(int r, int c) {
  return {grid_lat0 + r * step_m / 111195.0, grid_lon0 + c * step_m / (111195.0 * std::cos(geo::deg2rad(29.5)))};
}

void write_grid_osm(const std::string& path, int n) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"bench_roads\">\n");
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) {
      const auto p = grid_point(r, c);
      std::fprintf(f, " <node id=\"%d\" lat=\"%.7f\" lon=\"%.7f\"/>\n", r * n + c + 1, p.lat, p.lon);
    }
  long way = 1;
  auto street = [&](int idx, bool row) {
    std::fprintf(f, " <way id=\"%ld\">\n", way++);
    for (int k = 0; k < n; ++k) std::fprintf(f, "  <nd ref=\"%d\"/>\n", (row ? idx * n + k : k * n + idx) + 1);
    const bool primary = idx % 10 == 0;
    std::fprintf(f, "  <tag k=\"highway\" v=\"%s\"/>\n", primary ? "primary" : "residential");
    if (!primary && idx % 3 == 1) std::fprintf(f, "  <tag k=\"oneway\" v=\"%s\"/>\n", idx % 2 ? "yes" : "-1");
    std::fprintf(f, " </way>\n");
  };
  for (int r = 0; r < n; ++r) street(r, true);
  for (int c = 0; c < n; ++c) street(c, false);
  std::fprintf(f, "</osm>\n");
  std::fclose(f);
}

std::vector<std::size_t> nearest_k(const std::vector<LatLon>& units, LatLon to, std::size_t k) {
  std::vector<std::pair<double, std::size_t>> d(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) d[i] = {geo::distance_m(units[i], to), i};
  k = std::min(k, d.size());
  std::partial_sort(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(k), d.end());
  std::vector<std::size_t> out(k);
  for (std::size_t i = 0; i < k; ++i) out[i] = d[i].second;
  return out;
}

void bench_queries(const RoadNetwork& net, const std::vector<LatLon>& units, std::mt19937& rng,
                   std::uniform_real_distribution<double>& lat, std::uniform_real_distribution<double>& lon, int targets) {
  for (std::size_t k : {16u, 32u, 64u}) {
    std::vector<double> us, cpu;
    std::vector<LatLon> from;
    std::vector<double> secs;
    for (int t = 0; t < targets; ++t) {
      const LatLon to{lat(rng), lon(rng)};
      from.clear();
      for (auto i : nearest_k(units, to, k)) from.push_back(units[i]);
      secs.assign(from.size(), 0);
      const auto t0 = Clock::now();
      const double c0 = cpu_us();
      net.to_target(to, from, secs);
      cpu.push_back(cpu_us() - c0);
      us.push_back(ms_since(t0) * 1000);
    }
    for (auto* v : {&us, &cpu}) {
      std::sort(v->begin(), v->end());
      double sum = 0;
      for (double x : *v) sum += x;
      std::printf("  to_target K=%-3zu %-4s mean %7.1f us  p50 %7.1f us  p99 %7.1f us  max %7.1f us  (%d targets)\n", k,
                  v == &us ? "wall" : "cpu", sum / static_cast<double>(v->size()), (*v)[v->size() / 2],
                  (*v)[v->size() * 99 / 100], v->back(), targets);
    }
  }
}

// Where the road-nearest unit ranks among the straight-line-nearest (1 = the nearest).
void bench_rank(const char* what, const RoadNetwork& net, const std::vector<LatLon>& units, std::mt19937& rng,
                std::uniform_real_distribution<double>& lat, std::uniform_real_distribution<double>& lon, int targets) {
  std::vector<int> ranks;
  std::vector<double> secs(units.size());
  int unreachable = 0;
  for (int t = 0; t < targets; ++t) {
    const LatLon to{lat(rng), lon(rng)};
    net.to_target(to, units, secs);
    const auto best = static_cast<std::size_t>(std::min_element(secs.begin(), secs.end()) - secs.begin());
    if (!std::isfinite(secs[best])) {
      ++unreachable;
      continue;
    }
    const auto order = nearest_k(units, to, units.size());
    ranks.push_back(static_cast<int>(std::find(order.begin(), order.end(), best) - order.begin()) + 1);
  }
  std::sort(ranks.begin(), ranks.end());
  std::printf("  %s: road-nearest's straight-line rank over %zu targets (%d with no unit reachable): p50 %d, p90 %d, "
              "p99 %d, max %d\n",
              what, ranks.size(), unreachable, ranks[ranks.size() / 2], ranks[ranks.size() * 9 / 10],
              ranks[ranks.size() * 99 / 100], ranks.back());
  for (int k : {1, 4, 8, 16, 32, 64}) {
    const auto outside = std::count_if(ranks.begin(), ranks.end(), [k](int r) { return r > k; });
    std::printf("    outside the first K=%-2d: %5.1f%%\n", k, 100.0 * static_cast<double>(outside) / static_cast<double>(ranks.size()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string source = DISPATCH_SOURCE_DIR, work = std::filesystem::temp_directory_path().string();
  int side = 708, targets = 1000;
  std::string write_only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--source-dir") source = argv[i + 1];
    else if (a == "--work-dir") work = argv[i + 1];
    else if (a == "--grid-side") side = std::atoi(argv[i + 1]);
    else if (a == "--targets") targets = std::atoi(argv[i + 1]);
    else if (a == "--write-grid") write_only = argv[i + 1];
  }
  if (!write_only.empty()) {
    write_grid_osm(write_only, side);
    return 0;
  }
  std::mt19937 rng(42);

  std::printf("== load (libosmium read + graph + segment grid + GeoJSON not included)\n");
  {
    auto t0 = Clock::now();
    const auto net = RoadNetwork::load_osm(source + "/tests/data/river.osm");
    report_load("river fixture", *net, ms_since(t0));
  }
  std::unique_ptr<RoadNetwork> core;
  const std::string shared = source + "/../shared/data/chongqing/roads/cq_core_link_node.topojson";
  if (std::filesystem::exists(shared)) {
    const std::string out = work + "/cq_core_link_node.osm";
    const std::string cmd = "python3 '" + source + "/scripts/topojson-to-osm.py' '" + shared + "' '" + out + "' >/dev/null";
    if (std::system(cmd.c_str()) == 0) {
      auto t0 = Clock::now();
      core = RoadNetwork::load_osm(out);
      report_load("core city (link graph)", *core, ms_since(t0));
    }
  } else {
    std::printf("core city: skipped (%s absent)\n", shared.c_str());
  }
  const std::string grid_path = work + "/bench_grid_" + std::to_string(side) + ".osm";
  {
    auto t0 = Clock::now();
    write_grid_osm(grid_path, side);
    std::printf("grid %dx%d written as .osm XML in %.0f ms (%.0f MiB)\n", side, side, ms_since(t0),
                static_cast<double>(std::filesystem::file_size(grid_path)) / (1 << 20));
  }
  auto t0 = Clock::now();
  const auto grid = RoadNetwork::load_osm(grid_path);
  report_load("synthetic grid", *grid, ms_since(t0));
  t0 = Clock::now();
  const auto gj = grid->to_geojson();
  std::printf("grid GeoJSON layer: %.0f MiB in %.0f ms\n", static_cast<double>(gj.size()) / (1 << 20), ms_since(t0));

  const LatLon far = grid_point(side - 1, side - 1);
  std::uniform_real_distribution<double> glat(grid_lat0, far.lat), glon(grid_lon0, far.lon);
  std::vector<LatLon> units(10000);
  for (auto& u : units) u = {glat(rng), glon(rng)};
  std::printf("\n== one to_target on the grid, 10,000 units, K straight-line-nearest\n");
  bench_queries(*grid, units, rng, glat, glon, targets);
  {
    std::vector<double> us;
    double apart = 0;
    for (int t = 0; t < 200; ++t) {
      const LatLon a{glat(rng), glon(rng)}, b{glat(rng), glon(rng)};
      apart += geo::distance_m(a, b) / 200;
      const double c0 = cpu_us();
      const auto r = grid->route(a, b);
      us.push_back((cpu_us() - c0) / 1000);
      (void)r;
    }
    std::sort(us.begin(), us.end());
    std::printf("  route() between random points of the grid (REST, mean %.0f km apart): cpu p50 %.0f ms, p99 %.0f ms\n",
                apart / 1000, us[100], us[198]);
  }

  std::printf("\n== is the road-nearest among the first K straight-line candidates?\n");
  bench_rank("grid, 10,000 units", *grid, units, rng, glat, glon, std::min(targets, 200));
  if (core) {
    // The core network's eastern area (the link graph has two areas with no link between).
    std::uniform_real_distribution<double> clat(29.565, 29.62), clon(106.46, 106.51);
    std::vector<LatLon> cu(300);
    for (auto& u : cu) u = {clat(rng), clon(rng)};
    bench_rank("core city east, 300 units", *core, cu, rng, clat, clon, std::min(targets, 1000));
    std::printf("\n== one to_target on the core city east, 300 units\n");
    bench_queries(*core, cu, rng, clat, clon, targets);
  }
  std::filesystem::remove(grid_path);
  return 0;
}
