// The lifecycle of needs and assignments: an assignment is created, moves along
// (ack, arrived) and is retired by one path (retire()); needs wait in the queues until a
// unit is free; the incident's state follows its needs.
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

Assignment* Engine::assignment_for(std::string_view id, const Origin& o, Output& out) {
  Assignment* a = find_assignment(id);
  if (!a) {
    error(o, ErrorCode::unknown_assignment, "no such assignment", std::string(id), out);
    return nullptr;
  }
  const Unit& u = units_[a->unit];
  const bool pager = o.who && o.who->role == "pager";
  if (o.who && !pager && o.who->role != "console" && !o.who->may_speak_for(u.id())) {
    error(o, ErrorCode::forbidden, "this token does not speak for the assigned unit",
          std::string(id), out);
    return nullptr;
  }
  return a;
}

void Engine::on_ack(const cmd::Ack& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = assignment_for(c.assignment, o, out);
  if (!a) return;
  if (a->rec.state == AssignmentState::en_route || a->rec.state == AssignmentState::on_scene)
    return;  // a repeated ack (unit and pager both) changes nothing
  if (a->rec.state != AssignmentState::assigned)
    return error(o, ErrorCode::conflict,
                 "assignment is " + std::string(to_string(a->rec.state)), c.assignment, out);
  Unit& u = units_[a->unit];
  a->rec.state = AssignmentState::en_route;
  a->rec.acked_ts = now;
  std::erase(pending_ack_, a);
  set_unit_status(u, UnitStatus::en_route, now, actor_of(o), "acked " + a->rec.id, out);
  out.writes.push_back(a->rec);
  timeline(*a->incident, now, "acked", std::string(u.id()) + " acknowledged " + a->rec.id, actor_of(o), out);
  update_incident_state(*a->incident, now, out);
  out.must_wait = true;
}

void Engine::on_decline(const cmd::Decline& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = assignment_for(c.assignment, o, out);
  if (!a) return;
  if (!is_active(a->rec.state))
    return error(o, ErrorCode::conflict,
                 "assignment is " + std::string(to_string(a->rec.state)), c.assignment, out);
  retire(*a, AssignmentState::declined, c.reason.empty() ? "declined" : c.reason,
         {.tell_unit = false, .redispatch = true}, now, actor_of(o), out);
  out.must_wait = true;
  // The unit is free again: the incidents that wait for one (contract section 7: assigned
  // as soon as a unit becomes assignable) may take it; the one it declined will not.
  if (waiting_count_) dispatch_waiting(now, out);
}

void Engine::on_arrived(const cmd::Arrived& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = assignment_for(c.assignment, o, out);
  if (!a) return;
  if (a->rec.state == AssignmentState::on_scene) return;
  if (a->rec.state != AssignmentState::assigned && a->rec.state != AssignmentState::en_route)
    return error(o, ErrorCode::conflict,
                 "assignment is " + std::string(to_string(a->rec.state)), c.assignment, out);
  Unit& u = units_[a->unit];
  if (a->rec.state == AssignmentState::assigned) {  // arriving implies the ack
    a->rec.acked_ts = now;
    std::erase(pending_ack_, a);
  }
  a->rec.state = AssignmentState::on_scene;
  a->rec.arrived_ts = now;
  {
    bool first = true;
    // To the scene: the first unit sent to the scene itself (not a landing zone).
    for (const auto& other : a->incident->assignments)
      if (other.get() != a && other->rec.arrived_ts && other->rec.task == Task::scene) first = false;
    if (first && a->rec.task == Task::scene) service_of(*a->incident).to_scene.add(static_cast<double>(now - a->incident->rec.received_ts) / 1000.0);
  }
  set_unit_status(u, UnitStatus::on_scene, now, actor_of(o), "arrived " + a->rec.id, out);
  out.writes.push_back(a->rec);
  timeline(*a->incident, now, "arrived", std::string(u.id()) + " on scene", actor_of(o), out);
  if (a->rec.task == Task::secure_lz && a->incident->rescue) {
    const auto& lz = a->incident->rescue->landing_zone;
    rescue_step(*a->incident, "lz_secured",
                std::string(u.id()) + " secured the landing zone" + (lz ? " " + lz->name : std::string()), now,
                actor_of(o), out);
  }
  update_incident_state(*a->incident, now, out);
  out.must_wait = true;
}

