#include "geo/places.hpp"

#include <boost/json.hpp>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace json = boost::json;

namespace dispatch::geo {

const char* place_kind_name(PlaceKind k) {
  switch (k) {
    case PlaceKind::heli_base: return "heli_base";
    case PlaceKind::landing_zone: return "landing_zone";
    case PlaceKind::hospital: return "hospital";
    case PlaceKind::station: return "station";
  }
  return "?";
}

namespace {
std::optional<PlaceKind> parse_kind(std::string_view s) {
  for (PlaceKind k : {PlaceKind::heli_base, PlaceKind::landing_zone, PlaceKind::hospital, PlaceKind::station})
    if (s == place_kind_name(k)) return k;
  return std::nullopt;
}

const json::value* member(const json::object& o, std::string_view key) { return o.if_contains(key); }

std::string string_member(const json::object& o, std::string_view key) {
  const json::value* v = member(o, key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
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
  std::size_t n = 0;
  for (const auto& f : feats->get_array()) {
    ++n;
    // Every error names the feature: its number (from 1), and its id and name when it has them.
    std::string label = "feature " + std::to_string(n);
    auto fail = [&](const std::string& why) { throw std::runtime_error(what + ": " + label + ": " + why); };
    const json::object* fo = f.if_object();
    if (!fo) fail("not a JSON object");
    const json::value* pr = member(*fo, "properties");
    if (!pr || !pr->is_object()) fail("no \"properties\" object");
    const auto& po = pr->get_object();
    Place p;
    p.id = string_member(po, "id");
    p.name = string_member(po, "name");
    if (p.id.empty()) p.id = p.name;
    if (!p.id.empty()) label += " (id '" + p.id + "'" + (p.name.empty() || p.name == p.id ? "" : ", name '" + p.name + "'") + ")";
    if (p.id.empty()) fail("neither \"id\" nor \"name\"");

    const json::value* g = member(*fo, "geometry");
    const json::object* go = g ? g->if_object() : nullptr;
    if (!go) fail("no geometry");
    const json::value* type = member(*go, "type");
    if (!type || !type->is_string() || type->get_string() != "Point") fail("geometry is not a Point");
    const json::value* c = member(*go, "coordinates");
    if (!c || !c->is_array() || c->get_array().size() < 2 || !c->get_array()[0].is_number() ||
        !c->get_array()[1].is_number())
      fail("a Point needs coordinates [lon, lat]");
    p.pos = {c->get_array()[1].to_number<double>(), c->get_array()[0].to_number<double>()};
    if (!valid(p.pos)) fail("coordinates outside WGS84 ranges (GeoJSON is [lon, lat])");

    const json::value* k = member(po, "kind");
    if (!k || !k->is_string() || k->get_string().empty())
      fail("no \"kind\" (heli_base, landing_zone, hospital or station)");
    const auto kind = parse_kind(k->get_string());
    if (!kind)
      fail("unknown kind '" + std::string(k->get_string()) +
           "' (expected heli_base, landing_zone, hospital or station)");
    p.kind = *kind;
    auto flag = [&](const char* key) {
      const json::value* v = member(po, key);
      if (v && !v->is_bool() && !v->is_null()) fail(std::string("\"") + key + "\" must be true or false");
      return v && v->is_bool() && v->get_bool();
    };
    p.trauma = flag("trauma");
    p.helipad = flag("helipad");
    p.illustrative = flag("illustrative");
    if (auto [it, fresh] = out.by_id_.emplace(p.id, out.places_.size()); !fresh)
      fail("id '" + p.id + "' already used by feature " + std::to_string(it->second + 1));
    out.places_.push_back(std::move(p));
  }
  return out;
}

const Place* Places::by_id(std::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &places_[it->second];
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

std::size_t Places::count(PlaceKind kind) const {
  std::size_t n = 0;
  for (const auto& pl : places_) n += pl.kind == kind;
  return n;
}

std::string Places::to_geojson() const {
  json::array feats;
  feats.reserve(places_.size());
  for (const auto& p : places_) {
    json::object props{{"id", p.id},          {"name", p.name},         {"kind", place_kind_name(p.kind)},
                       {"trauma", p.trauma}, {"helipad", p.helipad}};
    if (p.illustrative) props["illustrative"] = true;
    feats.push_back(json::object{
        {"type", "Feature"},
        {"properties", std::move(props)},
        {"geometry", json::object{{"type", "Point"}, {"coordinates", json::array{p.pos.lon, p.pos.lat}}}}});
  }
  return json::serialize(json::object{{"type", "FeatureCollection"}, {"features", std::move(feats)}});
}

}  // namespace dispatch::geo
