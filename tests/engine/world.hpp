// The engine's test fixture, shared by the engine's test files: an Engine with its clock
// in the test's hands, a gateway and a console principal, and the commands a scenario
// sends. Each file adds what only it needs (a map, its own helpers) by deriving.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.hpp"

namespace engine_test {

using namespace dispatch;
using namespace dispatch::engine;

constexpr Millis t0 = 1'764'300'000'000;

inline geo::LatLon offset_km(geo::LatLon p, double north_km, double east_km) {
  return {p.lat + north_km / 111.195, p.lon + east_km / (111.195 * std::cos(geo::deg2rad(p.lat)))};
}

inline rec::Unit unit(std::string id, UnitKind k = UnitKind::moto) {
  rec::Unit u;
  u.id = std::move(id);
  u.kind = k;
  u.callsign = u.id;
  return u;
}

struct World {
  Engine engine;
  Principal gateway{"gateway", "gw", true, {}, {}};
  Principal console{"console", "desk", false, {}, {}};
  Output out;
  Millis now = t0;
  explicit World(Config c = {}) : engine(c) {}
  void roster(std::vector<rec::Unit> units) {
    Snapshot s;
    s.units = std::move(units);
    engine.restore(s, now);
  }
  Output& pos(const std::string& id, geo::LatLon p) {
    cmd::Position c{id, p.lat, p.lon, now, {}, {}};
    out.clear();
    engine.positions(std::span(&c, 1), Origin{10, &gateway}, now, out);
    return out;
  }
  Output& run(Command c, const Principal& who) {
    out.clear();
    engine.handle(c, Origin{10, &who}, now, out);
    return out;
  }
  Output& report(const std::string& id, geo::LatLon p, Severity s = Severity::injury) {
    cmd::Report r;
    r.id = id;
    r.lat = p.lat;
    r.lon = p.lon;
    r.severity = s;
    return run(r, console);
  }
  Output& tick(Millis advance) {
    now += advance;
    out.clear();
    engine.tick(now, out);
    return out;
  }
  template <class T>
  static std::vector<T> sent(const Output& o) {
    std::vector<T> v;
    for (const auto& m : o.messages)
      if (auto* p = std::get_if<T>(&m.payload)) v.push_back(*p);
    return v;
  }
};

}  // namespace engine_test
