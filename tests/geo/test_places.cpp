// geo::Places: the kinds (stations among them), lookup by id, and errors that name the feature.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <string>

#include "geo/places.hpp"

using namespace dispatch::geo;
namespace json = boost::json;

namespace {
std::string collection(const std::string& features) {
  return R"({"type":"FeatureCollection","features":[)" + features + "]}";
}
std::string point(const std::string& props, double lon = 108.8, double lat = 31.4) {
  return R"({"type":"Feature","properties":)" + props + R"(,"geometry":{"type":"Point","coordinates":[)" +
         std::to_string(lon) + "," + std::to_string(lat) + "]}}";
}
// The message of the error parse throws, or "no exception".
std::string error_of(const std::string& text) {
  try {
    Places::parse(text, "places.geojson");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no exception";
}
}  // namespace

TEST_CASE("every kind parses; a station is found by its id; flags are read") {
  const Places p = Places::parse(
      collection(point(R"({"id":"ZUCK","name":"重庆江北国际机场","kind":"heli_base"})", 106.651895, 29.712254) + "," +
                 point(R"({"id":"LZ-wuxi-02","name":"巫溪县临时起降点02","kind":"landing_zone","illustrative":true})") + "," +
                 point(R"({"id":"H-wuxi","name":"巫溪县人民医院","kind":"hospital","trauma":true,"helipad":false,"illustrative":true})", 109.63, 31.40) + "," +
                 point(R"({"id":"ST-wuxi-01","name":"巫溪县01号劝导站","kind":"station","illustrative":true})", 109.5, 31.5)),
      "t");
  REQUIRE(p.all().size() == 4);
  CHECK(p.count(PlaceKind::station) == 1);
  CHECK(p.count(PlaceKind::heli_base) == 1);
  const Place* st = p.by_id("ST-wuxi-01");
  REQUIRE(st);
  CHECK(st->kind == PlaceKind::station);
  CHECK(st->name == "巫溪县01号劝导站");
  CHECK(st->pos == LatLon{31.5, 109.5});
  CHECK(st->illustrative);
  CHECK(p.by_id("ZUCK")->kind == PlaceKind::heli_base);
  CHECK_FALSE(p.by_id("ZUCK")->illustrative);
  CHECK(p.by_id("H-wuxi")->trauma);
  CHECK_FALSE(p.by_id("H-wuxi")->helipad);
  CHECK(p.by_id("ST-wuxi-02") == nullptr);
  CHECK(p.by_id("st-wuxi-01") == nullptr);  // ids are exact
  CHECK(p.by_id("") == nullptr);
  // nearest() knows stations too, and never returns another kind.
  CHECK(p.nearest({31.4, 108.8}, PlaceKind::station)->id == "ST-wuxi-01");
  CHECK(p.nearest({31.5, 109.5}, PlaceKind::landing_zone)->id == "LZ-wuxi-02");
  // A copy answers by id from its own places.
  const Places copy = p;
  CHECK(copy.by_id("ST-wuxi-01") == &copy.all()[3]);

  // The console's GeoJSON keeps kind, flags and illustrative, and parses back the same.
  const json::value back = json::parse(p.to_geojson());
  const auto& f = back.at("features").as_array();
  CHECK(f[3].at("properties").at("kind").as_string() == "station");
  CHECK(f[3].at("properties").at("illustrative").as_bool());
  CHECK(f[0].at("properties").if_object()->if_contains("illustrative") == nullptr);
  const Places again = Places::parse(p.to_geojson(), "round trip");
  REQUIRE(again.all().size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(again.all()[i].id == p.all()[i].id);
    CHECK(again.all()[i].kind == p.all()[i].kind);
    CHECK(again.all()[i].illustrative == p.all()[i].illustrative);
    CHECK(again.all()[i].trauma == p.all()[i].trauma);
    CHECK(again.all()[i].pos == p.all()[i].pos);
  }
  for (PlaceKind k : {PlaceKind::heli_base, PlaceKind::landing_zone, PlaceKind::hospital, PlaceKind::station})
    CHECK(std::string(place_kind_name(k)) != "?");
}

TEST_CASE("a place without an id is known by its name") {
  const Places p = Places::parse(collection(point(R"({"name":"奥体中心停机坪","kind":"landing_zone"})")), "t");
  REQUIRE(p.by_id("奥体中心停机坪"));
  CHECK(p.by_id("奥体中心停机坪")->kind == PlaceKind::landing_zone);
}

TEST_CASE("bad places are refused with the file, the feature and the reason") {
  const std::string ok = point(R"({"id":"LZ-1","name":"one","kind":"landing_zone"})");
  // An unknown kind names the feature by number, id and name, and the kinds that exist.
  std::string e = error_of(collection(ok + "," + point(R"({"id":"X-9","name":"火箭发射场","kind":"spaceport"})")));
  CHECK(e.find("places.geojson") == 0);
  CHECK(e.find("feature 2 (id 'X-9', name '火箭发射场')") != std::string::npos);
  CHECK(e.find("unknown kind 'spaceport'") != std::string::npos);
  CHECK(e.find("station") != std::string::npos);
  // Kinds are exact: no case folding, no plural.
  CHECK(error_of(collection(point(R"({"id":"S","kind":"Station"})"))).find("unknown kind 'Station'") != std::string::npos);
  CHECK(error_of(collection(point(R"({"id":"S","kind":"stations"})"))).find("unknown kind") != std::string::npos);
  e = error_of(collection(point(R"({"id":"ST-a-01","name":"a"})")));
  CHECK(e.find("feature 1 (id 'ST-a-01', name 'a'): no \"kind\"") != std::string::npos);
  CHECK(error_of(collection(point(R"({"id":"S","kind":7})"))).find("no \"kind\"") != std::string::npos);
  // A second place with the same id would make by_id ambiguous.
  e = error_of(collection(ok + "," + point(R"({"id":"LZ-1","name":"two","kind":"station"})")));
  CHECK(e.find("feature 2 (id 'LZ-1', name 'two'): id 'LZ-1' already used by feature 1") != std::string::npos);
  // Geometry: a Point with [lon, lat] in range.
  CHECK(error_of(collection(R"({"type":"Feature","properties":{"id":"P","kind":"hospital"},"geometry":{"type":"Polygon","coordinates":[]}})"))
            .find("feature 1 (id 'P'): geometry is not a Point") != std::string::npos);
  CHECK(error_of(collection(R"({"type":"Feature","properties":{"id":"P","kind":"hospital"},"geometry":null})"))
            .find("no geometry") != std::string::npos);
  CHECK(error_of(collection(R"({"type":"Feature","properties":{"id":"P","kind":"hospital"},"geometry":{"type":"Point","coordinates":[106]}})"))
            .find("coordinates [lon, lat]") != std::string::npos);
  CHECK(error_of(collection(R"({"type":"Feature","properties":{"id":"P","kind":"hospital"},"geometry":{"type":"Point","coordinates":["106","29"]}})"))
            .find("coordinates [lon, lat]") != std::string::npos);
  CHECK(error_of(collection(point(R"({"id":"P","kind":"hospital"})", 29.5, 206.5))).find("outside WGS84") != std::string::npos);
  CHECK(error_of(collection(point(R"({"id":"P","kind":"hospital","trauma":"yes"})"))).find("\"trauma\" must be true or false") != std::string::npos);
  CHECK(error_of(collection(point(R"({"kind":"hospital"})"))).find("feature 1: neither \"id\" nor \"name\"") != std::string::npos);
  CHECK(error_of(collection(R"({"type":"Feature","geometry":{"type":"Point","coordinates":[106,29]}})"))
            .find("feature 1: no \"properties\" object") != std::string::npos);
  CHECK(error_of(collection("42")).find("feature 1: not a JSON object") != std::string::npos);
  CHECK(error_of("[1,2]").find("expected a GeoJSON FeatureCollection") != std::string::npos);
  CHECK(error_of("{\"type\":").find("invalid JSON") != std::string::npos);
  CHECK_THROWS_WITH_AS(Places::load("/nonexistent/places.geojson"), "cannot read places file /nonexistent/places.geojson",
                       std::runtime_error);
  // An empty collection is no error: nothing to find.
  const Places none = Places::parse(collection(""), "t");
  CHECK(none.all().empty());
  CHECK(none.by_id("LZ-1") == nullptr);
  CHECK(none.nearest({29.5, 106.5}, PlaceKind::station) == nullptr);
}

// ---------------------------------------------------------------- the demo set
// assets/places/chongqing-demo.geojson (scripts/make-demo-places.py) against the real
// district outlines (GCJ-02, converted at load), the OurAirports rows it cites, and the
// demo fleet.

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "geo/zones.hpp"

namespace {
const std::string demo_places = std::string(DISPATCH_SOURCE_DIR) + "/assets/places/chongqing-demo.geojson";
const std::string airports_csv = std::string(DISPATCH_SOURCE_DIR) + "/assets/places/ourairports-cn50.csv";
const std::string districts_file = std::string(DISPATCH_SOURCE_DIR) + "/assets/geo/chongqing_districts_gcj02.geojson";
const std::string demo_fleet = std::string(DISPATCH_SOURCE_DIR) + "/config/demo-fleet.json";

const Zones& chongqing() {
  static Zones z = [] {
    ZoneOptions o;
    o.gcj02 = true;
    return Zones::load(districts_file, o);
  }();
  return z;
}
const Places& demo() {
  static Places p = Places::load(demo_places);
  return p;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One CSV record (RFC 4180 quoting; no newlines inside fields in this file).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else out.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

double nearest_lz_km(LatLon p) {
  const Place* lz = demo().nearest(p, PlaceKind::landing_zone);
  REQUIRE(lz);
  return distance_m(p, lz->pos) / 1000;
}
}  // namespace

TEST_CASE("demo places: every place in Chongqing; real airfields; everything else illustrative") {
  const Places& p = demo();
  const Zones& z = chongqing();
  std::set<std::string> ids;
  for (const auto& pl : p.all()) {
    CHECK(ids.insert(pl.id).second);
    CHECK_MESSAGE(z.locate(pl.pos).has_value(), pl.id << " lies outside Chongqing");
    CHECK_MESSAGE(pl.illustrative == (pl.kind != PlaceKind::heli_base), pl.id);
    CHECK(p.by_id(pl.id) == &pl);
  }
  // The helicopter bases are OurAirports' Chongqing rows, at their coordinates, all but the
  // two military air bases.
  std::istringstream csv(slurp(airports_csv));
  std::string line;
  std::getline(csv, line);
  const auto head = csv_fields(line);
  auto col = [&](const char* name) {
    return static_cast<std::size_t>(std::find(head.begin(), head.end(), name) - head.begin());
  };
  std::set<std::string> airfields;
  while (std::getline(csv, line)) {
    const auto f = csv_fields(line);
    REQUIRE(f.size() == head.size());
    CHECK(f[col("iso_region")] == "CN-50");
    const std::string ident = f[col("ident")];
    const Place* base = p.by_id(ident);
    if (f[col("name")].find("Air Base") != std::string::npos) {
      CHECK_MESSAGE(base == nullptr, ident);
      continue;
    }
    airfields.insert(ident);
    REQUIRE_MESSAGE(base, ident);
    CHECK(base->kind == PlaceKind::heli_base);
    CHECK(distance_m(base->pos, {std::stod(f[col("latitude_deg")]), std::stod(f[col("longitude_deg")])}) < 0.2);
  }
  CHECK(airfields.size() == 8);
  CHECK(p.count(PlaceKind::heli_base) == airfields.size());
  CHECK(airfields.count("ZUCK"));
  CHECK(airfields.count("ZUWX"));
  // The raw file says where each illustrative place is, and it agrees with the outlines.
  const auto doc = json::parse(slurp(demo_places));
  CHECK(doc.at("illustrative").as_bool());
  for (const auto& f : doc.at("features").as_array()) {
    const auto& pr = f.at("properties").as_object();
    if (!pr.if_contains("district")) continue;
    const Place* pl = p.by_id(std::string(pr.at("id").as_string()));
    REQUIRE(pl);
    CHECK_MESSAGE(z.zone(*z.locate(pl->pos)).name == pr.at("district").as_string(), pl->id);
  }
}

TEST_CASE("demo places: each of the 38 districts holds a landing zone and a hospital") {
  const Zones& z = chongqing();
  REQUIRE(z.size() == 38);
  std::vector<int> lzs(z.size()), hospitals(z.size()), trauma(z.size());
  for (const auto& pl : demo().all()) {
    const auto i = z.locate(pl.pos);
    REQUIRE(i);
    lzs[*i] += pl.kind == PlaceKind::landing_zone;
    hospitals[*i] += pl.kind == PlaceKind::hospital;
    trauma[*i] += pl.kind == PlaceKind::hospital && pl.trauma;
  }
  for (std::size_t i = 0; i < z.size(); ++i) {
    CHECK_MESSAGE(lzs[i] >= 1, z.zone(i).name << " has no landing zone");
    CHECK_MESSAGE(hospitals[i] >= 1, z.zone(i).name << " has no hospital");
  }
  // The central trauma centres can take a helicopter; so can the two regional ones.
  for (const char* id : {"H-XN", "H-CQMU1", "H-EMC", "H-SX", "H-FL"}) {
    const Place* h = demo().by_id(id);
    REQUIRE_MESSAGE(h, id);
    CHECK(h->kind == PlaceKind::hospital);
    CHECK(h->trauma);
    CHECK(h->helipad);
  }
  int trauma_districts = 0;
  for (int n : trauma) trauma_districts += n > 0;
  MESSAGE("landing zones " << demo().count(PlaceKind::landing_zone) << ", hospitals "
                           << demo().count(PlaceKind::hospital) << " (trauma centres in " << trauma_districts
                           << " districts), stations " << demo().count(PlaceKind::station));
  CHECK(trauma_districts >= 10);
  // A trauma centre within 100 km of the county seats farthest out (城口, 巫山, 秀山)...
  for (const LatLon seat : {LatLon{31.947, 108.664}, LatLon{31.075, 109.879}, LatLon{28.448, 108.996}}) {
    const Place* h = demo().nearest(seat, PlaceKind::hospital, true);
    REQUIRE(h);
    CHECK(distance_m(seat, h->pos) < 100'000);
  }
  // ...but not the county hospital of 城口 itself, which is the nearest hospital there.
  CHECK(demo().nearest({31.9, 108.6}, PlaceKind::hospital)->id == "H-CK");
  CHECK(demo().nearest({31.9, 108.6}, PlaceKind::hospital, true)->id != "H-CK");
  CHECK(demo().nearest({31.95, 108.67}, PlaceKind::landing_zone)->id == "LZ-CK");
  const LatLon jfb{29.5573, 106.5770};
  const Place* h = demo().nearest(jfb, PlaceKind::hospital, true);
  REQUIRE(h);
  CHECK(distance_m(jfb, h->pos) < 5000);
  CHECK(demo().nearest(jfb, PlaceKind::heli_base)->id == "ZUCK");
  CHECK(demo().nearest({29.36, 105.95}, PlaceKind::heli_base)->id == "YGA");
}

TEST_CASE("demo places: how much of Chongqing has a landing zone within 10 km") {
  // Sample points across every district: a 0.025 degree grid (not the generator's) and
  // 200 uniformly random points per district. Where no landing zone lies within 10 km
  // (--lz-max-km), the helicopter flies to the scene itself (contract section 7).
  const Zones& z = chongqing();
  std::vector<int> total(z.size()), near(z.size());
  double worst = 0;
  LatLon worst_at;
  auto sample = [&](std::size_t i, LatLon p) {
    const double km = nearest_lz_km(p);
    ++total[i];
    near[i] += km <= 10;
    if (km > worst) worst = km, worst_at = p;
  };
  for (double lat = 28.0125; lat < 32.3; lat += 0.025)
    for (double lon = 105.0125; lon < 110.3; lon += 0.025)
      if (const auto i = z.locate({lat, lon})) sample(*i, {lat, lon});
  std::mt19937_64 rng(38);
  for (std::size_t i = 0; i < z.size(); ++i)
    for (int k = 0; k < 200; ++k) sample(i, z.random_point(i, rng));
  int all = 0, all_near = 0, rural = 0, rural_near = 0;
  double lowest = 1;
  std::string lowest_name;
  for (std::size_t i = 0; i < z.size(); ++i) {
    all += total[i];
    all_near += near[i];
    if (!z.zone(i).urban) rural += total[i], rural_near += near[i];
    const double share = static_cast<double>(near[i]) / total[i];
    CHECK_MESSAGE(share >= 0.85, z.zone(i).name << ": " << share);
    if (share < lowest) lowest = share, lowest_name = z.zone(i).name;
  }
  const double share = static_cast<double>(all_near) / all;
  char line[300];
  std::snprintf(line, sizeof line,
                "a landing zone within 10 km of %.1f%% of %d sample points (rural districts %.1f%%); "
                "lowest district %s %.1f%%; farthest point %.1f km from one (%.4f, %.4f)",
                100 * share, all, 100.0 * rural_near / rural, lowest_name.c_str(), 100 * lowest, worst,
                worst_at.lat, worst_at.lon);
  MESSAGE(line);
  CHECK(share >= 0.94);
  CHECK(worst < 20);  // nowhere is a landing zone far: the few scenes beyond 10 km get the helicopter itself
  // Issue 12's example: a critical accident in 巫溪县 once had its landing zone 100 km away.
  CHECK(nearest_lz_km({31.45, 109.55}) <= 10);
}

TEST_CASE("demo places: rural stations, found by id, only outside the nine central districts") {
  const Zones& z = chongqing();
  const std::regex id_form("ST-[a-z]+-[0-9]{2}");
  std::map<std::string, int> per_district;
  for (const auto& pl : demo().all()) {
    if (pl.kind != PlaceKind::station) continue;
    CHECK_MESSAGE(std::regex_match(pl.id, id_form), pl.id);
    CHECK_MESSAGE(pl.name.size() > 9, pl.id);
    CHECK_MESSAGE(pl.name.ends_with("劝导站"), pl.id);
    const auto i = z.locate(pl.pos);
    REQUIRE(i);
    CHECK_MESSAGE(!z.zone(*i).urban, pl.id << " is in " << z.zone(*i).name);
    ++per_district[z.zone(*i).name];
    CHECK(demo().by_id(pl.id) == &pl);
  }
  const std::size_t n = demo().count(PlaceKind::station);
  CHECK(n >= 60);
  CHECK(n <= 120);
  // Every one of the 29 outer districts and counties has at least two.
  int rural = 0;
  for (std::size_t i = 0; i < z.size(); ++i)
    if (!z.zone(i).urban) {
      ++rural;
      CHECK_MESSAGE(per_district[z.zone(i).name] >= 2, z.zone(i).name);
    }
  CHECK(rural == 29);
  CHECK(per_district.size() == 29);
  const Place* wuxi = demo().by_id("ST-wuxi-01");
  REQUIRE(wuxi);
  CHECK(z.zone(*z.locate(wuxi->pos)).name == "巫溪县");
}

TEST_CASE("the demo fleet: helicopters at the real airfields, the units the tests name kept") {
  const auto doc = json::parse(slurp(demo_fleet));
  std::set<std::string> ids, bases;
  int helis = 0;
  for (const auto& u : doc.at("units").as_array()) {
    const std::string id(u.at("id").as_string());
    CHECK(ids.insert(id).second);
    if (u.at("kind").as_string() != "heli") continue;
    ++helis;
    const auto& b = u.at("base").as_object();
    const LatLon base{b.at("lat").to_number<double>(), b.at("lon").to_number<double>()};
    const Place* at = demo().nearest(base, PlaceKind::heli_base);
    REQUIRE(at);
    CHECK_MESSAGE(distance_m(base, at->pos) < 1, id << " is not at an airfield");
    CHECK(u.at("base_place").as_string() == at->id);
    bases.insert(at->id);
  }
  CHECK(helis >= 4);
  CHECK(bases.size() >= 4);  // spread over the municipality, not all at Jiangbei
  CHECK(ids.count("H1"));
  CHECK(bases.count("ZUCK"));
  for (const char* id : {"C0001", "C0030", "M0001"}) CHECK(ids.count(id));
}
