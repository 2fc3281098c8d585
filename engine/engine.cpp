// The facade: commands in, an Output out; reports, rescue steps, the timeline and the timers.
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

bool Principal::may_speak_for(std::string_view unit) const {
  if (all_units) return true;
  return std::find(units.begin(), units.end(), unit) != units.end();
}

Engine::Engine(Config config) : config_(config) {}
Engine::~Engine() = default;

Assignment* Engine::find_assignment(std::string_view id) {
  auto it = assignments_.find(id);
  return it == assignments_.end() ? nullptr : it->second;
}
Incident* Engine::find_incident(std::string_view id) {
  auto it = incidents_.find(id);
  return it == incidents_.end() ? nullptr : it->second.get();
}
const Incident* Engine::incident(std::string_view id) const {
  auto it = incidents_.find(id);
  return it == incidents_.end() ? nullptr : it->second.get();
}

std::vector<const Incident*> Engine::open_incidents() const {
  std::vector<const Incident*> out;
  for (const auto& [id, inc] : incidents_)
    if (is_open(inc->rec.state)) out.push_back(inc.get());
  std::sort(out.begin(), out.end(),
            [](const Incident* a, const Incident* b) { return a->rec.seq < b->rec.seq; });
  return out;
}

Engine::Source& Engine::source(const std::string& name) {
  auto it = sources_.find(name);
  if (it == sources_.end()) it = sources_.emplace(name, Source{}).first;
  return it->second;
}

std::size_t Engine::open_count(std::string_view source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.open;
}

void Engine::handle(const Command& command, const Origin& origin, Millis now, Output& out) {
  std::visit(
      [&](const auto& c) {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, cmd::Status>) on_status(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Ack>) on_ack(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Decline>) on_decline(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Arrived>) on_arrived(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Cleared>) on_cleared(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Report>) on_report(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Assign>) on_assign(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Cancel>) on_cancel(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Liability>) on_liability(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Close>) on_close(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Delivered>) on_delivered(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Escalate>) on_escalate(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Rescue>) on_rescue(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::ClaimPaid>) on_claim_paid(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Sighting>) on_sighting(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::Hazard>) on_hazard(c, origin, now, out);
        else if constexpr (std::is_same_v<C, cmd::ClearHazard>) on_clear_hazard(c, origin, now, out);
      },
      command);
}

void Engine::error(const Origin& o, ErrorCode code, std::string message, std::string ref,
                   Output& out) {
  out.messages.push_back({Target::to(o.conn),
                          ev::Error{code, std::move(message), std::move(ref)}});
}

void Engine::on_report(const cmd::Report& c, const Origin& o, Millis now, Output& out) {
  // Report ids are the token's own (contract v2 5.2): keyed by the source, "role:name".
  const Actor actor = actor_of(o);
  Source& src = source(actor.role + ":" + actor.name);
  if (auto it = src.reports.find(c.id); it != src.reports.end()) {
    ++stats_.reports_duplicate;
    out.messages.push_back({Target::to(o.conn), ev::Accepted{c.id, it->second}});
    out.must_wait = true;  // the first answer may still be on its way to the disk
    return;
  }
  if (config_.max_open_per_source && src.open >= config_.max_open_per_source) {
    ++stats_.reports_rate_limited;
    return error(o, ErrorCode::rate_limited,
                 "this token has too many open incidents (" + std::to_string(src.open) +
                     "); no new one until some are closed",
                 c.id, out);
  }
  ++stats_.reports;
  auto inc = std::make_unique<Incident>();
  auto& r = inc->rec;
  r.seq = ++incident_seq_;
  r.id = make_id('I', r.seq);
  r.report_id = c.id;
  r.severity = c.severity;
  r.lat = c.lat;
  r.lon = c.lon;
  r.reported_ts = c.ts.value_or(now);
  r.received_ts = now;
  r.injured = c.injured;
  r.drivable = c.drivable;
  r.parties_agree = c.parties_agree;
  r.vehicles = c.vehicles;
  r.note = c.note;
  r.source = actor.role + ":" + actor.name;
  if (geography_)
    if (auto d = geography_->district({c.lat, c.lon})) r.district = d->name;
  Incident& ref = *inc;
  src.reports.emplace(c.id, r.id);
  ref.counted = true;
  ++src.open;
  incidents_.emplace(r.id, std::move(inc));

  out.messages.push_back({Target::to(o.conn), ev::Accepted{c.id, ref.rec.id}});
  timeline(ref, now, "reported",
           std::string(to_string(c.severity)) + " reported by " + actor.role + " " + actor.name,
           actor, out);
  out.must_wait = true;
  compute_signals(ref, "report", now, out);  // fraud signals (engine/stations.cpp)
  if (c.severity == Severity::minor && c.drivable && c.parties_agree) {
    ref.rec.state = IncidentState::remote;
    timeline(ref, now, "remote", "remote fast handling: waiting for a liability decision", system_actor, out);
    start_clock(ref, "liability", ref.rec.reported_ts, ref.rec.reported_ts + config_.remote_liability_ms);
    out.writes.push_back(ref.rec);
    incident_changed(ref, out);
    return;
  }
  plan_needs(ref, now, &out);
  out.writes.push_back(ref.rec);  // the incident row goes before its assignments
  dispatch(ref, now, system_actor, out);
}

