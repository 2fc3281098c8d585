#include "geo/zones.hpp"

#include <geos_c.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "geo/gcj02.hpp"

namespace json = boost::json;

namespace dispatch::geo {

namespace {

// Chongqing's nine central districts (主城九区): 渝中, 江北, 南岸, 九龙坡, 沙坪坝, 大渡口,
// 北碚, 渝北, 巴南.
constexpr const char* default_urban[] = {"500103", "500105", "500108", "500107", "500106",
                                         "500104", "500109", "500112", "500113"};

// Outlines for the console are simplified to this many degrees (about 20 m): the full
// boundary files are megabytes, and the map never shows them closer than that.
constexpr double console_tolerance_deg = 0.0002;

void keep_message(const char* message, void* userdata) {
  *static_cast<std::string*>(userdata) = message ? message : "";
}
void ignore_message(const char*, void*) {}

int to_wgs84(double* x, double* y, void*) {
  const LatLon w = gcj02_to_wgs84({*y, *x});
  *x = w.lon;
  *y = w.lat;
  return 1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string prop(const json::object& props, std::string_view k) {
  const json::value* v = props.if_contains(k);
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return {};
}

// "crs": "gcj02", or the GeoJSON 2008 form {"type":"name","properties":{"name":"gcj02"}}.
bool says_gcj02(const json::value* crs) {
  if (!crs) return false;
  if (crs->is_string()) return lower(crs->get_string()) == "gcj02";
  if (const json::object* o = crs->if_object())
    if (const json::value* p = o->if_contains("properties"); p && p->is_object())
      if (const json::value* n = p->get_object().if_contains("name"); n && n->is_string())
        return lower(n->get_string()) == "gcj02";
  return false;
}

void append_number(std::string& out, double v, int decimals) {
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  if (n <= 0 || n >= static_cast<int>(sizeof buf)) {
    out += '0';
    return;
  }
  if (decimals > 0) {
    while (buf[n - 1] == '0') --n;
    if (buf[n - 1] == '.') --n;
  }
  const std::string_view s(buf, static_cast<std::size_t>(n));
  out += s == "-0" ? "0" : s;
}

// One ring as a GeoJSON position array, dropping points that rounding made repeat. A ring
// left with fewer than four positions is degenerate at this precision and is skipped.
bool append_ring(GEOSContextHandle_t ctx, const GEOSGeometry* ring, int decimals, std::string& out) {
  const GEOSCoordSequence* seq = GEOSGeom_getCoordSeq_r(ctx, ring);
  unsigned int n = 0;
  if (!seq || !GEOSCoordSeq_getSize_r(ctx, seq, &n)) return false;
  std::string text = "[", prev, pos;
  unsigned int kept = 0;
  for (unsigned int i = 0; i < n; ++i) {
    double x = 0, y = 0;
    GEOSCoordSeq_getXY_r(ctx, seq, i, &x, &y);
    pos = "[";
    append_number(pos, x, decimals);
    pos += ',';
    append_number(pos, y, decimals);
    pos += ']';
    if (pos == prev) continue;
    if (kept++) text += ',';
    text += pos;
    prev = std::move(pos);
  }
  if (kept < 4) return false;
  out += text;
  out += ']';
  return true;
}

bool append_polygon(GEOSContextHandle_t ctx, const GEOSGeometry* poly, int decimals, std::string& out) {
  std::string text = "[";
  if (!append_ring(ctx, GEOSGetExteriorRing_r(ctx, poly), decimals, text)) return false;
  const int holes = GEOSGetNumInteriorRings_r(ctx, poly);
  for (int k = 0; k < holes; ++k) {
    std::string hole = ",";
    if (append_ring(ctx, GEOSGetInteriorRingN_r(ctx, poly, k), decimals, hole)) text += hole;
  }
  out += text;
  out += ']';
  return true;
}

}  // namespace

struct Zones::Impl {
  GEOSContextHandle_t ctx = nullptr;
  std::string last_error;  // GEOS's last error message, for exceptions at load
  std::vector<Zone> zones;
  std::vector<GEOSGeometry*> geoms;
  std::vector<const GEOSPreparedGeometry*> prepared;
  GEOSSTRtree* tree = nullptr;
  std::vector<std::size_t> hits;  // scratch for locate(), which is single-threaded anyway

