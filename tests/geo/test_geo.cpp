#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "geo/geo.hpp"

using namespace dispatch::geo;

namespace {
// Spherical law of cosines: an independent formula to check haversine against.
double cosine_law_m(LatLon a, LatLon b) {
  const double p1 = deg2rad(a.lat), p2 = deg2rad(b.lat), dl = deg2rad(b.lon - a.lon);
  return earth_radius_m * std::acos(std::sin(p1) * std::sin(p2) + std::cos(p1) * std::cos(p2) * std::cos(dl));
}
}  // namespace

TEST_CASE("great-circle distance matches known values") {
  const double R = earth_radius_m;
  // One degree along a meridian, a quarter of the equator, half the globe.
  CHECK(distance_m({0, 0}, {1, 0}) == doctest::Approx(R * std::numbers::pi / 180).epsilon(1e-12));
  CHECK(distance_m({0, 0}, {0, 90}) == doctest::Approx(R * std::numbers::pi / 2).epsilon(1e-12));
  CHECK(distance_m({0, 0}, {0, 180}) == doctest::Approx(R * std::numbers::pi).epsilon(1e-12));
  CHECK(distance_m({90, 0}, {-90, 0}) == doctest::Approx(R * std::numbers::pi).epsilon(1e-12));
  // London - Paris, about 343.5 km on the mean sphere.
  CHECK(distance_m({51.5074, -0.1278}, {48.8566, 2.3522}) == doctest::Approx(343'560).epsilon(0.001));
  // Chongqing: Jiefangbei to Jiangbei airport (ZUCK), checked with the law of cosines.
  const LatLon jfb{29.5573, 106.5770}, zuck{29.712254, 106.651895};
  CHECK(distance_m(jfb, zuck) == doctest::Approx(cosine_law_m(jfb, zuck)).epsilon(1e-6));
  CHECK(distance_m(jfb, zuck) == doctest::Approx(18'630).epsilon(0.01));
  CHECK(distance_m(jfb, jfb) == 0.0);
  CHECK(distance_m(jfb, zuck) == doctest::Approx(distance_m(zuck, jfb)));
}

TEST_CASE("short distances stay accurate") {
  // 1e-5 degree of latitude is about 1.11 m; haversine keeps it, acos would not.
  CHECK(distance_m({29.5, 106.5}, {29.50001, 106.5}) == doctest::Approx(1.11195).epsilon(1e-4));
}

TEST_CASE("chord on the unit sphere converts back to the great-circle distance") {
  const LatLon a{29.56, 106.55}, b{30.80, 108.40};
  const Vec3 va = to_unit_vector(a), vb = to_unit_vector(b);
  const double chord = std::sqrt((va.x - vb.x) * (va.x - vb.x) + (va.y - vb.y) * (va.y - vb.y) +
                                 (va.z - vb.z) * (va.z - vb.z));
  CHECK(chord_to_m(chord) == doctest::Approx(distance_m(a, b)).epsilon(1e-9));
}

TEST_CASE("ETA models of the contract") {
  // moto: distance x 1.3 at 30 km/h; 1 km takes 156 s.
  CHECK(ground_eta_s(1000) == doctest::Approx(156.0));
  CHECK(ground_eta_s(0) == 0.0);
  // heli: 180 s readiness + distance at 200 km/h; 10 km takes 180 + 180 s.
  CHECK(air_eta_s(10'000) == doctest::Approx(360.0));
  CHECK(air_eta_s(0) == doctest::Approx(180.0));
  // Close by the motorcycle wins; a few km out, the helicopter.
  CHECK(air_eta_s(500) > ground_eta_s(500));
  CHECK(air_eta_s(5'000) < ground_eta_s(5'000));
}

TEST_CASE("coordinate validity") {
  CHECK(valid({29.5, 106.5}));
  CHECK_FALSE(valid({91, 0}));
  CHECK_FALSE(valid({0, 181}));
  CHECK_FALSE(valid({std::nan(""), 0}));
}
