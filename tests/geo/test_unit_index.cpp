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

namespace {

// Checks nearest (and, every `k_every` queries, nearest_k) against brute force.
void check_against_brute(const UnitIndex& index, const BruteForce& brute, LatLon p, auto accept,
                         bool with_k) {
  const auto got = index.nearest(p, accept);
  const auto want = brute.nearest(p, accept);
  REQUIRE(got.has_value() == want.has_value());
  if (got) {
    REQUIRE(got->id < brute.where.size());
    REQUIRE(brute.where[got->id].has_value());
    CHECK(accept(got->id));
    CHECK(got->distance_m == doctest::Approx(want->distance_m).epsilon(1e-9));
    CHECK(distance_m(p, *brute.where[got->id]) == doctest::Approx(want->distance_m).epsilon(1e-9));
  }
  if (!with_k) return;
  std::vector<double> all;
  for (std::uint32_t id = 0; id < brute.where.size(); ++id)
    if (brute.where[id] && accept(id)) all.push_back(distance_m(p, *brute.where[id]));
  std::sort(all.begin(), all.end());
  const std::size_t k = 5;
  const auto hits = index.nearest_k(p, k, accept);
  REQUIRE(hits.size() == std::min(k, all.size()));
  for (std::size_t i = 0; i < hits.size(); ++i) {
    CHECK(accept(hits[i].id));
    CHECK(hits[i].distance_m == doctest::Approx(all[i]).epsilon(1e-9));
    if (i > 0) CHECK(hits[i - 1].distance_m <= hits[i].distance_m);
  }
}

// Anywhere on Earth, with the poles and the antimeridian over-represented.
LatLon random_anywhere(std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 0: return {90.0 - std::uniform_real_distribution<double>(0, 0.5)(rng),
                    std::uniform_real_distribution<double>(-180, 180)(rng)};
    case 1: return {-90.0 + std::uniform_real_distribution<double>(0, 0.5)(rng),
                    std::uniform_real_distribution<double>(-180, 180)(rng)};
    case 2: return random_in(rng, -60, 60, 179.5, 180);
    case 3: return random_in(rng, -60, 60, -180, -179.5);
    case 4: return random_in(rng, 39.5, 40.5, 116, 117);  // Beijing
    default: {
      // Uniform on the sphere.
      const double z = std::uniform_real_distribution<double>(-1, 1)(rng);
      return {rad2deg(std::asin(z)), std::uniform_real_distribution<double>(-180, 180)(rng)};
    }
  }
}

}  // namespace

TEST_CASE("randomized oracle: 10k units moving, leaving and coming back, queries anywhere, filters") {
  std::mt19937_64 rng(13);
  const std::uint32_t n = 10000;
  UnitIndex index;
  BruteForce brute;
  brute.where.resize(n);
  auto in_chongqing = [&] { return random_in(rng, 28.16, 32.20, 105.29, 110.19); };
  auto put = [&](std::uint32_t id, LatLon p) {
    index.upsert(id, p);
    brute.where[id] = p;
  };
  // The filters: everyone, half, one in 50, one in 1000, one single id, nobody.
  auto all = [](std::uint32_t) { return true; };
  auto half = [](std::uint32_t id) { return id % 2 == 0; };
  auto few = [](std::uint32_t id) { return id % 50 == 7; };
  auto rare = [](std::uint32_t id) { return id % 1000 == 3; };
  auto one = [](std::uint32_t id) { return id == 4242; };
  auto none = [](std::uint32_t) { return false; };
  int queries = 0;
  auto query_round = [&](int count) {
    for (int q = 0; q < count; ++q, ++queries) {
      LatLon p;
      const auto where = rng() % 10;
      if (where < 6) {
        p = random_in(rng, 28.16, 32.20, 105.29, 110.19);
      } else if (where < 8) {
        p = random_in(rng, 27.0, 33.5, 104.0, 111.5);  // around the box's edges
      } else {
        p = random_anywhere(rng);
      }
      const bool with_k = q % 10 == 0;
      switch (rng() % 8) {
        case 0: check_against_brute(index, brute, p, half, with_k); break;
        case 1: check_against_brute(index, brute, p, few, with_k); break;
        case 2: check_against_brute(index, brute, p, rare, with_k); break;
        case 3: check_against_brute(index, brute, p, one, with_k); break;
        case 4: check_against_brute(index, brute, p, none, with_k); break;
        default: check_against_brute(index, brute, p, all, with_k); break;
      }
    }
  };

  // Grows one unit at a time (the index rebuilds itself on the way), a few far away.
  for (std::uint32_t id = 0; id < n; ++id) {
    put(id, rng() % 200 == 0 ? random_anywhere(rng) : in_chongqing());
    if (id == 10 || id == 40 || id == 100 || id == 1000) query_round(100);
  }
  CHECK(index.size() == n);
  query_round(1000);

  // Moves (small steps, jumps, trips far away and back) and removals.
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 5000; ++i) {
      const auto id = static_cast<std::uint32_t>(rng() % n);
      const auto what = rng() % 10;
      if (what == 0) {
        CHECK(index.remove(id) == brute.where[id].has_value());
        brute.where[id].reset();
      } else if (what == 1) {
        put(id, random_anywhere(rng));
      } else if (what < 5 || !brute.where[id]) {
        put(id, in_chongqing());
      } else {
        LatLon p = *brute.where[id];
        p.lat = std::clamp(p.lat + std::uniform_real_distribution<double>(-0.01, 0.01)(rng), -90.0, 90.0);
        p.lon = std::clamp(p.lon + std::uniform_real_distribution<double>(-0.01, 0.01)(rng), -180.0, 180.0);
        put(id, p);
      }
    }
    const auto present = static_cast<std::size_t>(
        std::count_if(brute.where.begin(), brute.where.end(), [](auto& w) { return w.has_value(); }));
    CHECK(index.size() == present);
    query_round(600);
  }

  // Most units leave (the index shrinks), then the rest go to Beijing (out of the box the
  // index was built for) and come back.
  for (std::uint32_t id = 0; id < n; ++id) {
    if (id % 10 != 0 && brute.where[id]) {
      CHECK(index.remove(id));
      brute.where[id].reset();
    }
  }
  query_round(300);
  for (std::uint32_t id = 0; id < n; id += 10) put(id, random_in(rng, 39.5, 40.5, 116, 117));
  query_round(300);
  for (std::uint32_t id = 0; id < n; ++id) CHECK(index.contains(id) == brute.where[id].has_value());
  for (std::uint32_t id = 0; id < n; ++id) put(id, in_chongqing());
  CHECK(index.size() == n);
  query_round(300);
  CHECK(queries >= 3000);
}

