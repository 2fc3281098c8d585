#include "geo/places.hpp"

#include <boost/json.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace json = boost::json;

namespace dispatch::geo {

namespace {
const char* kind_name(PlaceKind k) {
  switch (k) {
    case PlaceKind::heli_base: return "heli_base";
    case PlaceKind::landing_zone: return "landing_zone";
    case PlaceKind::hospital: return "hospital";
    case PlaceKind::station: return "station";
  }
  return "?";
}
}  // namespace

Places Places::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read places file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

Places Places::parse(const std::string& text, const std::string& what) {
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec) throw std::runtime_error(what + ": invalid JSON: " + ec.message());
  const json::value* feats = doc.is_object() ? doc.get_object().if_contains("features") : nullptr;
  if (!feats || !feats->is_array()) throw std::runtime_error(what + ": expected a GeoJSON FeatureCollection");
  Places out;
  for (const auto& f : feats->get_array()) {
    const json::object* fo = f.if_object();
    if (!fo) continue;
    const json::value* g = fo->if_contains("geometry");
    const json::value* pr = fo->if_contains("properties");
    if (!g || !g->is_object() || !pr || !pr->is_object()) continue;
    const auto& go = g->get_object();
    if (!go.if_contains("type") || go.at("type") != "Point") continue;
    const auto& c = go.at("coordinates");
    if (!c.is_array() || c.get_array().size() < 2) throw std::runtime_error(what + ": a point without coordinates");
    const auto& po = pr->get_object();
    Place p;
    p.pos = {c.get_array()[1].to_number<double>(), c.get_array()[0].to_number<double>()};
    if (!valid(p.pos)) throw std::runtime_error(what + ": a point outside WGS84 ranges");
    auto str = [&](const char* k) {
      const json::value* v = po.if_contains(k);
      return v && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    auto flag = [&](const char* k) {
      const json::value* v = po.if_contains(k);
      return v && v->is_bool() && v->get_bool();
    };
    p.id = str("id");
    p.name = str("name");
    const std::string kind = str("kind");
    if (kind == "heli_base") p.kind = PlaceKind::heli_base;
    else if (kind == "landing_zone") p.kind = PlaceKind::landing_zone;
    else if (kind == "hospital") p.kind = PlaceKind::hospital;
    else if (kind == "station") p.kind = PlaceKind::station;  // rural traffic-safety station
    else throw std::runtime_error(what + ": place '" + p.name + "' has an unknown kind '" + kind + "'");
    p.trauma = flag("trauma");
    p.helipad = flag("helipad");
    if (p.id.empty()) p.id = p.name;
    out.places_.push_back(std::move(p));
  }
  return out;
}

const Place* Places::nearest(LatLon p, PlaceKind kind, bool need_trauma, bool need_helipad) const {
  const Place* best = nullptr;
  double best_d = 0;
  for (const auto& pl : places_) {
    if (pl.kind != kind || (need_trauma && !pl.trauma) || (need_helipad && !pl.helipad)) continue;
    const double d = distance_m(p, pl.pos);
    if (!best || d < best_d) {
      best = &pl;
      best_d = d;
    }
  }
  return best;
}

std::string Places::to_geojson() const {
  json::array feats;
  for (const auto& p : places_) {
    feats.push_back(json::object{
        {"type", "Feature"},
        {"properties", json::object{{"id", p.id}, {"name", p.name}, {"kind", kind_name(p.kind)},
                                    {"trauma", p.trauma}, {"helipad", p.helipad}}},
        {"geometry", json::object{{"type", "Point"}, {"coordinates", json::array{p.pos.lon, p.pos.lat}}}}});
  }
  return json::serialize(json::object{{"type", "FeatureCollection"}, {"features", std::move(feats)}});
}

}  // namespace dispatch::geo
