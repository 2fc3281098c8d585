// What the dispatch policy needs to know about the map: districts (urban or rural) and
// the places of air-ground rescue. An interface, so that the engine stays free of GEOS
// and file formats, and scenario tests can draw their own small worlds.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "geo/geo.hpp"

namespace dispatch::engine {

struct DistrictRef {
  std::string name;
  bool urban = false;
};

struct PlaceRef {
  std::string id;
  std::string name;
  geo::LatLon pos;
};

class Geography {
 public:
  virtual ~Geography() = default;
  virtual std::optional<DistrictRef> district(geo::LatLon p) const = 0;
  // The nearest trauma centre (for a ground transfer).
  virtual std::optional<PlaceRef> trauma_hospital(geo::LatLon p) const = 0;
  // The nearest trauma centre with a helipad (for the flight leg).
  virtual std::optional<PlaceRef> helipad_hospital(geo::LatLon p) const = 0;
  // The nearest helicopter landing zone.
  virtual std::optional<PlaceRef> landing_zone(geo::LatLon p) const = 0;
  // A rural traffic-safety station by id (places of kind `station`; contract v2 10).
  virtual std::optional<PlaceRef> station(std::string_view id) const {
    (void)id;
    return std::nullopt;
  }
};

}  // namespace dispatch::engine
