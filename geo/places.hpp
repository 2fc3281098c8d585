// Places of air-ground rescue and of the rural network: helicopter bases, landing zones,
// hospitals and rural traffic-safety stations (劝导站, contract v2 section 10).
#pragma once

#include <string>
#include <string_view>
#include <map>
#include <vector>

#include "geo/geo.hpp"

namespace dispatch::geo {

enum class PlaceKind { heli_base, landing_zone, hospital, station };

// "heli_base", "landing_zone", "hospital", "station".
const char* place_kind_name(PlaceKind k);

struct Place {
  std::string id;
  std::string name;
  PlaceKind kind = PlaceKind::hospital;
  LatLon pos;
  bool trauma = false;        // hospitals: a trauma centre
  bool helipad = false;       // hospitals: a helicopter can land there
  bool illustrative = false;  // made up for a demo, not a real site (see assets/places/README.md)
};

class Places {
 public:
  // A GeoJSON FeatureCollection of WGS84 Points with properties id, name, kind
  // (heli_base | landing_zone | hospital | station), and optionally trauma, helipad,
  // illustrative (booleans). A feature without an id takes its name as id. Throws
  // std::runtime_error naming the file and the feature: not a Point, bad coordinates, a
  // missing or unknown kind, an id given twice.
  static Places load(const std::string& path);
  static Places parse(const std::string& text, const std::string& what);

  const std::vector<Place>& all() const { return places_; }
  // The place with this id, of any kind, or null (a station is found by the id its token names).
  const Place* by_id(std::string_view id) const;
  // The nearest place of a kind with the asked-for features, or null. A linear scan: a
  // city has hundreds of such places, not millions.
  const Place* nearest(LatLon p, PlaceKind kind, bool need_trauma = false, bool need_helipad = false) const;
  std::size_t count(PlaceKind kind) const;
  std::string to_geojson() const;

 private:
  std::vector<Place> places_;
  std::map<std::string, std::size_t, std::less<>> by_id_;  // id -> index in places_
};

}  // namespace dispatch::geo
