// The policy (wire-contract.md section 7).
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"
#include "engine/policy.hpp"

namespace dispatch::engine {

using namespace detail;

namespace policy {

Plan plan(const rec::Incident& inc, const Inputs& in) {
  Plan p;
  const geo::LatLon scene{inc.lat, inc.lon};
  p.needs.push_back({UnitKind::moto, std::nullopt, Task::scene, scene});
  if (inc.severity != Severity::critical) return p;

  // Air-ground rescue (section 7): the helicopter, when one can reach the scene sooner
  // than a ground transfer can reach a trauma hospital, or the scene lies outside the
  // urban districts. Its target is the landing zone nearest the scene within lz_max_m (a
  // ground unit secures it), else the scene. The air way: the helicopter's ETA to its
  // target (and the ground leg bringing the patient from the scene to the landing zone,
  // whichever is longer), then the flight to a hospital with a helipad.
  const Geography* g = in.geography;
  const auto district = g ? g->district(scene) : std::nullopt;
  const bool rural = g && (!district || !district->urban);
  const auto ground_hospital = g ? g->trauma_hospital(scene) : std::nullopt;
  std::optional<PlaceRef> lz = g ? g->landing_zone(scene) : std::nullopt;
  double lz_m = lz ? geo::distance_m(scene, lz->pos) : 0;
  if (lz && lz_m > in.lz_max_m) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "nearest landing zone %s is %.1f km from the scene (over %.1f km): the helicopter lands at the scene",
                  lz->name.c_str(), lz_m / 1000, in.lz_max_m / 1000);
    p.reasons.push_back({"landing_zone", buf});
    lz.reset();
    lz_m = 0;
  }
  const geo::LatLon target = lz ? lz->pos : scene;
  const auto air_hospital = g ? g->helipad_hospital(target) : std::nullopt;
  const double ground_s = ground_hospital
                              ? geo::ground_eta_s(geo::distance_m(scene, ground_hospital->pos))
                              : std::numeric_limits<double>::infinity();
  std::optional<double> air_s;
  if (auto hit = in.nearest(UnitKind::heli, target, {})) {
    const double to_target = std::max(hit->eta_s, lz ? geo::ground_eta_s(lz_m) : 0.0);
    air_s = to_target + (air_hospital ? geo::air_leg_s(geo::distance_m(target, air_hospital->pos)) : 0.0);
  }
  const bool air_wins = air_s && *air_s < ground_s;
  if (in.air ? !*in.air : (!rural && !air_wins)) {
    p.hospital = ground_hospital;
    if (ground_hospital) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "ground transfer to %s (%.0f s)%s", ground_hospital->name.c_str(),
                    ground_s, air_s ? "" : "; no helicopter free");
      p.reasons.push_back({"hospital", buf});
    }
    return p;
  }
  p.air = true;
  p.landing_zone = lz;
  p.needs.push_back({UnitKind::heli, std::nullopt, lz ? Task::landing_zone : Task::scene, target});
  if (lz) p.needs.push_back({UnitKind::moto, UnitKind::car, Task::secure_lz, lz->pos});
  p.hospital = air_hospital ? air_hospital : ground_hospital;
  const std::string hname = p.hospital ? p.hospital->name : "";
  char buf[300];
  std::snprintf(buf, sizeof buf, "air-ground rescue%s: %s%s, hospital %s (air %s s, ground %s s)",
                rural ? " (rural scene)" : "", lz ? "landing zone " : "to the scene",
                lz ? lz->name.c_str() : "", hname.empty() ? "unknown" : hname.c_str(),
                air_s ? std::to_string(std::lround(*air_s)).c_str() : "?",
                std::isfinite(ground_s) ? std::to_string(std::lround(ground_s)).c_str() : "?");
  p.reasons.push_back({"air_rescue", buf});
  return p;
}

}  // namespace policy