void Engine::timeline(Incident& inc, Millis ts, std::string event, std::string detail,
                      const Actor& actor, Output& out) {
  rec::Timeline t{inc.rec.id, ts, std::move(event), std::move(detail), actor.role, actor.name};
  inc.timeline.push_back(t);
  out.writes.push_back(std::move(t));
  incident_changed(inc, out);  // a new line is a change the consoles should see
}

// One change message per incident (unit) per Output: it renders the current state when
// released. `out_mark` says where it was last pushed; it counts only if that slot of this
// Output still holds it (engine.hpp, top).
void Engine::incident_changed(Incident& inc, Output& out) {
  if (inc.out_mark < out.messages.size()) {
    const Message& m = out.messages[inc.out_mark];
    if (auto* ic = std::get_if<ev::IncidentChanged>(&m.payload);
        ic && m.to.kind == Target::Kind::consoles && ic->incident == inc.rec.id)
      return;
  }
  inc.out_mark = out.messages.size();
  out.messages.push_back({Target::consoles(), ev::IncidentChanged{inc.rec.id}});
}

void Engine::on_close(const cmd::Close& c, const Origin& o, Millis now, Output& out) {
  Incident* inc = find_incident(c.incident);
  if (!inc) return error(o, ErrorCode::unknown_incident, "no such incident", c.incident, out);
  if (!is_open(inc->rec.state))
    return error(o, ErrorCode::conflict, "incident is " + std::string(to_string(inc->rec.state)),
                 c.incident, out);
  close_incident(*inc, IncidentState::closed, now, actor_of(o), "closed by dispatcher", out);
  dispatch_waiting(now, out);
}

void Engine::on_escalate(const cmd::Escalate& c, const Origin& o, Millis now, Output& out) {
  Incident* inc = find_incident(c.incident);
  if (!inc) return error(o, ErrorCode::unknown_incident, "no such incident", c.incident, out);
  if (inc->rec.state != IncidentState::remote)
    return error(o, ErrorCode::conflict, "only a remote incident can be escalated", c.incident, out);
  const Actor actor = actor_of(o);
  inc->rec.state = IncidentState::dispatching;
  timeline(*inc, now, "escalated",
           "remote handling ended" + (c.reason.empty() ? std::string() : ": " + c.reason), actor, out);
  meet_clock(*inc, "liability", now);  // remote handling is over: the clock stops
  plan_needs(*inc, now, &out);
  out.writes.push_back(inc->rec);
  dispatch(*inc, now, system_actor, out);
  out.must_wait = true;
}


ServiceLevels& Engine::service_of(const Incident& inc) {
  return service_[inc.rec.district + "|" + std::string(to_string(inc.rec.severity))];
}

// ---------------------------------------------------------------------------------------
// Timers

void Engine::tick(Millis now, Output& out) {
  lapse_due(now, out);
  check_clocks(now, out);
  sweep_stale(now, out);
  resend_pages(now, out);
  evict_closed(now);
  tick_stations(now);
  if (!out.writes.empty()) out.must_wait = true;
}

void Engine::evict_closed(Millis now) {
  // Closed incidents leave memory after a while, oldest first; the store keeps them.
  while (!closed_.empty() && now - closed_.front().first > config_.keep_closed_ms) {
    auto it = incidents_.find(closed_.front().second);
    closed_.pop_front();
    if (it == incidents_.end() || is_open(it->second->rec.state)) continue;
    const auto& inc = *it->second;
    for (const auto& a : inc.assignments) assignments_.erase(a->rec.id);
    for (const auto& c : inc.claims)
      if (auto ci = claims_.find(c); ci != claims_.end() && ci->second.paid) claims_.erase(ci);
    incidents_.erase(it);
  }
}


}  // namespace dispatch::engine
