// Zones on GEOS with the project's real district file, GCJ-02, and the demo places.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <random>

#include "geo/gcj02.hpp"
#include "geo/places.hpp"
#include "geo/zones.hpp"

using namespace dispatch::geo;

namespace {
const std::string districts = std::string(DISPATCH_SOURCE_DIR) + "/assets/geo/chongqing_districts_gcj02.geojson";
const std::string places = std::string(DISPATCH_SOURCE_DIR) + "/assets/places/chongqing-demo.geojson";

const Zones& chongqing() {
  static Zones z = [] {
    ZoneOptions o;
    o.gcj02 = true;
    return Zones::load(districts, o);
  }();
  return z;
}
}  // namespace

TEST_CASE("GCJ-02: a published pair, round trips, and nothing changes outside China") {
  // hujiulong/gcoord test/unit/crs/GCJ02.spec.js: GCJ-02 (123, 45) -> WGS84
  // (122.99395597, 44.99804071), to 5 decimals.
  const LatLon w = gcj02_to_wgs84({45, 123});
  CHECK(w.lon == doctest::Approx(122.99395597).epsilon(1e-7));
  CHECK(w.lat == doctest::Approx(44.99804071).epsilon(1e-7));
  // SOURCES.md: in Chongqing GCJ-02 lies about +0.0040 lon / -0.0026 lat from WGS84.
  const LatLon jfb{29.5573, 106.5770};
  const LatLon g = wgs84_to_gcj02(jfb);
  CHECK(g.lon - jfb.lon == doctest::Approx(0.0040).epsilon(0.15));
  CHECK(g.lat - jfb.lat == doctest::Approx(-0.0026).epsilon(0.3));
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> lat(28.2, 32.2), lon(105.3, 110.2);
  double worst = 0;
  for (int i = 0; i < 2000; ++i) {
    const LatLon p{lat(rng), lon(rng)};
    worst = std::max(worst, distance_m(p, gcj02_to_wgs84(wgs84_to_gcj02(p))));
  }
  CHECK(worst < 0.01);  // metres
  CHECK(wgs84_to_gcj02({48.85, 2.35}) == LatLon{48.85, 2.35});
  CHECK(gcj02_to_wgs84({48.85, 2.35}) == LatLon{48.85, 2.35});
}

TEST_CASE("the 38 districts load, invalid ones repaired, the nine central ones urban") {
  std::vector<std::string> warnings;
  ZoneOptions o;
  o.gcj02 = true;
  Zones z = Zones::load(districts, o, &warnings);
  CHECK(z.size() == 38);
  int urban = 0;
  for (std::size_t i = 0; i < z.size(); ++i) urban += z.zone(i).urban;
  CHECK(urban == 9);
  CHECK(z.zone(*z.find("500103")).name == "渝中区");
  CHECK(z.zone(*z.find("渝中区")).urban);
  CHECK_FALSE(z.zone(*z.find("城口县")).urban);
  for (const auto& w : warnings) CHECK(w.find("invalid polygon repaired") != std::string::npos);
  MESSAGE(warnings.size() << " polygons repaired");
  // The municipality is about 82,400 km2.
  double area = 0;
  for (std::size_t i = 0; i < z.size(); ++i) area += z.zone(i).area_km2;
  CHECK(area == doctest::Approx(82400).epsilon(0.03));
}

TEST_CASE("locate: landmarks in WGS84 fall in their districts") {
  const Zones& z = chongqing();
  auto name_at = [&](LatLon p) {
    auto i = z.locate(p);
    return i ? z.zone(*i).name : std::string("-");
  };
  CHECK(name_at({29.5573, 106.5770}) == "渝中区");        // Jiefangbei
  CHECK(name_at({29.712254, 106.651895}) == "渝北区");    // Jiangbei airport (ZUCK)
  CHECK(name_at({30.8017, 108.433}) == "万州区");         // Wanzhou Wuqiao airport
  CHECK(name_at({29.356667, 106.010441}) == "永川区");    // Yongchuan Da'an airport
  CHECK(name_at({39.9, 116.4}) == "-");                  // Beijing
  CHECK(name_at({30.66, 104.06}) == "-");                // Chengdu
}

TEST_CASE("random points land inside their zone; locate agrees") {
  const Zones& z = chongqing();
  std::mt19937_64 rng(9);
  int agree = 0, total = 0;
  for (std::size_t i = 0; i < z.size(); ++i)
    for (int k = 0; k < 20; ++k) {
      const LatLon p = z.random_point(i, rng);
      ++total;
      if (z.locate(p) == i) ++agree;
    }
  // Neighbouring repaired polygons may overlap by slivers; nearly all agree.
  CHECK(agree >= total - 2);
}

TEST_CASE("the WGS84 GeoJSON for the console parses back with every zone") {
  auto doc = boost::json::parse(chongqing().to_geojson());
  const auto& f = doc.at("features").as_array();
  CHECK(f.size() == 38);
  CHECK(f[0].at("properties").at("name").is_string());
  CHECK(f[0].at("geometry").at("type").as_string().find("Polygon") != std::string::npos);
}

TEST_CASE("the demo places: bases, landing zones, trauma hospitals with helipads") {
  Places p = Places::load(places);
  CHECK(p.all().size() >= 20);
  const LatLon jfb{29.5573, 106.5770};
  const Place* h = p.nearest(jfb, PlaceKind::hospital, true, false);
  REQUIRE(h);
  CHECK(h->trauma);
  CHECK(distance_m(jfb, h->pos) < 5000);
  const Place* pad = p.nearest({31.9, 108.6}, PlaceKind::hospital, false, true);
  REQUIRE(pad);
  CHECK(pad->helipad);
  CHECK(p.nearest(jfb, PlaceKind::heli_base)->id == "ZUCK");
  CHECK(p.nearest({31.95, 108.67}, PlaceKind::landing_zone)->id == "LZ-CK");
  CHECK_THROWS_AS(Places::parse(R"({"type":"FeatureCollection","features":[{"type":"Feature",
      "properties":{"name":"x","kind":"spaceport"},"geometry":{"type":"Point","coordinates":[106,29]}}]})", "t"),
                  std::runtime_error);
  auto back = boost::json::parse(p.to_geojson());
  CHECK(back.at("features").as_array().size() == p.all().size());
}

TEST_CASE("the DataV boundaries from the shared data load too (GCJ-02, six invalid)") {
  const std::string datav = std::string(DISPATCH_SHARED_DIR) + "/data/chongqing/boundaries/datav_500000_full.json";
  if (!std::filesystem::exists(datav)) {
    MESSAGE("shared data not present; skipped");
    return;
  }
  std::vector<std::string> warnings;
  ZoneOptions o;
  o.gcj02 = true;
  Zones z = Zones::load(datav, o, &warnings);
  CHECK(z.size() == 38);
  CHECK(warnings.size() == 6);
  CHECK(z.zone(*z.locate({29.5573, 106.5770})).name == "渝中区");
}