void Engine::on_cleared(const cmd::Cleared& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = assignment_for(c.assignment, o, out);
  if (!a) return;
  if (a->rec.state == AssignmentState::cleared) return;
  if (!is_active(a->rec.state))
    return error(o, ErrorCode::conflict,
                 "assignment is " + std::string(to_string(a->rec.state)), c.assignment, out);
  Incident& inc = *a->incident;
  retire(*a, AssignmentState::cleared, "cleared", {.tell_unit = false, .redispatch = false}, now,
         actor_of(o), out);
  const bool all_done = std::all_of(inc.needs.begin(), inc.needs.end(),
                                    [](const Need& x) { return x.done; });
  if (all_done)
    close_incident(inc, IncidentState::closed, now, actor_of(o), "all units cleared", out);
  else
    update_incident_state(inc, now, out);
  out.must_wait = true;
  dispatch_waiting(now, out);
}

void Engine::set_waiting(Incident& inc, std::uint8_t kinds) {
  if (kinds == inc.wait_kinds) return;
  const Waiting w{Waiting::rank_of(inc), &inc};
  for (int k = 0; k < 3; ++k) {
    const std::uint8_t bit = static_cast<std::uint8_t>(1u << k);
    if ((kinds & bit) && !(inc.wait_kinds & bit))
      waiting_[k].insert(w);
    else if (!(kinds & bit) && (inc.wait_kinds & bit))
      waiting_[k].erase(w);
  }
  if (kinds && !inc.waiting) ++waiting_count_;
  if (!kinds && inc.waiting) --waiting_count_;
  inc.waiting = kinds != 0;
  inc.wait_kinds = kinds;
}

void Engine::dispatch(Incident& inc, Millis now, const Actor& actor, Output& out) {
  std::uint8_t left = 0;
  for (std::size_t i = 0; i < inc.needs.size(); ++i) {
    Need& n = inc.needs[i];
    if (n.done || n.active) continue;
    std::vector<policy::Weighed> examined;
    UnitKind kind = n.kind;
    auto hit = choose(n.kind, n.target, n.excluded, now, &examined);
    if (!hit && n.or_kind) {
      examined.clear();
      kind = *n.or_kind;
      hit = choose(kind, n.target, n.excluded, now, &examined);
    }
    if (hit) {
      std::string why = candidates_json(kind, n.target, n.excluded, now, *hit, std::move(examined));
      create_assignment(inc, i, units_[hit->unit], now, actor, out, hit->eta_s, std::move(why));
    } else {
      left |= n.kind_bits();
    }
  }
  const bool was_waiting = inc.waiting;
  set_waiting(inc, left);
  if (left && !was_waiting)
    timeline(inc, now, "dispatching", "no assignable unit: waiting", system_actor, out);
  update_incident_state(inc, now, out);
}