// Applies the policy's plan to the incident: its needs, its hospital and, with `out`,
// the reasons in its timeline.
void Engine::plan_needs(Incident& inc, Millis now, Output* out, std::optional<bool> air) {
  policy::Inputs in;
  in.air = air;
  in.geography = geography_;
  in.lz_max_m = config_.lz_max_km * 1000;
  in.nearest = [&](UnitKind kind, geo::LatLon target, const std::vector<std::uint32_t>& skip) {
    return choose(kind, target, skip, now);
  };
  policy::Plan plan = policy::plan(inc.rec, in);
  for (const auto& pn : plan.needs) {
    Need n;
    n.kind = pn.kind;
    n.or_kind = pn.or_kind;
    n.task = pn.task;
    n.target = pn.target;
    inc.needs.push_back(std::move(n));
  }
  inc.rec.hospital = plan.hospital ? plan.hospital->name : "";
  if (plan.air) {
    Rescue r;
    r.target = plan.landing_zone ? Task::landing_zone : Task::scene;
    r.landing_zone = plan.landing_zone;
    r.hospital = plan.hospital;
    inc.rescue = std::move(r);
  }
  if (!out) return;  // restore: the steps come back from the timeline
  for (auto& r : plan.reasons) timeline(inc, now, std::move(r.event), std::move(r.detail), system_actor, *out);
  if (plan.air && plan.hospital)
    rescue_step(inc, "hospital_notified",
                "hospital " + plan.hospital->name + " notified", now,
                system_actor, *out);
}

// The nearest assignable unit of a kind for a target (section 7; section 8 with roads):
// helicopters, and every kind without roads, by straight line; with roads, the
// Config::road_candidates nearest ground units by straight line, then the least road ETA
// (ties: distance). Unreachable candidates are skipped; none reachable: the straight line.
std::optional<policy::Choice> Engine::choose(UnitKind kind, geo::LatLon target,
                                             const std::vector<std::uint32_t>& skip,
                                             Millis now) const {
  const Millis fresh_after = now - config_.stale_after_ms;
  auto accept = [&](std::uint32_t slot) {
    const Unit& u = units_[slot];
    return u.pos_ts >= fresh_after && u.status == UnitStatus::available &&
           std::find(skip.begin(), skip.end(), slot) == skip.end();
  };
  const auto& idx = index_[static_cast<int>(kind)];
  if (!travel_ || kind == UnitKind::heli || config_.road_candidates == 0) {
    auto hit = idx.nearest(target, accept);
    if (!hit) return std::nullopt;
    return policy::Choice{hit->id, hit->distance_m, eta_for(kind, hit->distance_m)};
  }
  const auto hits = idx.nearest_k(target, config_.road_candidates, accept);
  if (hits.empty()) return std::nullopt;
  std::vector<geo::LatLon> from;
  from.reserve(hits.size());
  for (const auto& h : hits) from.push_back(units_[h.id].pos);
  std::vector<double> seconds(hits.size(), std::numeric_limits<double>::infinity());
  travel_->to_target(target, from, seconds);
  std::optional<policy::Choice> best;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (!std::isfinite(seconds[i])) continue;
    if (!best || seconds[i] < best->eta_s ||
        (seconds[i] == best->eta_s && hits[i].distance_m < best->distance_m))
      best = policy::Choice{hits[i].id, hits[i].distance_m, seconds[i]};
  }
  if (!best) best = policy::Choice{hits[0].id, hits[0].distance_m, eta_for(kind, hits[0].distance_m)};
  return best;
}

double Engine::eta_to(const Unit& u, geo::LatLon target) const {
  if (!u.has_pos) return 0;
  const double d = geo::distance_m(u.pos, target);
  if (travel_ && u.kind != UnitKind::heli) {
    double s = std::numeric_limits<double>::infinity();
    travel_->to_target(target, std::span(&u.pos, 1), std::span(&s, 1));
    if (std::isfinite(s)) return s;
  }
  return eta_for(u.kind, d);
}

}  // namespace dispatch::engine
