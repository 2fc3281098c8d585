// The road network (geo/roads.hpp): the river fixture, a brute-force Dijkstra oracle on
// random graphs, and the real core-city network of Chongqing when ../shared has it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "geo/roads.hpp"

using dispatch::geo::LatLon;
using dispatch::geo::RoadNetwork;
using dispatch::geo::RoadWay;
namespace geo = dispatch::geo;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

std::string fixture(const char* name) { return std::string(DISPATCH_SOURCE_DIR) + "/tests/data/" + name; }

double eta(const RoadNetwork& net, LatLon from, LatLon to) {
  double s = 0;
  net.to_target(to, std::span<const LatLon>(&from, 1), std::span<double>(&s, 1));
  return s;
}

// Nodes of the fixture (tests/data/river.osm).
constexpr LatLon n2{29.567, 106.505}, n3{29.567, 106.52}, n4{29.567, 106.54}, n5{29.567, 106.56};
constexpr LatLon s2{29.553, 106.505}, s3{29.553, 106.52}, s4{29.553, 106.54}, s5{29.553, 106.56};
constexpr LatLon o1{29.570, 106.52}, o2{29.570, 106.54};

}  // namespace

TEST_CASE("the river fixture: drivable classes only, oneway, maxspeed") {
  const auto net = RoadNetwork::load_osm(fixture("river.osm"));
  // 12 road nodes: the footway's middle node and the river's are not roads.
  CHECK(net->node_count() == 12);
  // Segments: north road 4, south road 4, bridge 1, oneway lane 3 (the footway ignored).
  CHECK(net->segment_count() == 12);
  // Arcs: 9 two-way segments twice, 3 oneway once.
  CHECK(net->edge_count() == 21);

  SUBCASE("the team on the same bank is faster though the other is nearer in a straight line") {
    const LatLon scene{29.5672, 106.506};
    const LatLon same_bank{29.5672, 106.524};    // 1.74 km east along the north road
    const LatLon across_water{29.5528, 106.506};  // 1.60 km south, over the river
    REQUIRE(geo::distance_m(scene, across_water) < geo::distance_m(scene, same_bank));
    std::vector<LatLon> from{across_water, same_bank};
    std::vector<double> s(2);
    net->to_target(scene, from, s);
    CHECK(s[1] < s[0]);
    // Same bank: 1.74 km at primary speed plus two 22 m off-road legs.
    const double road_m = geo::distance_m({29.567, 106.506}, {29.567, 106.524});
    const double off_s = 2 * 0.0002 * 111195.0 / geo::access_speed_mps;
    CHECK(s[1] == doctest::Approx(road_m / (geo::class_speed_kmh(geo::RoadClass::primary) / 3.6) + off_s).epsilon(0.01));
    // Across: east along the south bank at 60 km/h, over the only bridge, back west.
    const double south_m = geo::distance_m({29.553, 106.506}, s5);
    const double north_m = geo::distance_m(n5, {29.567, 106.506});
    const double bridge_m = geo::distance_m(s5, n5);
    const double want = south_m / (60 / 3.6) + (bridge_m + north_m) / (geo::class_speed_kmh(geo::RoadClass::primary) / 3.6) + off_s;
    CHECK(s[0] == doctest::Approx(want).epsilon(0.01));
    // The route of the far team crosses at the bridge, not the footbridge.
    const auto r = net->route(across_water, scene);
    REQUIRE(r.found);
    CHECK(r.seconds == doctest::Approx(s[0]));
    bool via_bridge = false, via_footbridge = false;
    for (const auto& p : r.points) {
      via_bridge |= p == s5 || p == n5;
      via_footbridge |= p == LatLon{29.56, 106.505};
    }
    CHECK(via_bridge);
    CHECK_FALSE(via_footbridge);
    CHECK(r.metres == doctest::Approx(south_m + bridge_m + north_m + 2 * 0.0002 * 111195.0).epsilon(0.01));
    CHECK(r.points.front() == across_water);
    CHECK(r.points.back() == scene);
    // With a margin under the difference (717 s), the far team is left out (+infinity:
    // certainly not the fastest) and the search stops before the bridge.
    net->set_prune_margin_s(300);
    net->to_target(scene, from, s);
    CHECK(s[0] == inf);
    CHECK(s[1] == doctest::Approx(road_m / (geo::class_speed_kmh(geo::RoadClass::primary) / 3.6) + off_s).epsilon(0.01));
    net->set_prune_margin_s(1200);
  }

  SUBCASE("maxspeed: the south road is timed at its tagged 60 km/h, the north at the class speed") {
    const double south = eta(*net, s3, s4), north = eta(*net, n3, n4);
    const double metres = geo::distance_m(s3, s4);
    CHECK(south == doctest::Approx(metres / (60 / 3.6)).epsilon(1e-3));
    CHECK(north == doctest::Approx(metres / (geo::class_speed_kmh(geo::RoadClass::primary) / 3.6)).epsilon(1e-3));
  }

  SUBCASE("oneway: o1 -> o2 along the lane, o2 -> o1 the long way round") {
    const double res = geo::class_speed_kmh(geo::RoadClass::residential) / 3.6;
    const double with = eta(*net, o1, o2), against = eta(*net, o2, o1);
    const double lane_s = geo::distance_m(o1, o2) / (geo::class_speed_kmh(geo::RoadClass::residential) / 3.6);
    CHECK(with == doctest::Approx(lane_s).epsilon(1e-3));
    // Against it: o2 -> n4 on the lane, n4 -> n3 on the road, n3 -> o1 on the lane.
    const double pri = geo::class_speed_kmh(geo::RoadClass::primary) / 3.6;
    const double want = geo::distance_m(o2, n4) / res + geo::distance_m(n4, n3) / pri + geo::distance_m(n3, o1) / res;
    CHECK(against == doctest::Approx(want).epsilon(1e-3));
    // Partway along the same oneway segment: forward is direct, backward goes round.
    const LatLon a{29.5701, 106.525}, b{29.5701, 106.535};
    const double off_s = 2 * geo::distance_m(a, {29.57, 106.525}) / geo::access_speed_mps;
    CHECK(eta(*net, a, b) == doctest::Approx(geo::distance_m({29.57, 106.525}, {29.57, 106.535}) / res + off_s).epsilon(1e-3));
    CHECK(eta(*net, b, a) > eta(*net, a, b) + 60);
  }

  SUBCASE("snapping and the GeoJSON layer") {
    const auto sn = net->snap({29.5675, 106.53});
    REQUIRE(sn.seg >= 0);
    CHECK(sn.at.lat == doctest::Approx(29.567));
    CHECK(sn.at.lon == doctest::Approx(106.53));
    CHECK(sn.offroad_m == doctest::Approx(0.0005 * 111195.0).epsilon(0.01));
    // Far outside the network still snaps (to the nearest end).
    CHECK(net->snap({30.5, 107.5}).seg >= 0);
    CHECK(net->snap({std::nan(""), 106.5}).seg == -1);
    const std::string gj = net->to_geojson();
    CHECK(gj.find("\"highway\":\"primary\"") != std::string::npos);
    CHECK(gj.find("\"oneway\":\"yes\"") != std::string::npos);
    CHECK(gj.find("footway") == std::string::npos);
    CHECK(gj.find("[106.5600000,29.5670000]") != std::string::npos);
  }
}