// The policy is that of trying every waiting incident in order of urgency (severity, then
// the oldest report) with dispatch(): each open need takes the nearest assignable unit of
// its kind that has not declined it. Only the incidents that can get a unit are visited:
// those in the queue of a kind that still has an assignable unit. Trying any other has no
// effect (no unit for any of its needs; its state is already `dispatching`), so the
// assignments, their order and every write and message are the same. A kind's queue is
// left as soon as the kind has no assignable unit (its index is empty, or every unit in
// it is stale): usually right after the freed unit was taken. The queues are kept in
// order (sets), so nothing is copied or sorted per event.
void Engine::dispatch_waiting(Millis now, Output& out) {
  if (!waiting_count_) return;
  out.must_wait = true;  // as when every waiting incident was tried
  using It = std::set<Waiting>::const_iterator;
  std::array<It, 3> at;
  std::array<bool, 3> live{};
  for (int k = 0; k < 3; ++k) {
    at[k] = waiting_[k].begin();
    live[k] = index_[k].size() != 0;
  }
  for (;;) {
    int first = -1;
    for (int k = 0; k < 3; ++k) {
      if (live[k] && index_[k].size() == 0) live[k] = false;
      if (!live[k] || at[k] == waiting_[k].end()) continue;
      if (first < 0 || at[k]->rank < at[first]->rank) first = k;
    }
    if (first < 0) return;
    Incident* inc = at[first]->inc;
    // Step past it in every queue it is in before dispatch() may take it out of them.
    std::array<bool, 3> here{};
    for (int k = 0; k < 3; ++k)
      if (live[k] && at[k] != waiting_[k].end() && at[k]->inc == inc) {
        here[k] = true;
        ++at[k];
      }
    if (!is_open(inc->rec.state)) continue;
    dispatch(*inc, now, system_actor, out);
    // A need of a kind that got no unit: unless the kind still has an assignable unit
    // (one this need declined), nothing later in that queue can get one either.
    for (int k = 0; k < 3; ++k)
      if (here[k] && (inc->wait_kinds & kind_bit(static_cast<UnitKind>(k))) &&
          !any_assignable(static_cast<UnitKind>(k), geo::LatLon{inc->rec.lat, inc->rec.lon}, now))
        live[k] = false;
  }
}

Assignment& Engine::create_assignment(Incident& inc, std::size_t need, Unit& u, Millis now,
                                      const Actor& actor, Output& out, std::optional<double> eta_s,
                                      std::string candidates) {
  Need& n = inc.needs[need];
  auto a = std::make_unique<Assignment>();
  auto& r = a->rec;
  r.seq = ++assignment_seq_;
  r.id = make_id('A', r.seq);
  r.incident = inc.rec.id;
  r.unit = u.id();
  r.task = n.task;
  r.state = AssignmentState::assigned;
  r.lat = n.target.lat;
  r.lon = n.target.lon;
  const double d = u.has_pos ? geo::distance_m(u.pos, n.target) : 0.0;
  r.eta_s = static_cast<int>(std::lround(eta_s ? *eta_s : eta_to(u, n.target)));
  r.assigned_ts = now;
  r.candidates = candidates.empty() ? manual_candidates_json(u, n.target) : std::move(candidates);
  if (inc.assignments.empty()) service_of(inc).to_assign.add(static_cast<double>(now - inc.rec.received_ts) / 1000.0);
  a->incident = &inc;
  a->unit = slot_of(u);
  a->need = need;
  a->ack_deadline = now + config_.ack_within_ms;
  Assignment& ref = *a;
  n.active = &ref;
  u.active = &ref;
  assignments_.emplace(r.id, &ref);
  inc.assignments.push_back(std::move(a));
  pending_ack_.push_back(&ref);
  ++stats_.assignments;

  set_unit_status(u, UnitStatus::assigned, now, actor, "assigned " + r.id, out);
  out.writes.push_back(r);
  char detail[160];
  std::snprintf(detail, sizeof detail, "%s assigned (%s, %.0f m, eta %d s)", std::string(u.id()).c_str(),
                std::string(to_string(n.task)).c_str(), d, r.eta_s);
  timeline(inc, now, "assigned", detail, actor, out);
  if (u.kind == UnitKind::heli) heli_called(inc, u, n.task, now, actor, out);
  send_to_unit(u,
               ev::Assign{r.id, std::string(u.id()), inc.rec.id, r.task, r.lat, r.lon, inc.rec.severity, r.eta_s,
                          static_cast<int>(config_.ack_within_ms / 1000)},
               out);
  if (!u.capcode().empty()) page(ref, u, now, out);
  out.must_wait = true;
  return ref;
}

