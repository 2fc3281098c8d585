// The fraud signals' room (engine/signals.hpp) alone: each signal raised when it should,
// and not when it should not, with its evidence; windows evicted by time.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/signals.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

constexpr Millis t0 = 1'764'300'000'000;  // 2025-11-28 03:20 UTC
constexpr Millis minute = 60'000, hour = 60 * minute, day = 24 * hour;
const geo::LatLon scene{29.560, 106.550};

geo::LatLon offset_km(geo::LatLon p, double north_km, double east_km) {
  const double dlat = north_km / 111.195;
  const double dlon = east_km / (111.195 * std::cos(geo::deg2rad(p.lat)));
  return {p.lat + dlat, p.lon + dlon};
}

std::vector<std::string> plates(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }

const Signal* find(const std::vector<Signal>& v, std::string_view kind) {
  for (const auto& s : v)
    if (s.kind == kind) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("an ordinary report carries no signal") {
  SignalBook book;
  const auto ps = plates({"渝A12345", "渝B67890"});
  // Seen nearby shortly before, in no other incident.
  book.add_sighting("ST-1", "渝A12345", t0 - 20 * minute, offset_km(scene, 5, 0), t0);
  book.add_incident("I-000001", t0, ps, t0);
  CHECK(book.check("I-000001", scene, t0, ps).empty());
  // And an incident without vehicles.
  book.add_incident("I-000002", t0, {}, t0);
  CHECK(book.check("I-000002", scene, t0, {}).empty());
}

TEST_CASE("impossible_travel: 300 km away 10 minutes earlier is impossible, 30 km 30 minutes earlier is not") {
  SignalBook book;
  const auto ps = plates({"渝A12345"});
  SUBCASE("300 km, 10 min before") {
    const auto far = offset_km(scene, 0, 300);
    CHECK(book.add_sighting("ST-FAR", "渝A12345", t0 - 10 * minute, far, t0));
    book.add_incident("I-000001", t0, ps, t0);
    const auto sig = book.check("I-000001", scene, t0, ps);
    REQUIRE(sig.size() == 1);
    CHECK(sig[0].kind == "impossible_travel");
    CHECK(sig[0].plates == ps);
    REQUIRE(sig[0].sighting);
    CHECK(sig[0].sighting->station == "ST-FAR");
    CHECK(sig[0].sighting->ts == t0 - 10 * minute);
    CHECK(sig[0].sighting->distance_m == doctest::Approx(300'000).epsilon(0.001));
    CHECK(sig[0].sighting->elapsed_ms == 10 * minute);
    // 299.5 km (less the slack) at 120 km/h: 2 h 29 min 45 s.
    CHECK(sig[0].sighting->min_travel_ms == doctest::Approx(299.5 / 120 * 3600 * 1000).epsilon(0.001));
    CHECK(sig[0].detail.find("ST-FAR") != std::string::npos);
    CHECK(sig[0].detail.find("10 min before") != std::string::npos);
    CHECK(sig[0].detail.find("300.0 km") != std::string::npos);
    CHECK(sig[0].detail.find("2 h 29 min") != std::string::npos);
  }
  SUBCASE("30 km, 30 min before") {
    book.add_sighting("ST-NEAR", "渝A12345", t0 - 30 * minute, offset_km(scene, 30, 0), t0);
    book.add_incident("I-000001", t0, ps, t0);
    CHECK(book.check("I-000001", scene, t0, ps).empty());
  }
  SUBCASE("just over and just under 120 km/h") {
    // 61 km in 30 min needs 30 min 15 s (less the slack: 60.5 km, 30 min 15 s): impossible.
    book.add_sighting("ST-61", "渝A12345", t0 - 30 * minute, offset_km(scene, 0, 61), t0);
    book.add_incident("I-000001", t0, ps, t0);
    CHECK(find(book.check("I-000001", scene, t0, ps), "impossible_travel"));
    SignalBook b2;
    b2.add_sighting("ST-59", "渝A12345", t0 - 30 * minute, offset_km(scene, 0, 59), t0);
    CHECK(b2.check("I-000001", scene, t0, ps).empty());
  }
  SUBCASE("a sighting after the report counts too (known at the liability decision)") {
    book.add_incident("I-000001", t0, ps, t0);
    CHECK(book.check("I-000001", scene, t0, ps).empty());
    book.add_sighting("ST-FAR", "渝a·12345", t0 + 15 * minute, offset_km(scene, 200, 0), t0 + 16 * minute);
    const auto sig = book.check("I-000001", scene, t0, ps);
    REQUIRE(sig.size() == 1);
    CHECK(sig[0].detail.find("15 min after") != std::string::npos);
    CHECK(sig[0].plates == ps);  // as the incident wrote it
  }
  SUBCASE("the worst sighting is the evidence; a near one does not hide it") {
    book.add_sighting("ST-NEAR", "渝A12345", t0 - 50 * minute, offset_km(scene, 2, 0), t0);
    book.add_sighting("ST-FAR", "渝A12345", t0 - 20 * minute, offset_km(scene, 0, 150), t0);
    book.add_sighting("ST-MID", "渝A12345", t0 - 20 * minute, offset_km(scene, 0, 60), t0);
    const auto sig = book.check("I-000001", scene, t0, ps);
    REQUIRE(sig.size() == 1);
    CHECK(sig[0].sighting->station == "ST-FAR");
  }
  SUBCASE("at the scene's own station a minute before: not impossible (position slack)") {
    book.add_sighting("ST-HERE", "渝A12345", t0 - minute, offset_km(scene, 0.3, 0), t0);
    CHECK(book.check("I-000001", scene, t0, ps).empty());
  }
}

TEST_CASE("repeat_plate: 3 incidents within 30 days, counting this one; 2 are not") {
  SignalBook book;
  const auto a = plates({"渝A12345"});
  book.add_incident("I-000001", t0, a, t0);
  CHECK(book.check("I-000001", scene, t0, a).empty());
  book.add_incident("I-000002", t0 + 10 * day, plates({"渝A12345", "渝C00001"}), t0 + 10 * day);
  CHECK(!find(book.check("I-000002", scene, t0 + 10 * day, plates({"渝A12345", "渝C00001"})), "repeat_plate"));
  book.add_incident("I-000003", t0 + 20 * day, a, t0 + 20 * day);
  const auto sig = book.check("I-000003", scene, t0 + 20 * day, a);
  REQUIRE(sig.size() == 1);
  CHECK(sig[0].kind == "repeat_plate");
  CHECK(sig[0].plates == a);
  CHECK(sig[0].incidents == std::vector<std::string>{"I-000001", "I-000002"});
  CHECK(sig[0].detail.find("3 incidents within 30 days") != std::string::npos);
  CHECK(sig[0].detail.find("I-000001") != std::string::npos);
  CHECK(sig[0].detail.find("I-000002") != std::string::npos);

  SUBCASE("spread over more than 30 days: no signal") {
    SignalBook b;
    b.add_incident("I-1", t0, a, t0);
    b.add_incident("I-2", t0 + 16 * day, a, t0 + 16 * day);
    b.add_incident("I-3", t0 + 31 * day, a, t0 + 31 * day);
    CHECK(b.check("I-3", scene, t0 + 31 * day, a).empty());
    // I-2 with both neighbours within 30 days, but I-1 and I-3 31 days apart: no window
    // of 30 days holds all three.
    CHECK(b.check("I-2", scene, t0 + 16 * day, a).empty());
  }
  SUBCASE("later incidents count when checked again (the liability decision)") {
    SignalBook b;
    b.add_incident("I-1", t0, a, t0);
    b.add_incident("I-2", t0 + day, a, t0 + day);
    CHECK(b.check("I-1", scene, t0, a).empty());
    b.add_incident("I-3", t0 + 2 * day, a, t0 + 2 * day);
    const auto s = b.check("I-1", scene, t0, a);
    REQUIRE(s.size() == 1);
    CHECK(s[0].incidents == std::vector<std::string>{"I-2", "I-3"});
  }
  SUBCASE("the same incident added twice counts once") {
    SignalBook b;
    b.add_incident("I-1", t0, a, t0);
    b.add_incident("I-1", t0, a, t0);
    b.add_incident("I-2", t0 + day, plates({"渝A12345", "渝A 12345"}), t0 + day);
    CHECK(b.check("I-2", scene, t0 + day, a).empty());
  }
}

TEST_CASE("repeat_pair: the same two plates together twice within 30 days; once is not") {
  SignalBook book;
  const auto ab = plates({"渝A11111", "渝B22222"});
  book.add_incident("I-000001", t0, ab, t0);
  CHECK(book.check("I-000001", scene, t0, ab).empty());
  // Each with another vehicle: not the pair.
  book.add_incident("I-000002", t0 + day, plates({"渝A11111", "渝C33333"}), t0 + day);
  CHECK(book.check("I-000002", scene, t0 + day, plates({"渝A11111", "渝C33333"})).empty());
  const auto ba = plates({"渝B22222", "渝A11111", "渝D44444"});
  book.add_incident("I-000003", t0 + 2 * day, ba, t0 + 2 * day);
  const auto sig = book.check("I-000003", scene, t0 + 2 * day, ba);
  // 渝A11111 is now in 3 incidents (repeat_plate); the pair A/B twice (repeat_pair).
  REQUIRE(sig.size() == 2);
  CHECK(sig[0].kind == "repeat_plate");
  CHECK(sig[0].plates == plates({"渝A11111"}));
  CHECK(sig[1].kind == "repeat_pair");
  CHECK(sig[1].plates == plates({"渝B22222", "渝A11111"}));
  CHECK(sig[1].incidents == std::vector<std::string>{"I-000001"});
  CHECK(sig[1].detail.find("together in 2 incidents") != std::string::npos);
  CHECK(sig[1].detail.find("I-000001") != std::string::npos);
}

TEST_CASE("windows are evicted by time; memory is bounded") {
  SignalBook book;
  const auto a = plates({"渝A12345"});
  book.add_sighting("ST-FAR", "渝A12345", t0, offset_km(scene, 0, 300), t0);
  CHECK(book.sightings() == 1);
  // Outside the window around now: not kept.
  CHECK(!book.add_sighting("ST-FAR", "渝A99999", t0 - 6 * hour, scene, t0));
  // The same sighting again: not kept twice.
  CHECK(!book.add_sighting("ST-FAR", "渝A12345", t0, offset_km(scene, 0, 300), t0));
  book.evict(t0 + 4 * hour);
  CHECK(book.sightings() == 1);
  book.evict(t0 + 5 * hour + 1);
  CHECK(book.sightings() == 0);
  CHECK(book.plates() == 0);

  book.add_incident("I-1", t0, plates({"渝A1", "渝B2"}), t0);
  CHECK(book.plates() == 2);
  CHECK(book.pairs() == 1);
  book.evict(t0 + 30 * day + 1);
  CHECK(book.plates() == 0);
  CHECK(book.pairs() == 0);

  SignalConfig c;
  c.max_sightings = 100;
  c.max_per_plate = 4;
  SignalBook small(c);
  for (int i = 0; i < 1000; ++i)
    small.add_sighting("ST", "渝A" + std::to_string(i % 300), t0 + i, scene, t0 + i);
  CHECK(small.sightings() <= 100);
  for (int i = 0; i < 10; ++i) small.add_sighting("ST", "渝Z1", t0 + 2000 + i, scene, t0 + 2000);
  CHECK(small.sightings() <= 100);
}

TEST_CASE("deterministic: the same calls give the same signals") {
  auto run = [] {
    SignalBook b;
    for (int i = 0; i < 50; ++i)
      b.add_sighting("ST-" + std::to_string(i % 7), "渝A" + std::to_string(i % 5), t0 - i * minute,
                     offset_km(scene, i * 3.0, 0), t0);
    for (int i = 0; i < 6; ++i)
      b.add_incident("I-" + std::to_string(i), t0 + i * day, plates({"渝A1", "渝A2"}), t0 + i * day);
    return b.check("I-5", scene, t0 + 5 * day, plates({"渝A1", "渝A2", "渝A3"}));
  };
  const auto a = run();
  CHECK(!a.empty());
  CHECK(a == run());
}

TEST_CASE("merge: a signal once raised stays") {
  Signal a{"impossible_travel", "x", {"渝A1"}, {}, {}};
  Signal b{"repeat_plate", "y", {"渝A1"}, {}, {"I-1", "I-2"}};
  Signal b2{"repeat_plate", "y2", {"渝A1"}, {}, {"I-1", "I-2", "I-3"}};
  const auto m = SignalBook::merge({a, b}, {b2});
  REQUIRE(m.size() == 2);
  CHECK(m[0] == b2);
  CHECK(m[1] == a);
}

TEST_CASE("china_time") {
  CHECK(china_time(0) == "1970-01-01 08:00");
  CHECK(china_time(1'764'300'000'000) == "2025-11-28 11:20");
  CHECK(china_time(951'782'400'000) == "2000-02-29 08:00");
}
