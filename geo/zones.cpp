#include "geo/zones.hpp"

#include <geos_c.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "geo/gcj02.hpp"

namespace json = boost::json;

namespace dispatch::geo {

namespace {

const char* const default_urban[] = {"500103", "500105", "500108", "500107", "500106",
                                     "500104", "500109", "500112", "500113"};

void geos_message(const char* fmt, ...) {
  (void)fmt;  // GEOS notices are not ours to print; errors surface as null results
}

int to_wgs84(double* x, double* y, void*) {
  const LatLon w = gcj02_to_wgs84({*y, *x});
  *x = w.lon;
  *y = w.lat;
  return 1;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string prop(const json::object& props, std::string_view k) {
  const json::value* v = props.if_contains(k);
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return {};
}

}  // namespace

struct Zones::Impl {
  GEOSContextHandle_t ctx = nullptr;
  std::vector<Zone> zones;
  std::vector<GEOSGeometry*> geoms;
  std::vector<const GEOSPreparedGeometry*> prepared;
  GEOSSTRtree* tree = nullptr;
  std::vector<GEOSGeometry*> envelopes;

  Impl() {
    ctx = GEOS_init_r();
    GEOSContext_setNoticeHandler_r(ctx, geos_message);
    GEOSContext_setErrorHandler_r(ctx, geos_message);
  }
  ~Impl() {
    if (tree) GEOSSTRtree_destroy_r(ctx, tree);
    for (auto* p : prepared) GEOSPreparedGeom_destroy_r(ctx, p);
    for (auto* g : geoms) GEOSGeom_destroy_r(ctx, g);
    for (auto* e : envelopes) GEOSGeom_destroy_r(ctx, e);
    GEOS_finish_r(ctx);
  }

