// Zones on GEOS with the project's real district file, GCJ-02. (The demo places: test_places.cpp.)
#include <doctest/doctest.h>
#include <geos_c.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "geo/gcj02.hpp"
#include "geo/zones.hpp"

using namespace dispatch::geo;
namespace json = boost::json;

namespace {
const std::string districts = std::string(DISPATCH_SOURCE_DIR) + "/assets/geo/chongqing_districts_gcj02.geojson";
const std::string datav = std::string(DISPATCH_SHARED_DIR) + "/data/chongqing/boundaries/datav_500000_full.json";

const Zones& chongqing() {
  static Zones z = [] {
    ZoneOptions o;
    o.gcj02 = true;
    return Zones::load(districts, o);
  }();
  return z;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::path(DISPATCH_BINARY_DIR) / "test_zones_tmp";
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// An independent oracle: the same file read by another road (coordinates converted one by
// one and handed to GEOS as WKT, no STRtree, no prepared geometry), answering "which zone"
// by asking every zone in order with plain GEOSContains.
class Oracle {
 public:
  Oracle(const std::string& path, bool gcj02) : ctx_(GEOS_init_r()) {
    GEOSWKTReader* reader = GEOSWKTReader_create_r(ctx_);
    const json::value doc = json::parse(slurp(path));
    for (const auto& f : doc.at("features").as_array()) {
      const auto& g = f.at("geometry");
      const std::string type(g.at("type").as_string());
      if (type != "Polygon" && type != "MultiPolygon") continue;
      names_.emplace_back(f.at("properties").at("name").as_string());
      std::string wkt = "MULTIPOLYGON(";
      auto polygon = [&](const json::array& rings) {
        wkt += '(';
        for (std::size_t r = 0; r < rings.size(); ++r) {
          wkt += r ? ",(" : "(";
          const auto& pts = rings[r].as_array();
          for (std::size_t k = 0; k < pts.size(); ++k) {
            const auto& c = pts[k].as_array();
            LatLon p{c[1].to_number<double>(), c[0].to_number<double>()};
            if (gcj02) p = gcj02_to_wgs84(p);
            char buf[64];
            std::snprintf(buf, sizeof buf, "%s%.17g %.17g", k ? "," : "", p.lon, p.lat);
            wkt += buf;
          }
          wkt += ')';
        }
        wkt += ')';
      };
      const auto& coords = g.at("coordinates").as_array();
      if (type == "Polygon") {
        polygon(coords);
      } else {
        for (std::size_t k = 0; k < coords.size(); ++k) {
          if (k) wkt += ',';
          polygon(coords[k].as_array());
        }
      }
      wkt += ')';
      GEOSGeometry* geom = GEOSWKTReader_read_r(ctx_, reader, wkt.c_str());
      REQUIRE(geom);
      if (GEOSisValid_r(ctx_, geom) != 1) {
        GEOSGeometry* fixed = GEOSMakeValid_r(ctx_, geom);
        GEOSGeom_destroy_r(ctx_, geom);
        geom = fixed;
      }
      geoms_.push_back(geom);
    }
    GEOSWKTReader_destroy_r(ctx_, reader);
  }
  ~Oracle() {
    for (auto* g : geoms_) GEOSGeom_destroy_r(ctx_, g);
    GEOS_finish_r(ctx_);
  }
  Oracle(const Oracle&) = delete;
  Oracle& operator=(const Oracle&) = delete;

  std::size_t size() const { return geoms_.size(); }
  const std::string& name(std::size_t i) const { return names_[i]; }
  bool contains(std::size_t i, LatLon p) const {
    GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(ctx_, p.lon, p.lat);
    const bool in = GEOSContains_r(ctx_, geoms_[i], pt) == 1;
    GEOSGeom_destroy_r(ctx_, pt);
    return in;
  }
  std::optional<std::size_t> first_containing(LatLon p) const {
    for (std::size_t i = 0; i < geoms_.size(); ++i)
      if (contains(i, p)) return i;
    return std::nullopt;
  }

 private:
  GEOSContextHandle_t ctx_;
  std::vector<GEOSGeometry*> geoms_;
  std::vector<std::string> names_;
};
}  // namespace

TEST_CASE("GCJ-02: published pairs") {
  // googollee/eviltransform, go/transform_test.go and python/test.py (the same three pairs,
  // wgsLat, wgsLng, gcjLat, gcjLng); its tests ask the forward transform for 6 decimals and
  // the exact inverse for 0.5 m.
  struct Pair {
    LatLon wgs, gcj;
  };
  const Pair evil[] = {
      {{31.1774276, 121.5272106}, {31.17530398364597, 121.531541859215}},    // Shanghai
      {{22.543847, 113.912316}, {22.540796131694766, 113.9171764808363}},    // Shenzhen
      {{39.911954, 116.377817}, {39.91334545536069, 116.38404722455657}},    // Beijing
  };
  for (const auto& [wgs, gcj] : evil) {
    const LatLon g = wgs84_to_gcj02(wgs);
    CHECK(std::abs(g.lat - gcj.lat) < 1e-9);
    CHECK(std::abs(g.lon - gcj.lon) < 1e-9);
    CHECK(distance_m(gcj02_to_wgs84(gcj), wgs) < 0.01);
  }
  // wandergis/coordtransform, test/app.js: wgs84togcj02(116.404, 39.915) ->
  // [116.41024449916938, 39.91640428150164]. (Its gcj02towgs84 there is the one-step
  // approximation, a few metres off, so only the forward value is a reference.)
  const LatLon cg = wgs84_to_gcj02({39.915, 116.404});
  CHECK(std::abs(cg.lon - 116.41024449916938) < 1e-9);
  CHECK(std::abs(cg.lat - 39.91640428150164) < 1e-9);
  // hujiulong/gcoord, test/unit/crs/GCJ02.spec.js: GCJ-02 [123, 45] -> WGS84
  // [122.99395597, 44.99804071], checked there to 5 decimals.
  const LatLon w = gcj02_to_wgs84({45, 123});
  CHECK(std::abs(w.lon - 122.99395597) < 5e-6);
  CHECK(std::abs(w.lat - 44.99804071) < 5e-6);
  // hujiulong/gcoord, test/fixtures/china-cities.json, "重庆城区" (渝中区): WGS84
  // [106.5478343, 29.565849], GCJ-02 [106.5515641, 29.563013]. The fixture comes from an
  // online service that rounds to 7 decimals and differs from the public formula by about
  // 5e-6 deg; gcoord checks it to 4 decimals, we to 1e-5 deg (about 1 m).
  const LatLon cq_wgs{29.565849, 106.5478343}, cq_gcj{29.563013, 106.5515641};
  CHECK(std::abs(wgs84_to_gcj02(cq_wgs).lat - cq_gcj.lat) < 1e-5);
  CHECK(std::abs(wgs84_to_gcj02(cq_wgs).lon - cq_gcj.lon) < 1e-5);
  CHECK(distance_m(gcj02_to_wgs84(cq_gcj), cq_wgs) < 1.5);
}

TEST_CASE("GCJ-02: the Chongqing offset, round trips, and nothing changes outside China") {
  // SOURCES.md: in Chongqing GCJ-02 lies about +0.0040 lon / -0.0026 lat from WGS84.
  const LatLon jfb{29.5573, 106.5770};
  const LatLon g = wgs84_to_gcj02(jfb);
  CHECK(g.lon - jfb.lon == doctest::Approx(0.0040).epsilon(0.15));
  CHECK(g.lat - jfb.lat == doctest::Approx(-0.0026).epsilon(0.3));
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> lat(28.16, 32.20), lon(105.29, 110.20);
  double worst_round_trip = 0, worst_inverse = 0;
  for (int i = 0; i < 5000; ++i) {
    const LatLon p{lat(rng), lon(rng)};
    worst_round_trip = std::max(worst_round_trip, distance_m(p, gcj02_to_wgs84(wgs84_to_gcj02(p))));
    // The inverse read the other way: a GCJ-02 point, converted and sent forward again.
    worst_inverse = std::max(worst_inverse, distance_m(p, wgs84_to_gcj02(gcj02_to_wgs84(p))));
  }
  CHECK(worst_round_trip < 0.5);  // metres; the brief's bound, met with room to spare
  CHECK(worst_inverse < 0.5);
  MESSAGE("worst GCJ-02 round trip in Chongqing: " << worst_round_trip << " m");
  for (const LatLon p : {LatLon{48.85, 2.35}, LatLon{-33.86, 151.21}, LatLon{40.71, -74.0}}) {
    CHECK(outside_china(p));
    CHECK(wgs84_to_gcj02(p) == p);
    CHECK(gcj02_to_wgs84(p) == p);
  }
  CHECK_FALSE(outside_china(jfb));
}

TEST_CASE("the 38 districts load, all valid in this file, the nine central ones urban") {
  std::vector<std::string> warnings;
  ZoneOptions o;
  o.gcj02 = true;
  Zones z = Zones::load(districts, o, &warnings);
  CHECK(z.size() == 38);
  // Unlike the DataV outlines (six self-intersections), GaryBikini's are all valid.
  CHECK(warnings.empty());
  std::set<std::string> urban;
  for (std::size_t i = 0; i < z.size(); ++i)
    if (z.zone(i).urban) urban.insert(z.zone(i).code);
  CHECK(urban == std::set<std::string>{"500103", "500104", "500105", "500106", "500107", "500108",
                                       "500109", "500112", "500113"});
  CHECK(z.zone(*z.find("500103")).name == "渝中区");
  CHECK(z.zone(*z.find("渝中区")).code == "500103");
  CHECK_FALSE(z.find("成华区"));
  CHECK_FALSE(z.zone(*z.find("城口县")).urban);
  // The municipality is about 82,400 km2; 渝中区 about 23 km2.
  double area = 0;
  for (std::size_t i = 0; i < z.size(); ++i) area += z.zone(i).area_km2;
  CHECK(area == doctest::Approx(82400).epsilon(0.03));
  CHECK(z.zone(*z.find("渝中区")).area_km2 == doctest::Approx(23).epsilon(0.15));

  // A setting names other urban zones, by name or by code.
  ZoneOptions two;
  two.gcj02 = true;
  two.urban = {"万州区", "500102"};
  Zones z2 = Zones::load(districts, two);
  int n = 0;
  for (std::size_t i = 0; i < z2.size(); ++i) n += z2.zone(i).urban;
  CHECK(n == 2);
  CHECK(z2.zone(*z2.find("万州区")).urban);
  CHECK(z2.zone(*z2.find("涪陵区")).urban);
  CHECK_FALSE(z2.zone(*z2.find("渝中区")).urban);
}

TEST_CASE("locate: landmarks in WGS84 fall in their districts; elsewhere nothing") {
  const Zones& z = chongqing();
  auto name_at = [&](LatLon p) {
    auto i = z.locate(p);
    return i ? z.zone(*i).name : std::string("-");
  };
  CHECK(name_at({29.5573, 106.5770}) == "渝中区");        // Jiefangbei
  CHECK(name_at({29.565849, 106.5478343}) == "渝中区");   // gcoord's 重庆城区 point
  CHECK(name_at({29.712254, 106.651895}) == "渝北区");    // Jiangbei airport (ZUCK)
  CHECK(name_at({30.8017, 108.433}) == "万州区");         // Wanzhou Wuqiao airport (ZUWX)
  CHECK(name_at({29.356667, 106.010441}) == "永川区");    // Yongchuan Da'an airport (YGA)
  CHECK(name_at({29.5133333, 108.8311111}) == "黔江区");  // Qianjiang Wulingshan (JIQ)
  CHECK(name_at({39.9, 116.4}) == "-");                  // Beijing
  CHECK(name_at({30.66, 104.06}) == "-");                // Chengdu
  CHECK(name_at({27.73, 109.19}) == "-");                // Tongren, Guizhou: south-east of the box
  CHECK(name_at({0, 0}) == "-");
  CHECK(name_at({std::nan(""), 106.5}) == "-");
}

TEST_CASE("locate agrees with brute-force GEOSContains over every zone") {
  const Zones& z = chongqing();
  const Oracle oracle(districts, true);
  REQUIRE(oracle.size() == z.size());
  for (std::size_t i = 0; i < z.size(); ++i) CHECK(oracle.name(i) == z.zone(i).name);
  std::mt19937_64 rng(17);
  // The whole municipality's box, then the urban core where districts are small.
  std::uniform_real_distribution<double> lat(28.10, 32.25), lon(105.25, 110.25);
  std::uniform_real_distribution<double> ulat(29.35, 29.85), ulon(106.30, 106.85);
  int mismatches = 0, inside = 0;
  for (int k = 0; k < 4000; ++k) {
    const LatLon p = k < 2500 ? LatLon{lat(rng), lon(rng)} : LatLon{ulat(rng), ulon(rng)};
    const auto expected = oracle.first_containing(p);
    inside += expected.has_value();
    if (z.locate(p) != expected) {
      ++mismatches;
      MESSAGE("mismatch at " << p.lat << "," << p.lon);
    }
  }
  CHECK(mismatches == 0);
  CHECK(inside > 2000);  // the test is not vacuous
}

TEST_CASE("random points land inside their zone and spread over it") {
  const Zones& z = chongqing();
  const Oracle oracle(districts, true);
  std::mt19937_64 rng(9);
  int outside = 0;
  for (std::size_t i = 0; i < z.size(); ++i)
    for (int k = 0; k < 50; ++k)
      if (!oracle.contains(i, z.random_point(i, rng))) ++outside;
  CHECK(outside == 0);

  // Uniform, not clustered: the two halves of a square with a hole get equal shares.
  const std::string path = write_temp("ring.geojson", R"({"type":"FeatureCollection","features":[
    {"type":"Feature","properties":{"name":"ring","code":"9"},"geometry":{"type":"Polygon","coordinates":[
      [[107,29],[107.2,29],[107.2,29.2],[107,29.2],[107,29]],
      [[107.05,29.05],[107.05,29.15],[107.15,29.15],[107.15,29.05],[107.05,29.05]]]}}]})");
  Zones ring = Zones::load(path, {});
  int west = 0;
  const int n = 4000;
  for (int k = 0; k < n; ++k) {
    const LatLon p = ring.random_point(0, rng);
    CHECK_FALSE((p.lat > 29.05 && p.lat < 29.15 && p.lon > 107.05 && p.lon < 107.15));
    west += p.lon < 107.1;
  }
  CHECK(static_cast<double>(west) / n == doctest::Approx(0.5).epsilon(0.1));
}

