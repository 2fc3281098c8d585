#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "geo/unit_index.hpp"

using namespace dispatch::geo;

namespace {

struct BruteForce {
  std::vector<std::optional<LatLon>> where;
  std::optional<UnitIndex::Hit> nearest(LatLon p, auto accept) const {
    std::optional<UnitIndex::Hit> best;
    for (std::uint32_t id = 0; id < where.size(); ++id) {
      if (!where[id] || !accept(id)) continue;
      const double d = distance_m(p, *where[id]);
      if (!best || d < best->distance_m) best = UnitIndex::Hit{id, d};
    }
    return best;
  }
};

LatLon random_in(std::mt19937_64& rng, double lat0, double lat1, double lon0, double lon1) {
  return {std::uniform_real_distribution<double>(lat0, lat1)(rng),
          std::uniform_real_distribution<double>(lon0, lon1)(rng)};
}

}  // namespace

TEST_CASE("nearest equals brute force over thousands of moving units") {
  std::mt19937_64 rng(20261128);
  const std::uint32_t n = 5000;
  UnitIndex index;
  BruteForce brute;
  brute.where.resize(n);
  // Chongqing's extent.
  for (std::uint32_t id = 0; id < n; ++id) {
    const LatLon p = random_in(rng, 28.16, 32.20, 105.29, 110.19);
    index.upsert(id, p);
    brute.where[id] = p;
  }
  CHECK(index.size() == n);
  auto check_queries = [&](int count) {
    for (int q = 0; q < count; ++q) {
      const LatLon p = random_in(rng, 28.0, 32.4, 105.0, 110.5);
      const auto got = index.nearest(p);
      const auto want = brute.nearest(p, [](std::uint32_t) { return true; });
      REQUIRE(got.has_value() == want.has_value());
      if (!got) continue;
      // Same distance (ids can differ only on exact ties).
      CHECK(got->distance_m == doctest::Approx(want->distance_m).epsilon(1e-9));
      CHECK(distance_m(p, *brute.where[got->id]) == doctest::Approx(want->distance_m).epsilon(1e-9));
    }
  };
  check_queries(500);

  // Random moves (small and large) and removals.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3000; ++i) {
      const auto id = static_cast<std::uint32_t>(rng() % n);
      if (rng() % 5 == 0) {
        CHECK(index.remove(id) == brute.where[id].has_value());
        brute.where[id].reset();
      } else {
        LatLon p = brute.where[id] ? *brute.where[id] : random_in(rng, 28.16, 32.20, 105.29, 110.19);
        if (rng() % 2) {
          p.lat += std::uniform_real_distribution<double>(-0.01, 0.01)(rng);
          p.lon += std::uniform_real_distribution<double>(-0.01, 0.01)(rng);
        } else {
          p = random_in(rng, 28.16, 32.20, 105.29, 110.19);
        }
        index.upsert(id, p);
        brute.where[id] = p;
      }
    }
    const auto present = static_cast<std::size_t>(
        std::count_if(brute.where.begin(), brute.where.end(), [](auto& w) { return w.has_value(); }));
    CHECK(index.size() == present);
    check_queries(300);
  }

  // A filter (e.g. units that declined are skipped) gives the nearest accepted one.
  for (int q = 0; q < 200; ++q) {
    const LatLon p = random_in(rng, 28.0, 32.4, 105.0, 110.5);
    auto accept = [](std::uint32_t id) { return id % 7 != 0 && id % 3 != 1; };
    const auto got = index.nearest(p, accept);
    const auto want = brute.nearest(p, accept);
    REQUIRE(got.has_value() == want.has_value());
    if (got) {
      CHECK(accept(got->id));
      CHECK(got->distance_m == doctest::Approx(want->distance_m).epsilon(1e-9));
    }
  }
}

TEST_CASE("nearest is exact on the sphere, also across the antimeridian and near the poles") {
  UnitIndex index;
  index.upsert(1, {0, 179.9});
  index.upsert(2, {0, 179.0});
  const auto hit = index.nearest({0, -179.95});
  REQUIRE(hit);
  CHECK(hit->id == 1);  // 0.15 degrees across the antimeridian, not 358.95
  index.upsert(3, {89.9, 0});
  index.upsert(4, {89.8, 180});
  const auto polar = index.nearest({89.85, 90});
  REQUIRE(polar);
  CHECK(polar->id == 3);
}

TEST_CASE("nearest_k returns the k nearest in order") {
  std::mt19937_64 rng(7);
  UnitIndex index;
  BruteForce brute;
  brute.where.resize(2000);
  for (std::uint32_t id = 0; id < 2000; ++id) {
    const LatLon p = random_in(rng, 29.3, 29.9, 106.2, 106.9);
    index.upsert(id, p);
    brute.where[id] = p;
  }
  const LatLon q{29.56, 106.55};
  auto hits = index.nearest_k(q, 10, [](std::uint32_t id) { return id % 2 == 0; });
  REQUIRE(hits.size() == 10);
  std::vector<double> all;
  for (std::uint32_t id = 0; id < 2000; id += 2) all.push_back(distance_m(q, *brute.where[id]));
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < hits.size(); ++i) {
    CHECK(hits[i].id % 2 == 0);
    CHECK(hits[i].distance_m == doctest::Approx(all[i]).epsilon(1e-9));
  }
}

TEST_CASE("an empty index and removals of absent ids") {
  UnitIndex index;
  CHECK_FALSE(index.nearest({29.5, 106.5}).has_value());
  CHECK_FALSE(index.remove(42));
  index.upsert(42, {29.5, 106.5});
  CHECK(index.contains(42));
  index.upsert(42, {29.5, 106.5});  // the same place again
  CHECK(index.size() == 1);
  CHECK(index.remove(42));
  CHECK_FALSE(index.contains(42));
  CHECK(index.size() == 0);
}
