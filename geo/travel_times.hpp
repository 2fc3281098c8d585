// Travel times over a road network (wire contract v2 section 8), for ground units. The
// engine's policy sees only this interface; geo/roads.hpp implements it over OpenStreetMap
// data. Without one, the engine keeps section 7's straight-line model.
#pragma once

#include <span>

#include "geo/geo.hpp"

namespace dispatch::geo {

class TravelTimes {
 public:
  virtual ~TravelTimes() = default;
  // Seconds by road from each from[i] to `to`, each point snapped to its nearest road
  // (the time to reach the road from the point included); +infinity when no route, and
  // (geo::RoadNetwork) for a source certainly slower than the fastest of them by more than
  // a margin (20 min by default): never the choice, and not worth searching the graph for.
  // Requires seconds.size() == from.size(). Called by one thread at a time (the engine's).
  virtual void to_target(LatLon to, std::span<const LatLon> from,
                         std::span<double> seconds) const = 0;
};

}  // namespace dispatch::geo