TEST_CASE("a bad roads file is a clear error") {
  CHECK_THROWS_WITH_AS(RoadNetwork::load_osm(fixture("no-such-file.osm")),
                       doctest::Contains("no-such-file.osm"), std::runtime_error);
  const auto path = std::filesystem::path(DISPATCH_BINARY_DIR) / "footways-only.osm";
  std::ofstream(path) << R"(<?xml version="1.0"?><osm version="0.6">
    <node id="1" lat="29.5" lon="106.5"/><node id="2" lat="29.51" lon="106.5"/>
    <way id="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="footway"/></way></osm>)";
  CHECK_THROWS_WITH_AS(RoadNetwork::load_osm(path.string()), doctest::Contains("no drivable"), std::runtime_error);
}

TEST_CASE("maxspeed values") {
  CHECK(geo::parse_maxspeed_kmh("50") == 50);
  CHECK(geo::parse_maxspeed_kmh("50 km/h") == 50);
  CHECK(geo::parse_maxspeed_kmh("30 mph") == doctest::Approx(48.28).epsilon(1e-3));
  CHECK(geo::parse_maxspeed_kmh("40;60") == 40);
  CHECK(geo::parse_maxspeed_kmh("walk") == 0);
  CHECK(geo::parse_maxspeed_kmh("none") == 0);
  CHECK(geo::parse_maxspeed_kmh("-5") == 0);
  CHECK(geo::parse_maxspeed_kmh(nullptr) == 0);
}