  bool contains(std::size_t i, LatLon p) const {
    GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(ctx, p.lon, p.lat);
    const char r = GEOSPreparedIntersects_r(ctx, prepared[i], pt);
    GEOSGeom_destroy_r(ctx, pt);
    return r == 1;
  }
};

Zones::Zones() : impl_(std::make_unique<Impl>()) {}
Zones::~Zones() = default;
Zones::Zones(Zones&&) noexcept = default;
Zones& Zones::operator=(Zones&&) noexcept = default;

Zones Zones::load(const std::string& path, const ZoneOptions& options, std::vector<std::string>* warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read zones file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value doc = json::parse(ss.str(), ec);
  if (ec) throw std::runtime_error(path + ": invalid JSON: " + ec.message());
  if (!doc.is_object() || !doc.get_object().if_contains("features") ||
      !doc.get_object().at("features").is_array())
    throw std::runtime_error(path + ": expected a GeoJSON FeatureCollection");
  bool gcj = options.gcj02;
  if (const json::value* crs = doc.get_object().if_contains("crs"); crs && crs->is_string())
    gcj = gcj || lower(std::string(crs->get_string())) == "gcj02";

  Zones out;
  Impl& m = *out.impl_;
  GEOSGeoJSONReader* reader = GEOSGeoJSONReader_create_r(m.ctx);
  std::vector<std::string> urban = options.urban;
  if (urban.empty()) urban.assign(std::begin(default_urban), std::end(default_urban));

  for (const auto& f : doc.get_object().at("features").get_array()) {
    if (!f.is_object()) continue;
    const auto& fo = f.get_object();
    const json::value* geom = fo.if_contains("geometry");
    if (!geom || !geom->is_object()) continue;
    json::object props;
    if (const json::value* p = fo.if_contains("properties"); p && p->is_object()) props = p->get_object();
    Zone z;
    z.name = prop(props, "name");
    z.code = prop(props, "adcode");
    if (z.code.empty()) z.code = prop(props, "code");
    bool feature_gcj = gcj || lower(prop(props, "crs")) == "gcj02";
    GEOSGeometry* g = GEOSGeoJSONReader_readGeometry_r(m.ctx, reader, json::serialize(*geom).c_str());
    if (!g) {
      GEOSGeoJSONReader_destroy_r(m.ctx, reader);
      throw std::runtime_error(path + ": zone " + z.name + " has an unreadable geometry");
    }
    const int type = GEOSGeomTypeId_r(m.ctx, g);
    if (type != GEOS_POLYGON && type != GEOS_MULTIPOLYGON) {
      GEOSGeom_destroy_r(m.ctx, g);
      continue;
    }
    if (feature_gcj) {
      GEOSGeometry* t = GEOSGeom_transformXY_r(m.ctx, g, to_wgs84, nullptr);
      GEOSGeom_destroy_r(m.ctx, g);
      g = t;
    }
    if (GEOSisValid_r(m.ctx, g) != 1) {
      char* reason = GEOSisValidReason_r(m.ctx, g);
      if (warnings)
        warnings->push_back("zone " + z.name + " (" + z.code + "): invalid polygon repaired: " +
                            (reason ? reason : "?"));
      if (reason) GEOSFree_r(m.ctx, reason);
      GEOSGeometry* fixed = GEOSMakeValid_r(m.ctx, g);
      GEOSGeom_destroy_r(m.ctx, g);
      g = fixed;
    }
    z.urban = std::find(urban.begin(), urban.end(), z.name) != urban.end() ||
              std::find(urban.begin(), urban.end(), z.code) != urban.end();
    if (GEOSGeometry* c = GEOSGetCentroid_r(m.ctx, g)) {
      double x = 0, y = 0;
      GEOSGeomGetX_r(m.ctx, c, &x);
      GEOSGeomGetY_r(m.ctx, c, &y);
      z.centroid = {y, x};
      GEOSGeom_destroy_r(m.ctx, c);
    }
    double area_deg2 = 0;
    GEOSArea_r(m.ctx, g, &area_deg2);
    const double km_per_deg = earth_radius_m * std::numbers::pi / 180 / 1000;
    z.area_km2 = area_deg2 * km_per_deg * km_per_deg * std::cos(deg2rad(z.centroid.lat));
    GEOSGeom_getXMin_r(m.ctx, g, &z.min_lon);
    GEOSGeom_getXMax_r(m.ctx, g, &z.max_lon);
    GEOSGeom_getYMin_r(m.ctx, g, &z.min_lat);
    GEOSGeom_getYMax_r(m.ctx, g, &z.max_lat);
    m.zones.push_back(std::move(z));
    m.geoms.push_back(g);
    m.prepared.push_back(GEOSPrepare_r(m.ctx, g));
  }
  GEOSGeoJSONReader_destroy_r(m.ctx, reader);
  if (m.zones.empty()) throw std::runtime_error(path + ": no polygon zones in the file");

  m.tree = GEOSSTRtree_create_r(m.ctx, 10);
  for (std::size_t i = 0; i < m.geoms.size(); ++i) {
    GEOSGeometry* env = GEOSEnvelope_r(m.ctx, m.geoms[i]);
    m.envelopes.push_back(env);
    // The item is the zone's index, carried in the pointer.
    GEOSSTRtree_insert_r(m.ctx, m.tree, env, reinterpret_cast<void*>(i + 1));
  }
  return out;
}

std::size_t Zones::size() const { return impl_->zones.size(); }
const Zone& Zones::zone(std::size_t i) const { return impl_->zones.at(i); }

std::optional<std::size_t> Zones::find(std::string_view key) const {
  for (std::size_t i = 0; i < impl_->zones.size(); ++i)
    if (impl_->zones[i].name == key || impl_->zones[i].code == key) return i;
  return std::nullopt;
}

std::optional<std::size_t> Zones::locate(LatLon p) const {
  auto& m = *impl_;
  if (!m.tree) return std::nullopt;
  struct Hits {
    std::size_t ids[16];
    std::size_t n = 0;
  } hits;
  GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(m.ctx, p.lon, p.lat);
  GEOSSTRtree_query_r(
      m.ctx, m.tree, pt,
      [](void* item, void* user) {
        auto* h = static_cast<Hits*>(user);
        if (h->n < 16) h->ids[h->n++] = reinterpret_cast<std::size_t>(item) - 1;
      },
      &hits);
  std::optional<std::size_t> found;
  // Lowest index wins on a shared border, so the answer does not depend on the tree.
  std::sort(hits.ids, hits.ids + hits.n);
  for (std::size_t k = 0; k < hits.n && !found; ++k)
    if (GEOSPreparedIntersects_r(m.ctx, m.prepared[hits.ids[k]], pt) == 1) found = hits.ids[k];
  GEOSGeom_destroy_r(m.ctx, pt);
  return found;
}

LatLon Zones::random_point(std::size_t i, std::mt19937_64& rng) const {
  const Zone& z = impl_->zones.at(i);
  std::uniform_real_distribution<double> lat(z.min_lat, z.max_lat), lon(z.min_lon, z.max_lon);
  for (int tries = 0; tries < 10000; ++tries) {
    const LatLon p{lat(rng), lon(rng)};
    if (impl_->contains(i, p)) return p;
  }
  return z.centroid;
}

std::string Zones::to_geojson() const {
  auto& m = *impl_;
  GEOSGeoJSONWriter* writer = GEOSGeoJSONWriter_create_r(m.ctx);
  std::string out = R"({"type":"FeatureCollection","features":[)";
  for (std::size_t i = 0; i < m.zones.size(); ++i) {
    GEOSGeometry* simple = GEOSTopologyPreserveSimplify_r(m.ctx, m.geoms[i], 0.0002);
    GEOSSetSRID_r(m.ctx, simple ? simple : m.geoms[i], 0);
    char* g = GEOSGeoJSONWriter_writeGeometry_r(m.ctx, writer, simple ? simple : m.geoms[i], -1);
    if (i) out += ',';
    json::object props{{"name", m.zones[i].name}, {"code", m.zones[i].code}, {"urban", m.zones[i].urban}};
    out += R"({"type":"Feature","properties":)" + json::serialize(props) + R"(,"geometry":)";
    out += g ? g : "null";
    out += '}';
    if (g) GEOSFree_r(m.ctx, g);
    if (simple) GEOSGeom_destroy_r(m.ctx, simple);
  }
  out += "]}";
  GEOSGeoJSONWriter_destroy_r(m.ctx, writer);
  return out;
}

}  // namespace dispatch::geo