TEST_CASE("the WGS84 GeoJSON for the console parses back with every zone") {
  const Zones& z = chongqing();
  const json::value doc = json::parse(z.to_geojson());
  const auto& f = doc.at("features").as_array();
  REQUIRE(f.size() == z.size());
  GEOSContextHandle_t ctx = GEOS_init_r();
  GEOSGeoJSONReader* reader = GEOSGeoJSONReader_create_r(ctx);
  double worst = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    const auto& props = f[i].at("properties");
    CHECK(props.at("name").as_string() == z.zone(i).name);
    CHECK(props.at("code").as_string() == z.zone(i).code);
    CHECK(props.at("urban").as_bool() == z.zone(i).urban);
    CHECK(f[i].at("geometry").at("type").as_string() == "MultiPolygon");
    // Written in WGS84, lon before lat: its centroid is the zone's, not 470 m off (GCJ-02)
    // nor on the other side of the world (swapped axes).
    GEOSGeometry* g = GEOSGeoJSONReader_readGeometry_r(ctx, reader, json::serialize(f[i].at("geometry")).c_str());
    REQUIRE(g);
    CHECK(GEOSisValid_r(ctx, g) == 1);
    GEOSGeometry* c = GEOSGetCentroid_r(ctx, g);
    double x = 0, y = 0;
    GEOSGeomGetX_r(ctx, c, &x);
    GEOSGeomGetY_r(ctx, c, &y);
    worst = std::max(worst, distance_m({y, x}, z.zone(i).centroid));
    GEOSGeom_destroy_r(ctx, c);
    GEOSGeom_destroy_r(ctx, g);
  }
  GEOSGeoJSONReader_destroy_r(ctx, reader);
  GEOS_finish_r(ctx);
  CHECK(worst < 100);

  // Coordinates carry the asked-for number of decimals.
  const json::value three = json::parse(z.to_geojson(3));
  const auto& ring = three.at("features").at(0).at("geometry").at("coordinates").at(0).at(0).as_array();
  REQUIRE(ring.size() >= 4);
  for (const auto& pos : ring)
    for (const auto& v : pos.as_array()) {
      const double scaled = v.to_number<double>() * 1000;
      CHECK(std::abs(scaled - std::round(scaled)) < 1e-6);
    }
}