// ---- The oracle: plain Dijkstra over the segments, with the two snaps as extra nodes. ----
namespace {

double oracle_ms(const RoadNetwork& net, const RoadNetwork::Snap& src, const RoadNetwork::Snap& tgt) {
  const int n = static_cast<int>(net.node_count());
  const int S = n, T = n + 1;
  std::vector<std::vector<std::pair<int, double>>> adj(n + 2);
  for (int s = 0; s < static_cast<int>(net.segment_count()); ++s) {
    if (net.seg_w_ab(s)) adj[net.seg_a(s)].push_back({net.seg_b(s), double(net.seg_w_ab(s))});
    if (net.seg_w_ba(s)) adj[net.seg_b(s)].push_back({net.seg_a(s), double(net.seg_w_ba(s))});
  }
  auto partial = [&](const RoadNetwork::Snap& p, int virt, bool out) {
    const int a = net.seg_a(p.seg), b = net.seg_b(p.seg);
    const double wab = net.seg_w_ab(p.seg), wba = net.seg_w_ba(p.seg);
    if (out) {  // from the snap to the segment's ends
      if (wab) adj[virt].push_back({b, (1 - p.frac) * wab});
      if (wba) adj[virt].push_back({a, p.frac * wba});
    } else {  // from the ends to the snap
      if (wab) adj[a].push_back({virt, p.frac * wab});
      if (wba) adj[b].push_back({virt, (1 - p.frac) * wba});
    }
  };
  partial(src, S, true);
  partial(tgt, T, false);
  if (src.seg == tgt.seg) {
    if (src.frac <= tgt.frac && net.seg_w_ab(src.seg)) adj[S].push_back({T, (tgt.frac - src.frac) * net.seg_w_ab(src.seg)});
    if (src.frac >= tgt.frac && net.seg_w_ba(src.seg)) adj[S].push_back({T, (src.frac - tgt.frac) * net.seg_w_ba(src.seg)});
  }
  std::vector<double> d(n + 2, inf);
  using Item = std::pair<double, int>;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> q;
  d[S] = 0;
  q.push({0, S});
  while (!q.empty()) {
    auto [du, u] = q.top();
    q.pop();
    if (du > d[u]) continue;
    for (auto [v, w] : adj[u])
      if (du + w < d[v]) q.push({d[v] = du + w, v});
  }
  return d[T];
}

// Distance from p to segment s, brute force, in a plane around p.
double brute_offroad_m(const RoadNetwork& net, LatLon p) {
  double best = inf;
  const double ky = geo::deg2rad(1) * geo::earth_radius_m, kx = ky * std::cos(geo::deg2rad(p.lat));
  for (int s = 0; s < static_cast<int>(net.segment_count()); ++s) {
    const LatLon a = net.node(net.seg_a(s)), b = net.node(net.seg_b(s));
    const double ax = (a.lon - p.lon) * kx, ay = (a.lat - p.lat) * ky;
    const double dx = (b.lon - a.lon) * kx, dy = (b.lat - a.lat) * ky;
    const double len2 = dx * dx + dy * dy;
    const double t = len2 > 0 ? std::clamp(-(ax * dx + ay * dy) / len2, 0.0, 1.0) : 0;
    best = std::min(best, std::hypot(ax + t * dx, ay + t * dy));
  }
  return best;
}

std::vector<RoadWay> random_ways(std::mt19937& rng, int nodes, int ways) {
  std::uniform_real_distribution<double> lat(29.50, 29.55), lon(106.50, 106.56), u(0, 1);
  std::vector<LatLon> pts(nodes);
  for (auto& p : pts) p = {lat(rng), lon(rng)};
  std::uniform_int_distribution<int> pick(0, nodes - 1), len(2, 5), cls(0, 13);
  std::vector<RoadWay> out;
  for (int w = 0; w < ways; ++w) {
    RoadWay rw;
    int cur = pick(rng);
    const int k = len(rng);
    for (int i = 0; i < k; ++i) {
      // Mostly short hops: pick a node among a few random ones, the nearest.
      int best = pick(rng);
      for (int j = 0; j < 6; ++j) {
        const int c = pick(rng);
        if (c != cur && geo::distance_m(pts[c], pts[cur]) < geo::distance_m(pts[best], pts[cur])) best = c;
      }
      if (i == 0) best = cur;
      rw.points.push_back(pts[best]);
      rw.node_ids.push_back(best);
      cur = best;
    }
    rw.cls = static_cast<geo::RoadClass>(cls(rng));
    const double r = u(rng);
    if (r < 0.2) rw.backward = false;
    else if (r < 0.3) rw.forward = false;
    if (u(rng) < 0.2) rw.speed_kmh = 20 + 60 * u(rng);
    out.push_back(std::move(rw));
  }
  return out;
}

}  // namespace

