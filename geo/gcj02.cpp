#include "geo/gcj02.hpp"

#include <cmath>

namespace dispatch::geo {

namespace {
constexpr double pi = std::numbers::pi;
constexpr double a = 6378245.0;
constexpr double ee = 0.00669342162296594323;

double transform_lat(double x, double y) {
  double r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * std::sqrt(std::abs(x));
  r += (20.0 * std::sin(6.0 * x * pi) + 20.0 * std::sin(2.0 * x * pi)) * 2.0 / 3.0;
  r += (20.0 * std::sin(y * pi) + 40.0 * std::sin(y / 3.0 * pi)) * 2.0 / 3.0;
  r += (160.0 * std::sin(y / 12.0 * pi) + 320.0 * std::sin(y * pi / 30.0)) * 2.0 / 3.0;
  return r;
}

double transform_lon(double x, double y) {
  double r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * std::sqrt(std::abs(x));
  r += (20.0 * std::sin(6.0 * x * pi) + 20.0 * std::sin(2.0 * x * pi)) * 2.0 / 3.0;
  r += (20.0 * std::sin(x * pi) + 40.0 * std::sin(x / 3.0 * pi)) * 2.0 / 3.0;
  r += (150.0 * std::sin(x / 12.0 * pi) + 300.0 * std::sin(x / 30.0 * pi)) * 2.0 / 3.0;
  return r;
}
}  // namespace

bool outside_china(LatLon p) {
  return p.lon < 72.004 || p.lon > 137.8347 || p.lat < 0.8293 || p.lat > 55.8271;
}

LatLon wgs84_to_gcj02(LatLon w) {
  if (outside_china(w)) return w;
  double dlat = transform_lat(w.lon - 105.0, w.lat - 35.0);
  double dlon = transform_lon(w.lon - 105.0, w.lat - 35.0);
  const double rad = w.lat / 180.0 * pi;
  double magic = std::sin(rad);
  magic = 1 - ee * magic * magic;
  const double sq = std::sqrt(magic);
  dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * sq) * pi);
  dlon = (dlon * 180.0) / (a / sq * std::cos(rad) * pi);
  return {w.lat + dlat, w.lon + dlon};
}

LatLon gcj02_to_wgs84(LatLon g) {
  if (outside_china(g)) return g;
  LatLon w = g;
  for (int i = 0; i < 30; ++i) {
    const LatLon f = wgs84_to_gcj02(w);
    const double dlat = g.lat - f.lat, dlon = g.lon - f.lon;
    w.lat += dlat;
    w.lon += dlon;
    if (std::abs(dlat) < 1e-10 && std::abs(dlon) < 1e-10) break;
  }
  return w;
}

}  // namespace dispatch::geo
