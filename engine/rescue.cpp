// The air-ground rescue chain (空地一体化): the hospital chosen and notified, the
// helicopter called, airborne, the landing zone secured (the secure_lz unit arrived),
// landed, the patient loaded, handed to the hospital. Each step once, with its time and
// actor, in the timeline and in the incident's rescue; each air stage meets its clock and
// adds its service level (from the call).
#include "engine/engine.hpp"

#include <algorithm>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

void Engine::rescue_step(Incident& inc, std::string_view step, std::string detail, Millis now,
                         const Actor& actor, Output& out) {
  if (!inc.rescue) inc.rescue.emplace();
  Rescue& r = *inc.rescue;
  if (r.step(step)) return;  // once
  r.steps.push_back(RescueStep{std::string(step), now, actor});
  timeline(inc, now, std::string(step), std::move(detail), actor, out);
  const RescueStep* call = r.step("heli_called");
  auto stage = [&](std::string_view clock, ServiceLevel ServiceLevels::*level) {
    meet_clock(inc, clock, now);
    if (call) (service_of(inc).*level).add(static_cast<double>(now - call->ts) / 1000.0);
  };
  if (step == "airborne") stage("airborne", &ServiceLevels::call_to_airborne);
  else if (step == "landed") stage("landed", &ServiceLevels::call_to_landed);
  else if (step == "transferred") stage("hospital", &ServiceLevels::call_to_hospital);
}

void Engine::heli_called(Incident& inc, const Unit& u, Task task, Millis now, const Actor& actor,
                         Output& out) {
  if (!inc.rescue) {  // a helicopter sent by hand
    Rescue r;
    r.target = task == Task::landing_zone ? Task::landing_zone : Task::scene;
    inc.rescue = std::move(r);
  }
  if (inc.rescue->step("heli_called")) return;
  rescue_step(inc, "heli_called", std::string(u.id()) + " called", now, actor, out);
  start_clock(inc, "airborne", now, now + config_.airborne_within_ms);
  start_clock(inc, "landed", now, now + config_.landed_within_ms);
  start_clock(inc, "hospital", now, now + config_.hospital_within_ms);
}

void Engine::rebuild_rescue_and_clocks(Incident& inc) {
  // Liability: remote handling, from the accident; met by the decision, ended by escalation.
  bool remote = inc.rec.state == IncidentState::remote;
  Millis escalated = 0;
  for (const auto& t : inc.timeline) {
    if (t.event == "remote") remote = true;
    if (t.event == "escalated" && !escalated) escalated = t.ts;
    if (std::find(rescue_steps.begin(), rescue_steps.end(), t.event) != rescue_steps.end()) {
      if (!inc.rescue) inc.rescue.emplace();
      if (!inc.rescue->step(t.event))
        inc.rescue->steps.push_back(RescueStep{t.event, t.ts, Actor{t.actor_role, t.actor_name}});
    }
  }
  if (remote) {
    start_clock(inc, "liability", inc.rec.reported_ts, inc.rec.reported_ts + config_.remote_liability_ms);
    if (inc.rec.liability_ts) meet_clock(inc, "liability", inc.rec.liability_ts);
    else if (escalated) meet_clock(inc, "liability", escalated);
  }
  // Claim: from the first claim; met when every claim is paid.
  Millis first = 0, last_paid = 0;
  bool unpaid = false;
  for (const auto& id : inc.claims)
    if (auto it = claims_.find(id); it != claims_.end()) {
      if (!first || it->second.created_ts < first) first = it->second.created_ts;
      if (!it->second.paid) unpaid = true;
      last_paid = std::max(last_paid, it->second.paid_ts);
    }
  if (first) {
    start_clock(inc, "claim", first, first + config_.claim_paid_within_ms);
    if (!unpaid) meet_clock(inc, "claim", last_paid);
  }
  // The air stages, from the call.
  if (inc.rescue) {
    if (const RescueStep* call = inc.rescue->step("heli_called")) {
      const Millis t = call->ts;
      start_clock(inc, "airborne", t, t + config_.airborne_within_ms);
      start_clock(inc, "landed", t, t + config_.landed_within_ms);
      start_clock(inc, "hospital", t, t + config_.hospital_within_ms);
      const std::pair<const char*, const char*> met[] = {
          {"airborne", "airborne"}, {"landed", "landed"}, {"transferred", "hospital"}};
      for (const auto& [step, clock] : met)
        if (const RescueStep* s = inc.rescue->step(step)) meet_clock(inc, clock, s->ts);
    }
    // A helicopter sent by hand: its target is its assignment's.
    for (const auto& a : inc.assignments)
      if (units_[a->unit].kind == UnitKind::heli && !inc.rescue->landing_zone)
        inc.rescue->target = a->rec.task == Task::landing_zone ? Task::landing_zone : Task::scene;
  }
  // Alerts already raised are not raised again.
  for (const auto& t : inc.timeline)
    if (t.event == "overdue")
      for (auto& c : inc.clocks)
        if (c.name == t.detail && !c.overdue) {
          c.overdue = true;
          clocks_due_.erase({c.due_ts, inc.rec.id, c.name});
        }
}

void Engine::on_rescue(const cmd::Rescue& c, const Origin& o, Millis now, Output& out) {
  Assignment* a = assignment_for(c.assignment, o, out);
  if (!a) return;
  static constexpr std::string_view steps[] = {"airborne", "landed", "patient_loaded", "transferred"};
  if (std::find(std::begin(steps), std::end(steps), c.step) == std::end(steps))
    return error(o, ErrorCode::bad_message, "step must be airborne, landed, patient_loaded or transferred",
                 c.assignment, out);
  if (!is_active(a->rec.state))
    return error(o, ErrorCode::conflict, "assignment is " + std::string(to_string(a->rec.state)),
                 c.assignment, out);
  Incident& inc = *a->incident;
  const Unit& u = units_[a->unit];
  std::string detail = std::string(u.id()) + " " + c.step;
  if (c.step == "transferred" && !inc.rec.hospital.empty()) detail += " to " + inc.rec.hospital;
  rescue_step(inc, c.step, std::move(detail), now, actor_of(o), out);
  out.must_wait = true;
  // The steps that are also assignment states move it along.
  if (c.step == "airborne" && a->rec.state == AssignmentState::assigned)
    on_ack(cmd::Ack{c.assignment}, o, now, out);
  else if (c.step == "landed" && a->rec.state != AssignmentState::on_scene)
    on_arrived(cmd::Arrived{c.assignment}, o, now, out);
  else if (c.step == "transferred")
    on_cleared(cmd::Cleared{c.assignment}, o, now, out);
  else
    incident_changed(inc, out);
}

}  // namespace dispatch::engine