TEST_CASE("oracle: every to_target answer matches a brute-force Dijkstra on random graphs") {
  // Exact mode (no pruning): every answer. Pruned (the default margin and a tight one):
  // the fastest is the oracle's fastest, every finite answer exact, and an answer left
  // infinite only for a source the oracle puts beyond the fastest plus the margin.
  for (const double margin : {std::numeric_limits<double>::infinity(), 1200.0, 30.0}) {
    CAPTURE(margin);
    std::mt19937 rng(20261129);
    std::uniform_real_distribution<double> lat(29.49, 29.56), lon(106.49, 106.57);
    int compared = 0, unreachable = 0, same_segment = 0, pruned = 0;
    for (int graph = 0; graph < 25; ++graph) {
      const int nodes = 30 + graph * 12;
      const auto net = RoadNetwork::from_ways(random_ways(rng, nodes, nodes * 2 / 3 + graph));
      net->set_prune_margin_s(margin);
      for (int q = 0; q < 8; ++q) {
        const LatLon to{lat(rng), lon(rng)};
        std::vector<LatLon> from(1 + rng() % 40);
        for (auto& p : from) p = {lat(rng), lon(rng)};
        // Some sources on the target's own segment, either side of it.
        const auto ts = net->snap(to);
        REQUIRE(ts.seg >= 0);
        const LatLon a = net->node(net->seg_a(ts.seg)), b = net->node(net->seg_b(ts.seg));
        for (double f : {0.1, 0.9})
          from.push_back({a.lat + f * (b.lat - a.lat), a.lon + f * (b.lon - a.lon)});
        std::vector<double> got(from.size());
        net->to_target(to, from, got);
        CHECK(net->snap(to).offroad_m <= brute_offroad_m(*net, to) * 1.0001 + 0.05);
        std::vector<double> want(from.size());
        for (std::size_t i = 0; i < from.size(); ++i) {
          const auto sn = net->snap(from[i]);
          REQUIRE(sn.seg >= 0);
          CHECK(sn.offroad_m <= brute_offroad_m(*net, from[i]) * 1.0001 + 0.05);
          const double ms = oracle_ms(*net, sn, ts);
          want[i] = ms == inf ? inf : (sn.offroad_m + ts.offroad_m) / geo::access_speed_mps + ms / 1000;
          same_segment += sn.seg == ts.seg;
        }
        const double best = *std::min_element(want.begin(), want.end());
        const double got_best = *std::min_element(got.begin(), got.end());
        if (best == inf) CHECK(got_best == inf);
        else CHECK(got_best == doctest::Approx(best).epsilon(1e-9));
        for (std::size_t i = 0; i < from.size(); ++i) {
          ++compared;
          if (want[i] == inf) {
            CHECK(got[i] == inf);
            ++unreachable;
          } else if (got[i] == inf) {
            CHECK(want[i] > best + margin);  // left out only when certainly not wanted
            ++pruned;
          } else {
            CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-9));
            // route() agrees with the oracle.
            if (i % 7 == 0) CHECK(net->route(from[i], to).seconds == doctest::Approx(want[i]).epsilon(1e-9));
          }
          if (want[i] < inf && (margin == inf || want[i] <= best + margin))
            CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-9));
        }
      }
    }
    MESSAGE("margin " << margin << " s: " << compared << " answers compared, " << unreachable << " unreachable, "
                      << same_segment << " on the target's segment, " << pruned << " pruned");
    CHECK(compared > 2000);
    CHECK(unreachable > 0);     // oneways and islands: the oracle covers "no route" too
    CHECK(same_segment > 200);  // and the partial-edge case
    if (margin == inf) CHECK(pruned == 0);
    if (margin == 30.0) CHECK(pruned > 100);  // the pruning is exercised
  }
}

