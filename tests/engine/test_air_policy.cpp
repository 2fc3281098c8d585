// The v2 air-ground policy (wire-contract.md section 7) on small drawn maps: the
// helicopter's target (a landing zone within lz_max_km, else the scene), the team that
// secures the landing zone, the helicopter chosen by ETA to its target, the ground leg in
// the air-or-ground comparison, and no places at all.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "tests/engine/world.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

using engine_test::t0;
using engine_test::unit;
const geo::LatLon S{29.80, 106.40};  // the scene

geo::LatLon km(double north, double east) {
  return {S.lat + north / 111.195, S.lon + east / (111.195 * std::cos(geo::deg2rad(S.lat)))};
}

// A map whose places a test lists; every point is in one district, urban or not.
class Drawn : public Geography {
 public:
  bool urban = false;
  std::vector<PlaceRef> lzs, trauma, helipad;
  std::optional<DistrictRef> district(geo::LatLon) const override {
    return DistrictRef{urban ? "城区" : "山区县", urban};
  }
  static std::optional<PlaceRef> nearest(const std::vector<PlaceRef>& v, geo::LatLon p) {
    const PlaceRef* best = nullptr;
    for (const auto& x : v)
      if (!best || geo::distance_m(p, x.pos) < geo::distance_m(p, best->pos)) best = &x;
    return best ? std::optional<PlaceRef>(*best) : std::nullopt;
  }
  std::optional<PlaceRef> trauma_hospital(geo::LatLon p) const override { return nearest(trauma, p); }
  std::optional<PlaceRef> helipad_hospital(geo::LatLon p) const override { return nearest(helipad, p); }
  std::optional<PlaceRef> landing_zone(geo::LatLon p) const override { return nearest(lzs, p); }
};

struct World : engine_test::World {
  Drawn map;
  explicit World(Config c = {}, bool with_map = true) : engine_test::World(c) {
    if (with_map) engine.set_geography(&map);
  }
  // Units by id, their kind from its first letter (H helicopter, C car, else moto).
  void units(std::vector<std::pair<std::string, geo::LatLon>> list) {
    std::vector<rec::Unit> roster_units;
    for (auto& [id, p] : list)
      roster_units.push_back(unit(id, id[0] == 'H' ? UnitKind::heli : id[0] == 'C' ? UnitKind::car : UnitKind::moto));
    roster(std::move(roster_units));
    for (auto& [id, p] : list) pos(id, p);
  }
  std::vector<ev::Assign> critical(const std::string& id, geo::LatLon p = S) {
    return sent<ev::Assign>(report(id, p, Severity::critical));
  }
  static std::optional<ev::Assign> task(const std::vector<ev::Assign>& as, Task t) {
    for (const auto& a : as)
      if (a.task == t) return a;
    return std::nullopt;
  }
  static std::optional<ev::Assign> of(const std::vector<ev::Assign>& as, const std::string& unit) {
    for (const auto& a : as)
      if (a.unit == unit) return a;
    return std::nullopt;
  }
};

}  // namespace

TEST_CASE("a landing zone within lz_max_km: the helicopter there, the nearest other ground unit secures it") {
  World w;
  const auto lz = km(3, 0);
  w.map.lzs = {{"LZ1", "山区停机坪", lz}, {"LZ2", "远处停机坪", km(-20, 0)}};
  w.map.helipad = w.map.trauma = {{"T", "西南医院", km(-60, 0)}};
  // M1 is nearest the scene; M2 is nearest the landing zone; M3 far off.
  w.units({{"M1", km(0.5, 0)}, {"M2", km(3.5, 0)}, {"M3", km(30, 0)}, {"H1", km(40, 0)}});
  auto as = w.critical("c1");
  REQUIRE(as.size() == 3);
  auto heli = World::of(as, "H1");
  REQUIRE(heli);
  CHECK(heli->task == Task::landing_zone);
  CHECK(heli->lat == doctest::Approx(lz.lat));
  CHECK(heli->eta_s == doctest::Approx(geo::air_eta_s(geo::distance_m(km(40, 0), lz))).epsilon(0.01));
  CHECK(World::of(as, "M1")->task == Task::scene);
  auto sec = World::task(as, Task::secure_lz);
  REQUIRE(sec);
  CHECK(sec->unit == "M2");
  CHECK(sec->lat == doctest::Approx(lz.lat));
  CHECK(sec->lon == doctest::Approx(lz.lon));
}

TEST_CASE("the nearest landing zone beyond lz_max_km: the helicopter flies to the scene, nobody secures") {
  Config c;
  c.lz_max_km = 10;
  World w(c);
  w.map.lzs = {{"LZ-far", "城口停机坪", km(100, 0)}};
  w.map.helipad = w.map.trauma = {{"T", "西南医院", km(-60, 0)}};
  w.units({{"M1", km(0.5, 0)}, {"M2", km(1, 0)}, {"H1", km(40, 0)}});
  auto as = w.critical("c1");
  REQUIRE(as.size() == 2);
  auto heli = World::of(as, "H1");
  REQUIRE(heli);
  CHECK(heli->task == Task::scene);
  CHECK(heli->lat == doctest::Approx(S.lat));
  CHECK(heli->lon == doctest::Approx(S.lon));
  CHECK_FALSE(World::task(as, Task::secure_lz));
  const Incident& inc = *w.engine.incident(heli->incident);
  CHECK(std::any_of(inc.timeline.begin(), inc.timeline.end(),
                    [](const rec::Timeline& t) { return t.event == "landing_zone"; }));

  SUBCASE("a wider lz_max_km takes that landing zone") {
    Config wide;
    wide.lz_max_km = 150;
    World w2(wide);
    w2.map = w.map;
    w2.units({{"M1", km(0.5, 0)}, {"M2", km(1, 0)}, {"H1", km(40, 0)}});
    auto as2 = w2.critical("c1");
    CHECK(World::of(as2, "H1")->task == Task::landing_zone);
  }
}