TEST_CASE("a bow-tie is repaired with a warning; crs says GCJ-02; points are skipped") {
  const std::string path = write_temp("bowtie.geojson", R"({"type":"FeatureCollection","features":[
    {"type":"Feature","properties":{"name":"bowtie","adcode":"900001"},"geometry":{"type":"Polygon",
      "coordinates":[[[106,29],[106.1,29.1],[106.1,29],[106,29.1],[106,29]]]}},
    {"type":"Feature","properties":{"name":"a point"},"geometry":{"type":"Point","coordinates":[106,29]}},
    {"type":"Feature","properties":{"name":"square","code":900002},"geometry":{"type":"MultiPolygon",
      "coordinates":[[[[107,29],[107.2,29],[107.2,29.2],[107,29.2],[107,29]]]]}}]})");
  std::vector<std::string> warnings;
  ZoneOptions o;
  o.urban = {"square"};
  Zones z = Zones::load(path, o, &warnings);
  REQUIRE(z.size() == 2);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].rfind("zone bowtie (900001): invalid polygon repaired: Self-intersection", 0) == 0);
  CHECK(z.zone(1).code == "900002");  // a numeric "code" is read too
  CHECK(z.zone(1).urban);
  CHECK_FALSE(z.zone(0).urban);
  // The repaired bow-tie is its two triangles, and not the gap between them.
  CHECK(z.locate({29.05, 106.01}) == 0u);
  CHECK(z.locate({29.05, 106.09}) == 0u);
  CHECK_FALSE(z.locate({29.01, 106.05}));
  CHECK(z.zone(0).area_km2 == doctest::Approx(2 * 0.0025 * 111.195 * 111.195 * std::cos(deg2rad(29.05))).epsilon(0.01));
  // The same square, flagged GCJ-02 by the collection or by its feature, moves to WGS84.
  auto square = [&](const std::string& feature_crs, const std::string& top_crs) {
    return write_temp("square.geojson",
                      R"({"type":"FeatureCollection")" + top_crs +
                          R"(,"features":[{"type":"Feature","properties":{"name":"square")" + feature_crs +
                          R"(},"geometry":{"type":"Polygon",
      "coordinates":[[[107.1,29.1],[107.102,29.1],[107.102,29.102],[107.1,29.102],[107.1,29.1]]]}}]})");
  };
  // Small, because the GCJ-02 offset wobbles over kilometres: a big square's corners move
  // apart enough to shift its centroid by tens of metres.
  const LatLon expected = gcj02_to_wgs84({29.101, 107.101});
  CHECK(distance_m(Zones::load(square("", R"(,"crs":"GCJ02")"), {}).zone(0).centroid, expected) < 2);
  CHECK(distance_m(Zones::load(square(R"(,"crs":"gcj02")", ""), {}).zone(0).centroid, expected) < 2);
  CHECK(distance_m(Zones::load(square("", R"(,"crs":{"type":"name","properties":{"name":"gcj02"}})"), {})
                       .zone(0).centroid, expected) < 2);
  CHECK(distance_m(Zones::load(square("", ""), {}).zone(0).centroid, {29.101, 107.101}) < 2);
  CHECK(distance_m(expected, {29.101, 107.101}) > 300);  // so the checks above can fail
}