TEST_CASE("the real core-city network of Chongqing (../shared, not in the repository)") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DISPATCH_SHARED_DIR) / "data/chongqing/roads";
  for (const char* name : {"cq_core_link_node.topojson", "cq_core_roads.topojson"}) {
    CAPTURE(name);
    const fs::path in = dir / name;
    if (!fs::exists(in)) {
      MESSAGE("skipped: " << in.string() << " is absent (the real network is read from ../shared only)");
      continue;
    }
    const fs::path out = fs::path(DISPATCH_BINARY_DIR) / (fs::path(name).stem().string() + ".osm");
    const std::string cmd = "python3 '" + std::string(DISPATCH_SOURCE_DIR) + "/scripts/topojson-to-osm.py' '" +
                            in.string() + "' '" + out.string() + "' >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const auto net = RoadNetwork::load_osm(out.string());
    MESSAGE(std::string(name) << ": " << net->node_count() << " nodes, " << net->edge_count() << " arcs");
    CHECK(net->node_count() > 3000);
    CHECK(net->edge_count() > 3000);
    // The link graph covers two areas (Shapingba in the west, Jiangbei/Yuzhong side in the
    // east) with no link between them; the road file is not noded at most junctions. Route
    // across the eastern area (about 6 km).
    const LatLon south{29.572, 106.47}, north{29.615, 106.50};
    const auto r = net->route(south, north);
    const bool links = std::string(name).find("link") != std::string::npos;
    MESSAGE("route: " << r.found << ", " << r.seconds << " s, " << r.metres << " m");
    if (links) {
      REQUIRE(r.found);
      CHECK(r.seconds > geo::distance_m(south, north) / (100 / 3.6));
      CHECK(r.seconds < 1800);
      CHECK(r.metres > geo::distance_m(south, north));
    }
    // Random pairs of points in that area: how many are connected by road.
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> lat(29.565, 29.62), lon(106.46, 106.51);
    int connected = 0;
    for (int i = 0; i < 50; ++i) connected += std::isfinite(eta(*net, {lat(rng), lon(rng)}, {lat(rng), lon(rng)}));
    MESSAGE(connected << " of 50 random pairs connected");
    CHECK(connected >= (links ? 35 : 5));
  }
}