TEST_CASE("no places loaded: a critical rural accident still gets a helicopter, to the scene") {
  World w;  // districts only: rural
  w.units({{"M1", km(0.5, 0)}, {"H1", km(40, 0)}});
  auto as = w.critical("c1");
  auto heli = World::of(as, "H1");
  REQUIRE(heli);
  CHECK(heli->task == Task::scene);
  CHECK(heli->lat == doctest::Approx(S.lat));

  SUBCASE("no map at all: no hospital to reach by road, so the helicopter wins") {
    World bare(Config{}, false);
    bare.units({{"M1", km(0.5, 0)}, {"H1", km(40, 0)}});
    auto as2 = bare.critical("c2");
    REQUIRE(World::of(as2, "H1"));
    CHECK(World::of(as2, "H1")->task == Task::scene);
  }
}

TEST_CASE("the helicopter is chosen by ETA to its target, not to the scene") {
  World w;
  const auto lz = km(0, 9);  // 9 km east of the scene
  w.map.lzs = {{"LZ", "东侧停机坪", lz}};
  w.map.helipad = w.map.trauma = {{"T", "西南医院", km(-60, 0)}};
  // H1 is 12 km west of the scene (21 km from the LZ); H2 is 14 km east of the scene
  // (5 km from the LZ).
  w.units({{"M1", km(0.5, 0)}, {"M2", km(0, 8)}, {"H1", km(0, -12)}, {"H2", km(0, 14)}});
  auto as = w.critical("c1");
  auto heli = World::task(as, Task::landing_zone);
  REQUIRE(heli);
  CHECK(heli->unit == "H2");
}

TEST_CASE("the air-or-ground comparison counts the ground leg from the scene to the landing zone") {
  // Urban scene, a trauma centre 5 km away (ground about 780 s). The helicopter stands at
  // the scene: 180 s + 9 km of flight to the landing zone is quick, but the patient needs
  // 9 km x 1.3 at 30 km/h (about 1,400 s) to reach it: the ground transfer wins.
  World w;
  w.map.urban = true;
  w.map.lzs = {{"LZ", "远停机坪", km(0, 9)}};
  w.map.helipad = w.map.trauma = {{"T", "医院", km(0, -5)}};
  w.units({{"M1", km(0.5, 0)}, {"M2", km(0.7, 0)}, {"H1", S}});
  auto as = w.critical("c1");
  CHECK(as.size() == 1);
  CHECK_FALSE(World::of(as, "H1"));

  SUBCASE("with the landing zone next to the scene, the air way wins") {
    World near;
    near.map.urban = true;
    near.map.lzs = {{"LZ", "近停机坪", km(0.3, 0)}};
    near.map.helipad = {{"T2", "远医院", km(0, -30)}};
    near.map.trauma = {{"T1", "地面医院", km(0, -40)}};
    near.units({{"M1", km(0.5, 0)}, {"M2", km(0.7, 0)}, {"H1", S}});
    auto as2 = near.critical("c2");
    REQUIRE(World::of(as2, "H1"));
    CHECK(World::of(as2, "H1")->task == Task::landing_zone);
  }
}

TEST_CASE("secure_lz: a car when no other motorcycle team is free; waits for either kind") {
  World w;
  const auto lz = km(3, 0);
  w.map.lzs = {{"LZ1", "停机坪", lz}};
  w.map.helipad = w.map.trauma = {{"T", "医院", km(-60, 0)}};
  w.units({{"M1", km(0.5, 0)}, {"C1", km(2, 0)}, {"H1", km(40, 0)}});
  auto as = w.critical("c1");
  auto sec = World::task(as, Task::secure_lz);
  REQUIRE(sec);
  CHECK(sec->unit == "C1");

  SUBCASE("nobody free: it waits, and a car coming on duty takes it") {
    World w2;
    w2.map = w.map;
    w2.units({{"M1", km(0.5, 0)}, {"H1", km(40, 0)}, {"C9", km(50, 0)}});
    // C9 off duty before the report.
    w2.out.clear();
    w2.engine.handle(cmd::Status{"C9", UnitStatus::off_duty}, Origin{10, &w2.gateway}, w2.now, w2.out);
    auto as2 = w2.critical("c2");
    CHECK_FALSE(World::task(as2, Task::secure_lz));
    CHECK(w2.engine.waiting_count() == 1);
    w2.out.clear();
    w2.engine.handle(cmd::Status{"C9", UnitStatus::available}, Origin{10, &w2.gateway}, w2.now, w2.out);
    bool got = false;
    for (const auto& m : w2.out.messages)
      if (auto* a = std::get_if<ev::Assign>(&m.payload)) got = got || (a->unit == "C9" && a->task == Task::secure_lz);
    CHECK(got);
    CHECK(w2.engine.waiting_count() == 0);
  }
}