TEST_CASE("unreadable or ill-formed zone files are refused with the file's name") {
  auto message = [](const std::string& path) {
    try {
      Zones::load(path, {});
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  CHECK(message("/nonexistent/zones.geojson").find("/nonexistent/zones.geojson") != std::string::npos);
  const std::string bad = write_temp("bad.geojson", "{\"type\":\"FeatureCollection\",");
  CHECK(message(bad).find("invalid JSON") != std::string::npos);
  const std::string feature = write_temp("feature.geojson", R"({"type":"Feature","geometry":null})");
  CHECK(message(feature).find("FeatureCollection") != std::string::npos);
  const std::string points = write_temp("points.geojson", R"({"type":"FeatureCollection","features":[
    {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[106,29]}}]})");
  CHECK(message(points).find("no polygon zones") != std::string::npos);
  const std::string broken = write_temp("broken.geojson", R"({"type":"FeatureCollection","features":[
    {"type":"Feature","properties":{"name":"x","adcode":"1"},"geometry":{"type":"Polygon","coordinates":[[[106,29],[106.1]]]}}]})");
  CHECK(message(broken).find("zone x (1): unreadable geometry") != std::string::npos);
}

TEST_CASE("the DataV boundaries from the shared data: GCJ-02, six invalid and repaired") {
  if (!std::filesystem::exists(datav)) {
    MESSAGE("shared data not present (" << datav << "); skipped");
    return;
  }
  std::vector<std::string> warnings;
  ZoneOptions o;
  o.gcj02 = true;
  Zones z = Zones::load(datav, o, &warnings);
  CHECK(z.size() == 38);
  // SOURCES.md lists the six that GEOS finds self-intersecting.
  std::set<std::string> repaired;
  for (const auto& w : warnings) {
    CHECK(w.find("invalid polygon repaired: Self-intersection") != std::string::npos);
    repaired.insert(w.substr(0, w.find(':')));
  }
  CHECK(repaired == std::set<std::string>{"zone 九龙坡区 (500107)", "zone 长寿区 (500115)",
                                          "zone 合川区 (500117)", "zone 铜梁区 (500151)",
                                          "zone 潼南区 (500152)", "zone 奉节县 (500236)"});
  CHECK(z.zone(*z.locate({29.5573, 106.5770})).name == "渝中区");
  CHECK(z.zone(*z.locate({29.712254, 106.651895})).name == "渝北区");
  // The two sources agree on the district of random points away from borders: DataV is
  // coarser, so allow a few percent near the edges.
  const Zones& gary = chongqing();
  std::mt19937_64 rng(3);
  int agree = 0, both = 0;
  std::uniform_real_distribution<double> lat(28.2, 32.2), lon(105.3, 110.2);
  for (int k = 0; k < 2000; ++k) {
    const LatLon p{lat(rng), lon(rng)};
    const auto a = z.locate(p), b = gary.locate(p);
    if (!a || !b) continue;
    ++both;
    agree += z.zone(*a).code == gary.zone(*b).code;
  }
  MESSAGE("DataV and GaryBikini agree on " << agree << " of " << both << " points");
  CHECK(both > 600);
  CHECK(agree >= both * 97 / 100);
  // The repaired zones answer like their neighbours: a brute-force check over all zones.
  const Oracle oracle(datav, true);
  int mismatches = 0;
  for (int k = 0; k < 1500; ++k) {
    const LatLon p{lat(rng), lon(rng)};
    mismatches += z.locate(p) != oracle.first_containing(p);
  }
  CHECK(mismatches == 0);
}