  Impl() {
    ctx = GEOS_init_r();
    GEOSContext_setNoticeMessageHandler_r(ctx, ignore_message, nullptr);
    GEOSContext_setErrorMessageHandler_r(ctx, keep_message, &last_error);
  }
  ~Impl() {
    if (tree) GEOSSTRtree_destroy_r(ctx, tree);
    for (auto* p : prepared) GEOSPreparedGeom_destroy_r(ctx, p);
    for (auto* g : geoms) GEOSGeom_destroy_r(ctx, g);
    GEOS_finish_r(ctx);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  bool contains(std::size_t i, LatLon p) const {
    GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(ctx, p.lon, p.lat);
    const char r = GEOSPreparedIntersects_r(ctx, prepared[i], pt);
    GEOSGeom_destroy_r(ctx, pt);
    return r == 1;
  }

  // MakeValid may return a collection with the lines and points of collapsed parts; a zone
  // is its area only. Takes ownership of g.
  GEOSGeometry* polygonal(GEOSGeometry* g) {
    const int type = GEOSGeomTypeId_r(ctx, g);
    if (type == GEOS_POLYGON || type == GEOS_MULTIPOLYGON) return g;
    std::vector<GEOSGeometry*> parts;
    const int n = GEOSGetNumGeometries_r(ctx, g);
    for (int k = 0; k < n; ++k) {
      const GEOSGeometry* part = GEOSGetGeometryN_r(ctx, g, k);
      const int t = GEOSGeomTypeId_r(ctx, part);
      if (t == GEOS_POLYGON) parts.push_back(GEOSGeom_clone_r(ctx, part));
      if (t == GEOS_MULTIPOLYGON)
        for (int j = 0; j < GEOSGetNumGeometries_r(ctx, part); ++j)
          parts.push_back(GEOSGeom_clone_r(ctx, GEOSGetGeometryN_r(ctx, part, j)));
    }
    GEOSGeom_destroy_r(ctx, g);
    if (parts.empty()) return nullptr;
    return GEOSGeom_createCollection_r(ctx, GEOS_MULTIPOLYGON, parts.data(),
                                       static_cast<unsigned int>(parts.size()));
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
  const json::object* top = doc.if_object();
  const json::value* features = top ? top->if_contains("features") : nullptr;
  if (!features || !features->is_array())
    throw std::runtime_error(path + ": expected a GeoJSON FeatureCollection");
  const bool gcj = options.gcj02 || says_gcj02(top->if_contains("crs"));

  Zones out;
  Impl& m = *out.impl_;
  std::vector<std::string> urban = options.urban;
  if (urban.empty()) urban.assign(std::begin(default_urban), std::end(default_urban));

  // The reader is released on every way out of the loop, exceptions included.
  struct Reader {
    GEOSContextHandle_t ctx;
    GEOSGeoJSONReader* r;
    ~Reader() { GEOSGeoJSONReader_destroy_r(ctx, r); }
  } reader{m.ctx, GEOSGeoJSONReader_create_r(m.ctx)};
  auto fail = [&](const Zone& z, const char* what) {
    return std::runtime_error(path + ": zone " + z.name + " (" + z.code + "): " + what +
                              (m.last_error.empty() ? "" : ": " + m.last_error));
  };

  const json::object no_props;
  for (const auto& f : features->get_array()) {
    const json::object* fo = f.if_object();
    if (!fo) continue;
    const json::value* geom = fo->if_contains("geometry");
    if (!geom || !geom->is_object()) continue;
    const json::value* pv = fo->if_contains("properties");
    const json::object& props = pv && pv->is_object() ? pv->get_object() : no_props;
    Zone z;
    z.name = prop(props, "name");
    z.code = prop(props, "adcode");
    if (z.code.empty()) z.code = prop(props, "code");
    const bool feature_gcj = gcj || says_gcj02(props.if_contains("crs"));

    m.last_error.clear();
    GEOSGeometry* g = GEOSGeoJSONReader_readGeometry_r(m.ctx, reader.r, json::serialize(*geom).c_str());
    if (!g) throw fail(z, "unreadable geometry");
    const int type = GEOSGeomTypeId_r(m.ctx, g);
    if (type != GEOS_POLYGON && type != GEOS_MULTIPOLYGON) {
      GEOSGeom_destroy_r(m.ctx, g);
      continue;
    }
    if (feature_gcj) {
      GEOSGeometry* t = GEOSGeom_transformXY_r(m.ctx, g, to_wgs84, nullptr);
      GEOSGeom_destroy_r(m.ctx, g);
      if (!t) throw fail(z, "coordinate conversion failed");
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
      if (!fixed) throw fail(z, "invalid polygon could not be repaired");
      g = m.polygonal(fixed);
      if (!g) throw fail(z, "repaired polygon has no area left");
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
    // Planar area in square degrees, scaled at the centroid's latitude: within a fraction of
    // a percent for a district-sized zone.
    double area_deg2 = 0;
    GEOSArea_r(m.ctx, g, &area_deg2);
    const double km_per_deg = earth_radius_m * std::numbers::pi / 180 / 1000;
    z.area_km2 = area_deg2 * km_per_deg * km_per_deg * std::cos(deg2rad(z.centroid.lat));
    GEOSGeom_getXMin_r(m.ctx, g, &z.min_lon);
    GEOSGeom_getXMax_r(m.ctx, g, &z.max_lon);
    GEOSGeom_getYMin_r(m.ctx, g, &z.min_lat);
    GEOSGeom_getYMax_r(m.ctx, g, &z.max_lat);
    const GEOSPreparedGeometry* prep = GEOSPrepare_r(m.ctx, g);
    if (!prep) {
      GEOSGeom_destroy_r(m.ctx, g);
      throw fail(z, "cannot prepare geometry");
    }
    m.zones.push_back(std::move(z));
    m.geoms.push_back(g);
    m.prepared.push_back(prep);
  }
  if (m.zones.empty()) throw std::runtime_error(path + ": no polygon zones in the file");

  m.tree = GEOSSTRtree_create_r(m.ctx, 10);
  // The tree copies each envelope (GEOS >= 3.9); the item is the zone's index + 1, so that
  // no item is a null pointer.
  for (std::size_t i = 0; i < m.geoms.size(); ++i)
    GEOSSTRtree_insert_r(m.ctx, m.tree, m.geoms[i], reinterpret_cast<void*>(i + 1));
  m.hits.reserve(m.zones.size());
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
  Impl& m = *impl_;
  if (!m.tree || !valid(p)) return std::nullopt;
  m.hits.clear();
  GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(m.ctx, p.lon, p.lat);
  GEOSSTRtree_query_r(
      m.ctx, m.tree, pt,
      [](void* item, void* user) {
        static_cast<std::vector<std::size_t>*>(user)->push_back(reinterpret_cast<std::size_t>(item) - 1);
      },
      &m.hits);
  std::sort(m.hits.begin(), m.hits.end());
  std::optional<std::size_t> found;
  for (std::size_t i : m.hits)
    if (GEOSPreparedIntersects_r(m.ctx, m.prepared[i], pt) == 1) {
      found = i;
      break;
    }
  GEOSGeom_destroy_r(m.ctx, pt);
  return found;
}

LatLon Zones::random_point(std::size_t i, std::mt19937_64& rng) const {
  const Zone& z = impl_->zones.at(i);
  std::uniform_real_distribution<double> lat(z.min_lat, z.max_lat), lon(z.min_lon, z.max_lon);
  // Districts fill a good share of their boxes; 10,000 misses in a row means a sliver.
  for (int tries = 0; tries < 10000; ++tries) {
    const LatLon p{lat(rng), lon(rng)};
    if (impl_->contains(i, p)) return p;
  }
  // Still inside, unlike the centroid of a crescent.
  LatLon p = z.centroid;
  if (GEOSGeometry* s = GEOSPointOnSurface_r(impl_->ctx, impl_->geoms[i])) {
    GEOSGeomGetX_r(impl_->ctx, s, &p.lon);
    GEOSGeomGetY_r(impl_->ctx, s, &p.lat);
    GEOSGeom_destroy_r(impl_->ctx, s);
  }
  return p;
}

std::string Zones::to_geojson(int decimals) const {
  const Impl& m = *impl_;
  decimals = std::clamp(decimals, 0, 15);
  std::string out = R"({"type":"FeatureCollection","features":[)";
  for (std::size_t i = 0; i < m.zones.size(); ++i) {
    GEOSGeometry* simple = GEOSTopologyPreserveSimplify_r(m.ctx, m.geoms[i], console_tolerance_deg);
    const GEOSGeometry* g = simple ? simple : m.geoms[i];
    std::string polys;
    int count = 0;
    const bool single = GEOSGeomTypeId_r(m.ctx, g) == GEOS_POLYGON;
    const int n = single ? 1 : GEOSGetNumGeometries_r(m.ctx, g);
    for (int k = 0; k < n; ++k) {
      const GEOSGeometry* poly = single ? g : GEOSGetGeometryN_r(m.ctx, g, k);
      std::string text = count ? "," : "";
      if (append_polygon(m.ctx, poly, decimals, text)) {
        polys += text;
        ++count;
      }
    }
    if (simple) GEOSGeom_destroy_r(m.ctx, simple);
    if (i) out += ',';
    const json::object props{{"name", m.zones[i].name}, {"code", m.zones[i].code}, {"urban", m.zones[i].urban}};
    out += R"({"type":"Feature","properties":)" + json::serialize(props) +
           R"(,"geometry":{"type":"MultiPolygon","coordinates":[)" + polys + "]}}";
  }
  out += "]}";
  return out;
}

}  // namespace dispatch::geo
