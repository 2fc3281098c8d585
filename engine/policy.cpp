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
                                             Millis now,
                                             std::vector<policy::Weighed>* examined) const {
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
    policy::Choice c{hit->id, hit->distance_m, eta_for(kind, hit->distance_m)};
    if (examined) {
      // The first few nearest by straight line: the chosen one, and the next ones farther.
      examined->push_back({c.unit, c.distance_m, c.eta_s, "chosen"});
      for (const auto& h : idx.nearest_k(target, 4, accept))
        if (h.id != c.unit) examined->push_back({h.id, h.distance_m, eta_for(kind, h.distance_m), "farther"});
    }
    return c;
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
  if (examined) {
    examined->push_back({best->unit, best->distance_m, best->eta_s, "chosen"});
    for (std::size_t i = 0; i < hits.size(); ++i)
      if (hits[i].id != best->unit)
        examined->push_back({hits[i].id, hits[i].distance_m, seconds[i],
                             std::isfinite(seconds[i]) ? "farther" : "unreachable"});
  }
  return best;
}

namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
}

void append_weighed(std::string& out, std::string_view unit, double distance_m, double eta_s,
                    const char* why) {
  if (out.size() > 1) out += ',';
  out += "{\"unit\":";
  append_json_string(out, unit);
  char buf[96];
  std::snprintf(buf, sizeof buf, ",\"distance_m\":%.0f,\"eta_s\":", distance_m);
  out += buf;
  if (std::isfinite(eta_s)) {
    std::snprintf(buf, sizeof buf, "%.0f", eta_s);
    out += buf;
  } else {
    out += "null";
  }
  out += ",\"why\":\"";
  out += why;
  out += "\"}";
}

}  // namespace

// The nearest few units that could not be taken: the 4 nearest of the kind's index of
// unassignable units (busy, off duty, stale), stale ones among the nearest of the
// assignable index, and those that declined this need; kept
// when within the chosen unit's distance (docs/performance.md "Candidates" has the cost).
std::string Engine::candidates_json(UnitKind kind, geo::LatLon target,
                                    const std::vector<std::uint32_t>& excluded, Millis now,
                                    const policy::Choice& chosen,
                                    std::vector<policy::Weighed> examined) const {
  constexpr std::size_t max_other = 4;  // units that could not go, kept
  const double limit = chosen.distance_m * 1.001 + 1;
  std::vector<std::pair<double, std::uint32_t>> near;
  near.reserve(max_other + excluded.size());
  for (const auto& h : unassignable_[static_cast<int>(kind)].nearest_k(target, max_other, [](std::uint32_t) { return true; }))
    if (h.distance_m <= limit && h.id != chosen.unit) near.emplace_back(h.distance_m, h.id);
  // Units gone stale since the last tick are still in the assignable index: look among
  // its few nearest (bounded; the tick moves them to the other index).
  const Millis fresh_after = now - config_.stale_after_ms;
  for (const auto& h : index_[static_cast<int>(kind)].nearest_k(target, 2 * max_other, [](std::uint32_t) { return true; }))
    if (h.distance_m <= limit && h.id != chosen.unit && units_[h.id].pos_ts < fresh_after)
      near.emplace_back(h.distance_m, h.id);
  for (const std::uint32_t slot : excluded) {
    const Unit& u = units_[slot];
    if (slot == chosen.unit || u.kind != kind || !u.has_pos) continue;
    const double d = geo::distance_m(u.pos, target);
    if (d <= limit && std::none_of(near.begin(), near.end(), [&](const auto& x) { return x.second == slot; }))
      near.emplace_back(d, slot);
  }
  std::sort(near.begin(), near.end());
  if (near.size() > max_other) near.resize(max_other);
  const std::size_t kept = near.size();
  std::vector<policy::Weighed> others;
  for (std::size_t i = 0; i < kept; ++i) {
    const std::uint32_t slot = near[i].second;
    const Unit& u = units_[slot];
    const char* why = std::find(excluded.begin(), excluded.end(), slot) != excluded.end()
                          ? "declined"
                      : u.status == UnitStatus::off_duty  ? "off_duty"
                      : u.status != UnitStatus::available ? "busy"
                      : u.pos_ts < fresh_after            ? "stale"
                                                          : "busy";
    others.push_back({slot, near[i].first, std::numeric_limits<double>::quiet_NaN(), why});
  }
  // The chosen one, then the others examined (least ETA first) and the ones that could not
  // be taken, at most max_candidates in all, by straight-line distance after the chosen.
  std::vector<policy::Weighed> list;
  list.push_back({chosen.unit, chosen.distance_m, chosen.eta_s, "chosen"});
  std::erase_if(examined, [&](const policy::Weighed& w) { return w.unit == chosen.unit; });
  std::stable_sort(examined.begin(), examined.end(), [](const auto& a, const auto& b) {
    return a.eta_s < b.eta_s;  // +infinity (unreachable) last
  });
  const std::size_t room = policy::max_candidates - 1 - others.size();
  for (std::size_t i = 0; i < examined.size() && i < room; ++i) list.push_back(examined[i]);
  list.insert(list.end(), others.begin(), others.end());
  std::stable_sort(list.begin() + 1, list.end(),
                   [](const auto& a, const auto& b) { return a.distance_m < b.distance_m; });
  std::string out = "[";
  out.reserve(80 * list.size() + 2);
  for (const auto& w : list) append_weighed(out, units_[w.unit].id(), w.distance_m, w.eta_s, w.why);
  out += ']';
  return out;
}

std::string Engine::manual_candidates_json(const Unit& u, geo::LatLon target) const {
  std::string out = "[";
  append_weighed(out, u.id(), u.has_pos ? geo::distance_m(u.pos, target) : 0.0,
                 u.has_pos ? eta_to(u, target) : std::numeric_limits<double>::quiet_NaN(), "manual");
  out += ']';
  return out;
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
