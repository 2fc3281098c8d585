// Claims: the liability decision hands one claim per insurer to the insurers; paid claims
// close remote incidents.
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

void Engine::on_liability(const cmd::Liability& c, const Origin& o, Millis now, Output& out) {
  Incident* inc = find_incident(c.incident);
  if (!inc) return error(o, ErrorCode::unknown_incident, "no such incident", c.incident, out);
  if (!is_open(inc->rec.state))
    return error(o, ErrorCode::conflict, "incident is " + std::string(to_string(inc->rec.state)),
                 c.incident, out);
  if (c.at_fault != "none") {
    const bool known = std::any_of(inc->rec.vehicles.begin(), inc->rec.vehicles.end(),
                                   [&](const Vehicle& v) { return v.plate == c.at_fault; });
    if (!known && !inc->rec.vehicles.empty())
      return error(o, ErrorCode::bad_message, "at_fault must be a plate of the incident or none",
                   c.incident, out);
  }
  const Actor actor = actor_of(o);
  inc->rec.at_fault = c.at_fault;
  inc->rec.liability_ts = now;
  meet_clock(*inc, "liability", now);
  service_of(*inc).to_liability.add(static_cast<double>(now - inc->rec.reported_ts) / 1000.0);
  out.writes.push_back(inc->rec);
  timeline(*inc, now, "liability",
           "at fault: " + c.at_fault + (c.note.empty() ? "" : " (" + c.note + ")"), actor, out);
  out.must_wait = true;
  compute_signals(*inc, "liability", now, out);  // again, before the claims carry them
  if (inc->claims.empty()) open_claims(*inc, now, actor, out);
  // Remote fast handling ends with the liability decision once no claim is left unpaid.
  const bool unpaid = std::any_of(inc->claims.begin(), inc->claims.end(), [&](const std::string& id) {
    auto it = claims_.find(id);
    return it != claims_.end() && !it->second.paid;
  });
  if (inc->rec.state == IncidentState::remote && !unpaid)
    close_incident(*inc, IncidentState::closed, now, actor, "liability decided remotely", out);
  else
    incident_changed(*inc, out);
}

void Engine::open_claims(Incident& inc, Millis now, const Actor& actor, Output& out) {
  std::vector<std::string> insurers;
  for (const auto& v : inc.rec.vehicles)
    if (!v.insurer.empty() && std::find(insurers.begin(), insurers.end(), v.insurer) == insurers.end())
      insurers.push_back(v.insurer);
  for (const auto& ins : insurers) {
    rec::Claim c;
    c.seq = ++claim_seq_;
    c.id = make_id('C', c.seq);
    c.incident = inc.rec.id;
    c.insurer = ins;
    for (const auto& v : inc.rec.vehicles)
      if (v.insurer == ins) {
        c.plates.push_back(v.plate);
        if (v.plate == inc.rec.at_fault) c.insured_at_fault = true;
      }
    c.created_ts = now;
    c.deadline_ts = now + config_.claim_paid_within_ms;
    ++stats_.claims;
    inc.claims.push_back(c.id);
    out.writes.push_back(c);
    timeline(inc, now, "claim", c.id + " handed to " + ins, actor, out);
    out.messages.push_back({Target::insurer_of(ins), ev::Claim{c.id}});
    claims_.emplace(c.id, std::move(c));
  }
  if (!insurers.empty()) start_clock(inc, "claim", now, now + config_.claim_paid_within_ms);
}

void Engine::on_claim_paid(const cmd::ClaimPaid& c, const Origin& o, Millis now, Output& out) {
  auto it = claims_.find(c.claim);
  if (it == claims_.end()) return error(o, ErrorCode::bad_message, "no such open claim", c.claim, out);
  rec::Claim& cl = it->second;
  if (o.who && o.who->role == "insurer" && o.who->insurer != cl.insurer)
    return error(o, ErrorCode::forbidden, "the claim belongs to another insurer", c.claim, out);
  if (cl.paid) return;  // paid twice: nothing changes
  cl.paid = true;
  cl.paid_ts = now;
  cl.amount = c.amount;
  ++stats_.claims_paid;
  out.writes.push_back(cl);
  out.must_wait = true;
  Incident* inc = find_incident(cl.incident);
  if (!inc) return;
  service_of(*inc).to_claim_paid.add(static_cast<double>(now - inc->rec.reported_ts) / 1000.0);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s paid by %s (%.2f)", cl.id.c_str(), cl.insurer.c_str(), c.amount);
  timeline(*inc, now, "claim_paid", buf, actor_of(o), out);
  const bool unpaid = std::any_of(inc->claims.begin(), inc->claims.end(), [&](const std::string& id) {
    auto ci = claims_.find(id);
    return ci != claims_.end() && !ci->second.paid;
  });
  if (!unpaid) meet_clock(*inc, "claim", now);
  if (!unpaid && inc->rec.state == IncidentState::remote && !inc->rec.at_fault.empty())
    close_incident(*inc, IncidentState::closed, now, actor_of(o), "all claims paid", out);
  else
    incident_changed(*inc, out);
}

void Engine::insurer_connected(ConnId conn, const std::string& insurer, Output& out) {
  for (const auto& [id, c] : claims_)
    if (!c.paid && c.insurer == insurer)
      out.messages.push_back({Target::to(conn), ev::Claim{id}});
}

const rec::Claim* Engine::claim(std::string_view id) const {
  auto it = claims_.find(id);
  return it == claims_.end() ? nullptr : &it->second;
}

}  // namespace dispatch::engine
