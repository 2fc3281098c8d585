// WGS84 points, great-circle distance and the contract's ETA models.
#pragma once

#include <cmath>
#include <numbers>

namespace dispatch::geo {

// A WGS84 position in decimal degrees.
struct LatLon {
  double lat = 0;
  double lon = 0;
  friend bool operator==(const LatLon&, const LatLon&) = default;
};

inline constexpr double earth_radius_m = 6371008.8;  // IUGG mean radius

inline constexpr double deg2rad(double d) { return d * std::numbers::pi / 180.0; }
inline constexpr double rad2deg(double r) { return r * 180.0 / std::numbers::pi; }

inline bool valid(LatLon p) {
  return std::isfinite(p.lat) && std::isfinite(p.lon) && p.lat >= -90 && p.lat <= 90 &&
         p.lon >= -180 && p.lon <= 180;
}

// Great-circle distance in metres (haversine, numerically sound at short range).
double distance_m(LatLon a, LatLon b);

// Point on the unit sphere; the chord between two of them orders exactly as the
// great-circle distance does, which is what the spatial index relies on.
struct Vec3 {
  double x, y, z;
};
Vec3 to_unit_vector(LatLon p);
// Great-circle distance from a chord length on the unit sphere.
double chord_to_m(double chord);

// Contract section 7. Ground: distance x 1.3 (road detour) at 30 km/h.
inline constexpr double ground_detour = 1.3;
inline constexpr double ground_speed_mps = 30.0 / 3.6;
// Air: 180 s readiness, then a straight line at 200 km/h.
inline constexpr double air_ready_s = 180.0;
inline constexpr double air_speed_mps = 200.0 / 3.6;

inline double ground_eta_s(double metres) { return metres * ground_detour / ground_speed_mps; }
inline double air_eta_s(double metres) { return air_ready_s + metres / air_speed_mps; }
// Flight time alone (no readiness), for legs after take-off.
inline double air_leg_s(double metres) { return metres / air_speed_mps; }

}  // namespace dispatch::geo
