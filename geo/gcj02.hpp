// GCJ-02 ("Mars coordinates"), the datum of AMap and Aliyun DataV maps, and WGS84.
// GCJ-02 is a deliberate, smooth offset of WGS84 inside China (about 470 m in Chongqing).
#pragma once

#include "geo/geo.hpp"

namespace dispatch::geo {

// Outside this box GCJ-02 equals WGS84.
bool outside_china(LatLon p);
// The public forward transform (Krasovsky ellipsoid, a = 6378245 m).
LatLon wgs84_to_gcj02(LatLon wgs);
// The inverse, by fixed-point iteration to 1e-10 degrees (well under a millimetre).
LatLon gcj02_to_wgs84(LatLon gcj);

}  // namespace dispatch::geo
