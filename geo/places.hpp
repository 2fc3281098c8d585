// Places of air-ground rescue: helicopter bases, landing zones and hospitals.
#pragma once

#include <string>
#include <vector>

#include "geo/geo.hpp"

namespace dispatch::geo {

enum class PlaceKind { heli_base, landing_zone, hospital, station };

struct Place {
  std::string id;
  std::string name;
  PlaceKind kind = PlaceKind::hospital;
  LatLon pos;
  bool trauma = false;   // hospitals: a trauma centre
  bool helipad = false;  // hospitals: a helicopter can land there
};

class Places {
 public:
  // A GeoJSON FeatureCollection of Points with properties id, name, kind
  // (heli_base | landing_zone | hospital | station), trauma, helipad (WGS84). Throws std::runtime_error.
  static Places load(const std::string& path);
  static Places parse(const std::string& text, const std::string& what);

  const std::vector<Place>& all() const { return places_; }
  // The nearest place of a kind with the asked-for features, or null. A linear scan: a
  // city has tens of such places, not thousands.
  const Place* nearest(LatLon p, PlaceKind kind, bool need_trauma = false, bool need_helipad = false) const;
  std::string to_geojson() const;

 private:
  std::vector<Place> places_;
};

}  // namespace dispatch::geo