TEST_CASE("edge cases: empty, all refused, far away, poles, antimeridian, duplicates") {
  auto none = [](std::uint32_t) { return false; };

  SUBCASE("an empty index") {
    UnitIndex index;
    CHECK(index.size() == 0);
    CHECK_FALSE(index.contains(0));
    CHECK_FALSE(index.nearest({29.5, 106.5}).has_value());
    CHECK_FALSE(index.nearest({90, 0}).has_value());
    CHECK(index.nearest_k({29.5, 106.5}, 3, [](std::uint32_t) { return true; }).empty());
    // Emptied again after being large.
    for (std::uint32_t id = 0; id < 1000; ++id) index.upsert(id, {29 + id * 1e-3, 106 + id * 1e-3});
    for (std::uint32_t id = 0; id < 1000; ++id) CHECK(index.remove(id));
    CHECK(index.size() == 0);
    CHECK_FALSE(index.nearest({29.5, 106.5}).has_value());
    CHECK_FALSE(index.remove(3));
  }

  SUBCASE("every unit refused") {
    std::mt19937_64 rng(1);
    UnitIndex index;
    for (std::uint32_t id = 0; id < 10000; ++id) index.upsert(id, random_in(rng, 28.16, 32.20, 105.29, 110.19));
    CHECK_FALSE(index.nearest({29.5, 106.5}, none).has_value());
    CHECK_FALSE(index.nearest({-40, -70}, none).has_value());
    CHECK(index.nearest_k({29.5, 106.5}, 4, none).empty());
    // Only the farthest unit of all accepted.
    index.upsert(777, {32.20, 110.19});
    const auto hit = index.nearest({28.16, 105.29}, [](std::uint32_t id) { return id == 777; });
    REQUIRE(hit);
    CHECK(hit->id == 777);
  }

  SUBCASE("far-away units and queries") {
    std::mt19937_64 rng(2);
    UnitIndex index;
    for (std::uint32_t id = 0; id < 5000; ++id) index.upsert(id, random_in(rng, 28.16, 32.20, 105.29, 110.19));
    // From Beijing, New York and the South Pole: the nearest Chongqing unit by brute force.
    for (const LatLon q : {LatLon{39.9, 116.4}, LatLon{40.7, -74.0}, LatLon{-90, 0}, LatLon{0, -180}}) {
      double best = 1e300;
      std::mt19937_64 again(2);  // the same positions again
      for (std::uint32_t id = 0; id < 5000; ++id)
        best = std::min(best, distance_m(q, random_in(again, 28.16, 32.20, 105.29, 110.19)));
      const auto hit = index.nearest(q);
      REQUIRE(hit);
      CHECK(hit->distance_m == doctest::Approx(best).epsilon(1e-9));
    }
    // A unit in Beijing is the nearest to Beijing, and Chongqing's stay nearest to Chongqing.
    index.upsert(9000, {39.9, 116.4});
    auto hit = index.nearest({39.95, 116.45});
    REQUIRE(hit);
    CHECK(hit->id == 9000);
    hit = index.nearest({29.56, 106.55});
    REQUIRE(hit);
    CHECK(hit->id != 9000);
    CHECK(hit->distance_m < 10000);
    // Only the Beijing unit accepted, from Chongqing.
    hit = index.nearest({29.56, 106.55}, [](std::uint32_t id) { return id == 9000; });
    REQUIRE(hit);
    CHECK(hit->id == 9000);
    CHECK(hit->distance_m == doctest::Approx(distance_m({29.56, 106.55}, {39.9, 116.4})).epsilon(1e-9));
  }

  SUBCASE("the poles") {
    UnitIndex index;
    std::mt19937_64 rng(3);
    for (std::uint32_t id = 0; id < 2000; ++id) index.upsert(id, random_in(rng, 28.16, 32.20, 105.29, 110.19));
    index.upsert(5000, {90, 0});
    index.upsert(5001, {-90, 45});
    index.upsert(5002, {89.99, -179.5});
    auto hit = index.nearest({90, 123});  // every longitude is the North Pole
    REQUIRE(hit);
    CHECK(hit->id == 5000);
    CHECK(hit->distance_m == doctest::Approx(0).epsilon(1e-6));
    hit = index.nearest({89.989, -179.6});
    REQUIRE(hit);
    CHECK(hit->id == 5002);
    hit = index.nearest({-89.9, -135});
    REQUIRE(hit);
    CHECK(hit->id == 5001);
    CHECK(hit->distance_m == doctest::Approx(distance_m({-89.9, -135}, {-90, 0})).epsilon(1e-9));
    // Across the pole: from 89.9 N at 0 E, a unit at 89.95 N 180 E is 0.15 degrees away.
    CHECK(index.remove(5000));
    CHECK(index.remove(5002));
    index.upsert(5003, {89.95, 180});
    index.upsert(5004, {89.7, 0});
    hit = index.nearest({89.9, 0});
    REQUIRE(hit);
    CHECK(hit->id == 5003);
  }

  SUBCASE("the antimeridian") {
    UnitIndex index;
    std::mt19937_64 rng(4);
    // A fleet on both sides of the antimeridian (Fiji), and one in Chongqing.
    for (std::uint32_t id = 0; id < 3000; ++id) {
      const double lon = std::uniform_real_distribution<double>(177, 183)(rng);
      index.upsert(id, {std::uniform_real_distribution<double>(-19, -16)(rng), lon > 180 ? lon - 360 : lon});
    }
    index.upsert(3000, {29.5, 106.5});
    index.upsert(3001, {-17.5, -179.999});
    index.upsert(3002, {-17.5, 179.9});
    auto hit = index.nearest({-17.5, 179.999}, [](std::uint32_t id) { return id >= 3000; });
    REQUIRE(hit);
    CHECK(hit->id == 3001);  // 0.002 degrees across, not 359.998
    hit = index.nearest({-17.5, -180}, [](std::uint32_t id) { return id == 3002; });
    REQUIRE(hit);
    CHECK(hit->distance_m == doctest::Approx(distance_m({-17.5, -180}, {-17.5, 179.9})).epsilon(1e-9));
    CHECK(hit->distance_m < 11000);
  }

  SUBCASE("duplicate positions") {
    UnitIndex index;
    for (std::uint32_t id = 0; id < 500; ++id) index.upsert(id, {29.5, 106.5});  // all in one place
    CHECK(index.size() == 500);
    auto hit = index.nearest({29.5, 106.5});
    REQUIRE(hit);
    CHECK(hit->distance_m == doctest::Approx(0));
    hit = index.nearest({29.6, 106.5}, [](std::uint32_t id) { return id == 321; });
    REQUIRE(hit);
    CHECK(hit->id == 321);
    CHECK(hit->distance_m == doctest::Approx(distance_m({29.6, 106.5}, {29.5, 106.5})).epsilon(1e-9));
    auto hits = index.nearest_k({29.5, 106.6}, 10, [](std::uint32_t id) { return id % 3 == 0; });
    REQUIRE(hits.size() == 10);
    for (const auto& h : hits) CHECK(h.id % 3 == 0);
    for (std::uint32_t id = 0; id < 499; ++id) CHECK(index.remove(id));
    hit = index.nearest({0, 0});
    REQUIRE(hit);
    CHECK(hit->id == 499);
    // Two places, many units each.
    for (std::uint32_t id = 0; id < 300; ++id) index.upsert(id, id % 2 ? LatLon{30, 107} : LatLon{31, 108});
    hit = index.nearest({30.9, 107.9});
    REQUIRE(hit);
    CHECK(hit->id % 2 == 0);
    CHECK(hit->id < 300);
  }
}