// The one way an assignment ends. Cleared: its need is done. Declined, lapsed, cancelled:
// the unit is not put back on that need by the engine (a dispatcher may), and with
// `redispatch` the need takes the next nearest at once. Every end is counted, written,
// told to the timeline, and frees the unit.
void Engine::retire(Assignment& a, AssignmentState end, const std::string& reason,
                    RetireHow how, Millis now, const Actor& actor, Output& out) {
  Unit& u = units_[a.unit];
  Incident& inc = *a.incident;
  if (a.rec.state == AssignmentState::assigned) std::erase(pending_ack_, &a);
  a.rec.state = end;
  Need& n = inc.needs[a.need];
  if (n.active == &a) n.active = nullptr;
  if (u.active == &a) u.active = nullptr;
  std::string line;
  if (end == AssignmentState::cleared) {
    a.rec.cleared_ts = now;
    if (!a.rec.acked_ts) a.rec.acked_ts = now;
    n.done = true;
    ++stats_.assignments_cleared;
    line = std::string(u.id()) + " cleared";
  } else {
    a.rec.ended_ts = now;
    a.rec.end_reason = reason;
    n.excluded.push_back(slot_of(u));
    if (end == AssignmentState::declined) ++stats_.assignments_declined;
    if (end == AssignmentState::lapsed) ++stats_.assignments_lapsed;
    if (end == AssignmentState::cancelled) ++stats_.assignments_cancelled;
    line = std::string(u.id()) + ": " + reason;
  }
  out.writes.push_back(a.rec);
  timeline(inc, now, std::string(to_string(end)), std::move(line), actor, out);
  if (how.tell_unit) send_to_unit(u, ev::Cancel{a.rec.id, std::string(u.id()), reason}, out);
  free_unit(u, now, actor, std::string(to_string(end)) + " " + a.rec.id, out);
  out.must_wait = true;
  if (how.redispatch && end != AssignmentState::cleared && is_open(inc.rec.state))
    dispatch(inc, now, system_actor, out);
}

void Engine::update_incident_state(Incident& inc, Millis now, Output& out) {
  (void)now;
  // Consoles hear of the incident only when something changed: its state here; its
  // assignments and timeline through timeline().
  auto& st = inc.rec.state;
  if (!is_open(st) || st == IncidentState::remote) return;
  IncidentState next = IncidentState::on_scene;
  bool any_active = false, any_open_need = false;
  for (const auto& n : inc.needs) {
    if (n.done) continue;
    if (!n.active) {
      any_open_need = true;
      continue;
    }
    any_active = true;
    const auto as = n.active->rec.state;
    if (as == AssignmentState::assigned)
      next = IncidentState::assigned;
    else if (as == AssignmentState::en_route && next != IncidentState::assigned)
      next = IncidentState::en_route;
  }
  if (any_open_need)
    next = IncidentState::dispatching;
  else if (!any_active)
    next = IncidentState::dispatching;
  if (next != st) {
    st = next;
    out.writes.push_back(inc.rec);
    incident_changed(inc, out);
  }
}

void Engine::close_incident(Incident& inc, IncidentState final_state, Millis now,
                            const Actor& actor, const std::string& why, Output& out) {
  for (auto& a : inc.assignments)
    if (is_active(a->rec.state))
      retire(*a, AssignmentState::cancelled, "incident closed", {.tell_unit = true, .redispatch = false},
             now, actor, out);
  set_waiting(inc, 0);
  inc.rec.state = final_state;
  inc.rec.closed_ts = now;
  if (inc.counted) {
    inc.counted = false;
    if (auto it = sources_.find(inc.rec.source); it != sources_.end() && it->second.open)
      --it->second.open;
  }
  closed_.emplace_back(now, inc.rec.id);
  ++stats_.incidents_closed;
  out.writes.push_back(inc.rec);
  timeline(inc, now, std::string(to_string(final_state)), why, actor, out);
  incident_changed(inc, out);
  out.must_wait = true;
}

