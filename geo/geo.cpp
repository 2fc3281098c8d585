#include "geo/geo.hpp"

#include <algorithm>

namespace dispatch::geo {

double distance_m(LatLon a, LatLon b) {
  const double p1 = deg2rad(a.lat), p2 = deg2rad(b.lat);
  const double dp = p2 - p1, dl = deg2rad(b.lon - a.lon);
  const double s1 = std::sin(dp / 2), s2 = std::sin(dl / 2);
  const double h = s1 * s1 + std::cos(p1) * std::cos(p2) * s2 * s2;
  return 2 * earth_radius_m * std::asin(std::min(1.0, std::sqrt(h)));
}

Vec3 to_unit_vector(LatLon p) {
  const double la = deg2rad(p.lat), lo = deg2rad(p.lon);
  const double c = std::cos(la);
  return {c * std::cos(lo), c * std::sin(lo), std::sin(la)};
}

double chord_to_m(double chord) {
  return 2 * earth_radius_m * std::asin(std::clamp(chord / 2, 0.0, 1.0));
}

}  // namespace dispatch::geo
