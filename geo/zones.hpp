// Districts and counties as polygons on GEOS: which zone a point lies in, urban or rural.
// geos_c.h stays in zones.cpp.
#pragma once

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "geo/geo.hpp"

namespace dispatch::geo {

struct Zone {
  std::string name;
  std::string code;  // adcode
  bool urban = false;
  LatLon centroid;
  double area_km2 = 0;
  double min_lat = 0, min_lon = 0, max_lat = 0, max_lon = 0;  // WGS84 bounding box
};

struct ZoneOptions {
  bool gcj02 = false;  // convert GCJ-02 -> WGS84 at load (also when the file says "crs":"gcj02")
  // Names or codes of the urban zones; empty: Chongqing's nine central districts.
  std::vector<std::string> urban;
};

class Zones {
 public:
  Zones();
  ~Zones();
  Zones(Zones&&) noexcept;
  Zones& operator=(Zones&&) noexcept;

  // A GeoJSON FeatureCollection of (Multi)Polygons with properties name and adcode (or
  // code); other geometries are skipped. Coordinates are converted GCJ-02 -> WGS84 when
  // the options say so or the collection or a feature has "crs": "gcj02". Invalid
  // polygons are repaired (GEOSMakeValid) with a warning each. Throws std::runtime_error
  // on an unreadable or ill-formed file.
  static Zones load(const std::string& path, const ZoneOptions& options,
                    std::vector<std::string>* warnings = nullptr);

  std::size_t size() const;
  const Zone& zone(std::size_t i) const;
  std::optional<std::size_t> find(std::string_view name_or_code) const;
  // The zone containing p (prepared geometries behind an STRtree); where repaired zones
  // overlap, or p lies on a shared border, the lowest index wins. The GEOS context is not
  // thread-safe: one thread at a time.
  std::optional<std::size_t> locate(LatLon p) const;
  // A uniformly random point inside zone i (rejection sampling in its bounding box).
  LatLon random_point(std::size_t zone, std::mt19937_64& rng) const;
  // WGS84 FeatureCollection with properties name, code, urban: the web console's base
  // layer, so outlines are simplified to about 20 m and coordinates written with
  // `decimals` digits (5 is about 1 m).
  std::string to_geojson(int decimals = 5) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dispatch::geo