void Engine::on_assign(const cmd::Assign& c, const Origin& o, Millis now, Output& out) {
  Incident* inc = find_incident(c.incident);
  if (!inc) return error(o, ErrorCode::unknown_incident, "no such incident", c.incident, out);
  Unit* u = find_unit(c.unit);
  if (!u) return error(o, ErrorCode::unknown_unit, "no such unit", c.unit, out);
  if (!is_open(inc->rec.state))
    return error(o, ErrorCode::conflict, "incident is " + std::string(to_string(inc->rec.state)),
                 c.incident, out);
  if (u->status == UnitStatus::off_duty)
    return error(o, ErrorCode::conflict, "unit is off duty", c.unit, out);
  if (u->active && u->active->incident == inc)
    return error(o, ErrorCode::conflict, "unit is already assigned to this incident", c.unit, out);
  const Actor actor = actor_of(o);
  out.must_wait = true;
  // The unit leaves whatever it was doing; that incident gets its next nearest.
  if (u->active)
    retire(*u->active, AssignmentState::cancelled, "reassigned to " + inc->rec.id,
           {.tell_unit = true, .redispatch = true}, now, actor, out);
  if (inc->rec.state == IncidentState::remote) {
    inc->rec.state = IncidentState::dispatching;
    timeline(*inc, now, "escalated", "manual assignment ends remote handling", actor, out);
  }
  // The need of the unit's kind: its current unit is withdrawn; without one, a new need.
  std::size_t need = inc->needs.size();
  for (std::size_t i = 0; i < inc->needs.size(); ++i)
    if (inc->needs[i].kind == u->kind && !inc->needs[i].done) {
      need = i;
      break;
    }
  if (need == inc->needs.size()) {
    Need n;
    n.kind = u->kind;
    n.task = Task::scene;
    n.target = {inc->rec.lat, inc->rec.lon};
    inc->needs.push_back(n);
  } else if (Assignment* cur = inc->needs[need].active) {
    // Taken off by hand: the engine does not put it back on this need.
    retire(*cur, AssignmentState::cancelled, "replaced by " + std::string(u->id()),
           {.tell_unit = true, .redispatch = false}, now, actor, out);
  }
  // A manual choice overrides an earlier decline of this unit.
  std::erase(inc->needs[need].excluded, slot_of(*u));
  create_assignment(*inc, need, *u, now, actor, out);
  dispatch(*inc, now, actor, out);
  dispatch_waiting(now, out);
}

void Engine::on_cancel(const cmd::Cancel& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = find_assignment(c.assignment);
  if (!a) return error(o, ErrorCode::unknown_assignment, "no such assignment", c.assignment, out);
  if (!is_active(a->rec.state))
    return error(o, ErrorCode::conflict,
                 "assignment is " + std::string(to_string(a->rec.state)), c.assignment, out);
  retire(*a, AssignmentState::cancelled, "cancelled by dispatcher",
         {.tell_unit = true, .redispatch = true}, now, actor_of(o), out);
  dispatch_waiting(now, out);
}

void Engine::lapse_due(Millis now, Output& out) {
  // Ack timeouts lapse to the next nearest unit.
  std::vector<Assignment*> due;
  for (Assignment* a : pending_ack_)
    if (a->ack_deadline <= now) due.push_back(a);
  for (Assignment* a : due)
    if (a->rec.state == AssignmentState::assigned)
      retire(*a, AssignmentState::lapsed,
             "no ack within " + std::to_string(config_.ack_within_ms / 1000) + " s",
             {.tell_unit = true, .redispatch = true}, now, system_actor, out);
  // Lapsed units are free again (and may answer now): waiting incidents may take them.
  if (!due.empty() && waiting_count_) dispatch_waiting(now, out);

}

}  // namespace dispatch::engine
