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
