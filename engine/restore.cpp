// Restore: the engine rebuilt from the store's snapshot at start.
#include "engine/engine.hpp"

#include <algorithm>
#include <unordered_map>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

void Engine::restore(const Snapshot& s, Millis now) {
  // Exactly as many slots as units (a first restore; later ones grow as usual).
  if (const std::size_t want = units_.size() + s.units.size(); want > units_.capacity())
    units_.reserve(units_.empty() ? want : std::max(want, 2 * units_.capacity()));
  for (const auto& ru : s.units) {
    if (find_slot(ru.id) != npos_slot) continue;
    Unit u;
    u.roster_ = pack_roster(ru);
    u.kind = ru.kind;
    u.status = ru.status;
    units_.push_back(u);
    index_id(static_cast<std::uint32_t>(units_.size() - 1));
  }
  for (const auto& k : s.report_ids) source(k.source).reports.emplace(k.report_id, k.incident);
  incident_seq_ = std::max(incident_seq_, s.max_incident_seq);
  assignment_seq_ = std::max(assignment_seq_, s.max_assignment_seq);
  page_seq_ = std::max(page_seq_, s.max_page_seq);

  // The air decision each incident's timeline records (the fleet has no positions yet, so
  // the policy cannot weigh it again): air_rescue, or a ground transfer (hospital).
  std::unordered_map<std::string_view, bool> air_decided;
  for (const auto& t : s.timeline) {
    if (t.event == "air_rescue") air_decided[t.incident] = true;
    else if (t.event == "hospital") air_decided.emplace(t.incident, false);
  }
  for (const auto& ri : s.open_incidents) {
    auto inc = std::make_unique<Incident>();
    inc->rec = ri;
    incident_seq_ = std::max(incident_seq_, ri.seq);
    std::optional<bool> air;
    if (auto it = air_decided.find(ri.id); it != air_decided.end()) air = it->second;
    if (inc->rec.state != IncidentState::remote) plan_needs(*inc, now, nullptr, air);
    Source& src = source(ri.source);
    src.reports.emplace(ri.report_id, ri.id);
    if (is_open(ri.state) && !incidents_.count(ri.id)) {
      inc->counted = true;
      ++src.open;
    }
    incidents_.emplace(ri.id, std::move(inc));
  }
  std::vector<const rec::Assignment*> as;
  for (const auto& ra : s.assignments) as.push_back(&ra);
  std::sort(as.begin(), as.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
  for (const auto* ra : as) {
    Incident* inc = find_incident(ra->incident);
    Unit* u = find_unit(ra->unit);
    if (!inc || !u) continue;
    assignment_seq_ = std::max(assignment_seq_, ra->seq);
    auto a = std::make_unique<Assignment>();
    a->rec = *ra;
    a->incident = inc;
    a->unit = slot_of(*u);
    // Match the assignment to a need of its kind and task; manual extras add one.
    std::size_t need = inc->needs.size();
    for (std::size_t i = 0; i < inc->needs.size(); ++i) {
      auto& n = inc->needs[i];
      if (n.fits(u->kind) && n.task == ra->task && !n.done && !n.active) {
        need = i;
        break;
      }
    }
    if (need == inc->needs.size()) {
      // A need of this kind already served (or none planned): find one to attach to.
      for (std::size_t i = 0; i < inc->needs.size() && need == inc->needs.size(); ++i)
        if (inc->needs[i].fits(u->kind) && inc->needs[i].task == ra->task) need = i;
      if (need == inc->needs.size()) {
        Need n;
        n.kind = u->kind;
        n.task = ra->task;
        n.target = {ra->lat, ra->lon};
        inc->needs.push_back(n);
      }
    }
    a->need = need;
    Need& n = inc->needs[need];
    if (is_active(ra->state)) {
      n.active = a.get();
      u->active = a.get();
      if (ra->state == AssignmentState::assigned) {
        a->ack_deadline = std::max(ra->assigned_ts + config_.ack_within_ms, now + config_.ack_within_ms);
        pending_ack_.push_back(a.get());
      }
    } else if (ra->state == AssignmentState::cleared) {
      n.done = true;
    } else {
      n.excluded.push_back(slot_of(*u));
    }
    assignments_.emplace(a->rec.id, a.get());
    inc->assignments.push_back(std::move(a));
  }
  for (const auto& t : s.timeline)
    if (Incident* inc = find_incident(t.incident)) inc->timeline.push_back(t);
  for (auto& [id, inc] : incidents_) {
    std::uint8_t kinds = 0;
    for (auto& n : inc->needs)
      if (!n.done && !n.active && is_open(inc->rec.state)) kinds |= n.kind_bits();
    set_waiting(*inc, kinds);
  }
  // A unit whose assignment did not survive is free again.
  for (auto& u : units_) {
    if (!u.active && (u.status == UnitStatus::assigned || u.status == UnitStatus::en_route ||
                      u.status == UnitStatus::on_scene))
      u.status = UnitStatus::available;
  }
  // Each unit where it was last seen (its newest track point), stale or not by its age:
  // a restarted or standby server knows where the fleet is before the next fixes come.
  for (const auto& p : s.last_positions) {
    Unit* u = find_unit(p.unit);
    if (!u || (u->has_pos && u->pos_ts >= p.ts)) continue;
    u->has_pos = true;
    u->pos = geo::LatLon{p.lat, p.lon};
    u->pos_ts = p.ts;
    u->track_pos = u->pos;
    u->track_ts = p.ts;
    u->stale = now - p.ts > config_.stale_after_ms;
    reindex(*u, now);
  }
  claim_seq_ = std::max(claim_seq_, s.max_claim_seq);
  for (const auto& c : s.claims) {
    claim_seq_ = std::max(claim_seq_, c.seq);
    if (Incident* inc = find_incident(c.incident)) inc->claims.push_back(c.id);
    claims_.emplace(c.id, c);
  }
  for (const auto& p : s.undelivered_pages) {
    track_page(p, 0);
    page_seq_ = std::max(page_seq_, p.seq);
  }
  restore_stations(s.stations, now);  // engine/stations.cpp
  for (auto& [id, inc] : incidents_) rebuild_rescue_and_clocks(*inc);
  // Service levels: the store's history, as the live path would have counted it.
  for (const auto& x : s.service_samples) {
    ServiceLevels& sl = service_[x.district + "|" + std::string(to_string(x.severity))];
    ServiceLevel* level = x.stage == "to_assign"       ? &sl.to_assign
                          : x.stage == "to_scene"      ? &sl.to_scene
                          : x.stage == "to_liability"  ? &sl.to_liability
                          : x.stage == "to_claim_paid" ? &sl.to_claim_paid
                          : x.stage == "airborne"      ? &sl.call_to_airborne
                          : x.stage == "landed"        ? &sl.call_to_landed
                          : x.stage == "transferred"   ? &sl.call_to_hospital
                                                       : nullptr;
    if (level) level->add(x.seconds);
  }
}

}  // namespace dispatch::engine
