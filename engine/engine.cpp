#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace dispatch::engine {

namespace {

const Actor system_actor{"system", "dispatchd"};

Actor actor_of(const Origin& o) {
  if (!o.who) return system_actor;
  return Actor{o.who->role, o.who->name};
}

std::string make_id(char prefix, std::uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%c-%06llu", prefix, static_cast<unsigned long long>(seq));
  return buf;
}

std::uint64_t seq_of(std::string_view id) {
  const auto dash = id.find('-');
  if (dash == std::string_view::npos) return 0;
  std::uint64_t v = 0;
  for (char c : id.substr(dash + 1)) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

// Counts UTF-8 code points, and cuts a string to at most n of them.
std::string utf8_truncate(const std::string& s, std::size_t n) {
  std::size_t count = 0, i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (count == n) return s.substr(0, i);
    i += len;
    ++count;
  }
  return s;
}

std::uint8_t kind_bit(UnitKind k) { return static_cast<std::uint8_t>(1u << static_cast<int>(k)); }

double eta_for(UnitKind kind, double metres) {
  return kind == UnitKind::heli ? geo::air_eta_s(metres) : geo::ground_eta_s(metres);
}

}  // namespace

bool Principal::may_speak_for(std::string_view unit) const {
  if (all_units) return true;
  return std::find(units.begin(), units.end(), unit) != units.end();
}

Engine::Engine(Config config) : config_(config) {}
Engine::~Engine() = default;

// ---------------------------------------------------------------------------------------
// Lookups

// ---------------------------------------------------------------------------------------
// Units: roster data in the arena, ids in an open-addressing table

namespace {

std::size_t put_length(char* p, std::size_t n) {
  std::size_t i = 0;
  do {
    const auto byte = static_cast<unsigned char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    p[i++] = static_cast<char>(byte);
    n >>= 7;
  } while (n);
  return i;
}

std::size_t get_length(const char*& p) {
  std::size_t n = 0;
  for (int shift = 0;; shift += 7) {
    const auto byte = static_cast<unsigned char>(*p++);
    n |= static_cast<std::size_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return n;
  }
}

}  // namespace

std::string_view Unit::name(int i) const {
  if (!roster_) return {};
  const char* p = roster_;
  for (;;) {
    const std::size_t n = get_length(p);
    if (i-- == 0) return {p, n};
    p += n;
  }
}

std::optional<geo::LatLon> Unit::base() const {
  if (!roster_) return std::nullopt;
  const char* p = roster_;
  for (int i = 0; i < 3; ++i) {
    const std::size_t n = get_length(p);
    p += n;
  }
  if (!*p++) return std::nullopt;
  geo::LatLon b;
  std::memcpy(&b.lat, p, sizeof b.lat);
  std::memcpy(&b.lon, p + sizeof b.lat, sizeof b.lon);
  return b;
}

const char* Engine::pack_roster(const rec::Unit& ru) {
  const std::size_t need = 3 * 10 + ru.id.size() + ru.callsign.size() + ru.capcode.size() + 1 +
                           2 * sizeof(double);
  if (arena_used_ + need > arena_size_) {
    constexpr std::size_t block = 64 * 1024;
    arena_size_ = std::max(block, need);
    arena_.push_back(std::make_unique<char[]>(arena_size_));
    arena_used_ = 0;
  }
  char* const start = arena_.back().get() + arena_used_;
  char* p = start;
  for (const std::string* str : {&ru.id, &ru.callsign, &ru.capcode}) {
    p += put_length(p, str->size());
    std::memcpy(p, str->data(), str->size());
    p += str->size();
  }
  *p++ = ru.base ? 1 : 0;
  if (ru.base) {
    std::memcpy(p, &ru.base->lat, sizeof(double));
    std::memcpy(p + sizeof(double), &ru.base->lon, sizeof(double));
    p += 2 * sizeof(double);
  }
  arena_used_ += static_cast<std::size_t>(p - start);
  return start;
}

std::uint32_t Engine::find_slot(std::string_view id) const {
  if (by_id_.empty()) return npos_slot;
  const std::size_t mask = by_id_.size() - 1;
  for (std::size_t i = Hash{}(id) & mask;; i = (i + 1) & mask) {
    const std::uint32_t e = by_id_[i];
    if (!e) return npos_slot;
    if (units_[e - 1].id() == id) return e - 1;
  }
}

void Engine::index_id(std::uint32_t slot) {
  if (2 * (static_cast<std::size_t>(slot) + 1) > by_id_.size()) {
    // Grow to twice the units (at most half full), and put every id back.
    std::size_t size = 16;
    while (size < 2 * units_.size()) size *= 2;
    by_id_.assign(size, 0);
    for (std::uint32_t s = 0; s < units_.size(); ++s)
      if (s != slot) index_id(s);
  }
  const std::size_t mask = by_id_.size() - 1;
  std::size_t i = Hash{}(units_[slot].id()) & mask;
  while (by_id_[i]) i = (i + 1) & mask;
  by_id_[i] = slot + 1;
}

Unit* Engine::find_unit(std::string_view id) {
  const std::uint32_t slot = find_slot(id);
  return slot == npos_slot ? nullptr : &units_[slot];
}
const Unit* Engine::unit(std::string_view id) const {
  const std::uint32_t slot = find_slot(id);
  return slot == npos_slot ? nullptr : &units_[slot];
}
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

bool Engine::assignable(const Unit& u, Millis now) const {
  return u.status == UnitStatus::available && u.has_pos &&
         now - u.pos_ts <= config_.stale_after_ms;
}

std::string_view Engine::wire_status(const Unit& u, Millis now) const {
  if (u.status == UnitStatus::available && u.has_pos && now - u.pos_ts > config_.stale_after_ms)
    return "stale";
  return to_string(u.status);
}

void Engine::take_moved(std::vector<std::uint32_t>& out) {
  for (auto slot : moved_) units_[slot].moved = false;
  out.insert(out.end(), moved_.begin(), moved_.end());
  moved_.clear();
}

// ---------------------------------------------------------------------------------------
// Restore

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

  for (const auto& ri : s.open_incidents) {
    auto inc = std::make_unique<Incident>();
    inc->rec = ri;
    incident_seq_ = std::max(incident_seq_, ri.seq);
    if (inc->rec.state != IncidentState::remote) plan_needs(*inc, now, nullptr);
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
      if (n.kind == u->kind && n.task == ra->task && !n.done && !n.active) {
        need = i;
        break;
      }
    }
    if (need == inc->needs.size()) {
      // A need of this kind already served (or none planned): find one to attach to.
      for (std::size_t i = 0; i < inc->needs.size() && need == inc->needs.size(); ++i)
        if (inc->needs[i].kind == u->kind && inc->needs[i].task == ra->task) need = i;
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
      if (!n.done && !n.active && is_open(inc->rec.state)) kinds |= kind_bit(n.kind);
    set_waiting(*inc, kinds);
  }
  // A unit whose assignment did not survive is free again.
  for (auto& u : units_) {
    if (!u.active && (u.status == UnitStatus::assigned || u.status == UnitStatus::en_route ||
                      u.status == UnitStatus::on_scene))
      u.status = UnitStatus::available;
  }
  claim_seq_ = std::max(claim_seq_, s.max_claim_seq);
  for (const auto& c : s.claims) {
    claim_seq_ = std::max(claim_seq_, c.seq);
    if (Incident* inc = find_incident(c.incident)) inc->claims.push_back(c.id);
    claims_.emplace(c.id, c);
  }
  for (const auto& p : s.undelivered_pages) {
    pages_.push_back(PendingPage{p, 0});
    page_seq_ = std::max(page_seq_, p.seq);
  }
  restore_stations(s.stations, now);
}

// ---------------------------------------------------------------------------------------
// Connections

void Engine::unit_connected(ConnId conn, const Principal& who) {
  if (who.role != "unit" || who.all_units) return;
  for (const auto& id : who.units)
    if (Unit* u = find_unit(id)) u->own_conn = conn;
}

void Engine::disconnected(ConnId conn) {
  for (auto& u : units_) {
    if (u.own_conn == conn) u.own_conn = 0;
    if (u.gateway_conn == conn) u.gateway_conn = 0;
  }
}

void Engine::pager_connected(ConnId conn, Output& out) {
  ++pagers_connected_;
  for (auto& p : pages_) {
    out.messages.push_back({Target::to(conn),
                            ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
  }
}

// ---------------------------------------------------------------------------------------
// Positions: the hot path

void Engine::positions(std::span<const cmd::Position> batch, const Origin& origin, Millis now,
                       Output& out) {
  bool freed = false;
  const bool via_gateway = origin.who && origin.who->role == "gateway";
  for (const auto& p : batch) {
    // Forbidden before unknown: a token learns nothing about ids it may not speak for.
    if (origin.who && !origin.who->may_speak_for(p.unit)) {
      error(origin, ErrorCode::forbidden, "this token does not speak for that unit", p.unit, out);
      continue;
    }
    Unit* u = find_unit(p.unit);
    if (!u) {
      error(origin, ErrorCode::unknown_unit, "no such unit", p.unit, out);
      continue;
    }
    if (p.ts > now + config_.max_future_ms) {
      error(origin, ErrorCode::bad_message, "ts is too far in the future", p.unit, out);
      continue;
    }
    ++stats_.positions;
    if (via_gateway)
      u->gateway_conn = origin.conn;
    else if (origin.conn)
      u->own_conn = origin.conn;
    const geo::LatLon where{p.lat, p.lon};
    if (u->has_pos) {
      if (p.ts <= u->pos_ts) {
        ++stats_.positions_out_of_order;
        continue;
      }
      const double limit_kmh =
          u->kind == UnitKind::heli ? config_.max_speed_kmh_heli : config_.max_speed_kmh_ground;
      const double d = geo::distance_m(u->pos, where);
      const double hours = static_cast<double>(p.ts - u->pos_ts) / 3'600'000.0;
      if (d / 1000.0 > limit_kmh * hours) {
        ++stats_.positions_gps_jump;
        continue;
      }
    }
    const bool was_assignable = u->has_pos && !u->stale && u->status == UnitStatus::available &&
                                index_[static_cast<int>(u->kind)].contains(slot_of(*u));
    u->has_pos = true;
    u->pos = where;
    u->pos_ts = p.ts;
    u->speed_kmh = p.speed_kmh ? static_cast<float>(*p.speed_kmh) : -1.f;
    u->heading = p.heading ? static_cast<float>(*p.heading) : -1.f;
    const bool was_stale = u->stale;
    u->stale = now - p.ts > config_.stale_after_ms;
    reindex(*u, now);
    if (!was_assignable && assignable(*u, now)) freed = true;
    if (was_stale != u->stale) unit_changed(*u, out);
    if (!u->moved) {
      u->moved = true;
      moved_.push_back(slot_of(*u));
    }
    if (u->track_ts == 0 || p.ts - u->track_ts >= config_.track_min_interval_ms ||
        geo::distance_m(u->track_pos, where) >= config_.track_min_distance_m) {
      u->track_pos = where;
      u->track_ts = p.ts;
      out.writes.push_back(rec::TrackPoint{std::string(u->id()), p.ts, p.lat, p.lon});
    }
  }
  if (freed && waiting_count_) dispatch_waiting(now, out);
}

void Engine::reindex(Unit& u, Millis now) {
  auto& idx = index_[static_cast<int>(u.kind)];
  if (u.status == UnitStatus::available && u.has_pos && now - u.pos_ts <= config_.stale_after_ms)
    idx.upsert(slot_of(u), u.pos);
  else
    idx.remove(slot_of(u));
}

// ---------------------------------------------------------------------------------------
// Commands

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

void Engine::on_status(const cmd::Status& c, const Origin& o, Millis now, Output& out) {
  // Forbidden before unknown: a token learns nothing about ids it may not speak for.
  if (o.who && !o.who->may_speak_for(c.unit))
    return error(o, ErrorCode::forbidden, "this token does not speak for that unit", c.unit, out);
  Unit* u = find_unit(c.unit);
  if (!u) return error(o, ErrorCode::unknown_unit, "no such unit", c.unit, out);
  if (c.status != UnitStatus::available && c.status != UnitStatus::off_duty)
    return error(o, ErrorCode::bad_message, "status must be available or off_duty", c.unit, out);
  if (o.who && o.who->role == "unit") u->own_conn = o.conn;
  if (u->active)
    return error(o, ErrorCode::conflict,
                 "unit has an active assignment " + u->active->rec.id + "; clear or decline it first",
                 c.unit, out);
  if (u->status == c.status) return;
  if (const auto cap = config_.max_status_changes_per_min) {
    // A fixed 60 s window from the first change after the last window ended (a clock
    // that went back starts a new one). Counting needs no allocation.
    if (u->status_changes == 0 || now - u->status_window_start >= 60'000 ||
        now < u->status_window_start) {
      u->status_window_start = now;
      u->status_changes = 0;
    }
    if (u->status_changes >= cap) {
      ++stats_.status_rate_limited;
      return error(o, ErrorCode::rate_limited,
                   "more than " + std::to_string(cap) + " status changes a minute for this unit",
                   c.unit, out);
    }
    ++u->status_changes;
  }
  set_unit_status(*u, c.status, now, actor_of(o),
                  c.status == UnitStatus::off_duty ? "off duty" : "on duty", out);
  out.must_wait = true;
  if (c.status == UnitStatus::available) dispatch_waiting(now, out);
}

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
  end_assignment(*a, AssignmentState::declined, c.reason.empty() ? "declined" : c.reason, false,
                 now, actor_of(o), out);
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
    for (const auto& other : a->incident->assignments)
      if (other.get() != a && other->rec.arrived_ts) first = false;
    if (first) service_of(*a->incident).to_scene.add(static_cast<double>(now - a->incident->rec.received_ts) / 1000.0);
  }
  set_unit_status(u, UnitStatus::on_scene, now, actor_of(o), "arrived " + a->rec.id, out);
  out.writes.push_back(a->rec);
  timeline(*a->incident, now, "arrived", std::string(u.id()) + " on scene", actor_of(o), out);
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
  Unit& u = units_[a->unit];
  Incident& inc = *a->incident;
  if (a->rec.state == AssignmentState::assigned) std::erase(pending_ack_, a);
  a->rec.state = AssignmentState::cleared;
  a->rec.cleared_ts = now;
  if (!a->rec.acked_ts) a->rec.acked_ts = now;
  Need& n = inc.needs[a->need];
  n.active = nullptr;
  n.done = true;
  u.active = nullptr;
  ++stats_.assignments_cleared;
  out.writes.push_back(a->rec);
  timeline(inc, now, "cleared", std::string(u.id()) + " cleared", actor_of(o), out);
  free_unit(u, now, actor_of(o), "cleared " + a->rec.id, out);
  const bool all_done = std::all_of(inc.needs.begin(), inc.needs.end(),
                                    [](const Need& x) { return x.done; });
  if (all_done)
    close_incident(inc, IncidentState::closed, now, actor_of(o), "all units cleared", out);
  else
    update_incident_state(inc, now, out);
  out.must_wait = true;
  dispatch_waiting(now, out);
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
    out.writes.push_back(ref.rec);
    incident_changed(ref, out);
    return;
  }
  plan_needs(ref, now, &out);
  out.writes.push_back(ref.rec);  // the incident row goes before its assignments
  dispatch(ref, now, system_actor, out);
}

void Engine::plan_needs(Incident& inc, Millis now, Output* out) {
  const geo::LatLon scene{inc.rec.lat, inc.rec.lon};
  Need n;
  n.kind = UnitKind::moto;
  n.task = Task::scene;
  n.target = scene;
  inc.needs.push_back(n);
  if (inc.rec.severity != Severity::critical || !geography_) return;

  // Air-ground rescue: the helicopter's way (readiness, flight to a landing zone near the
  // scene while the patient is brought there, flight to a hospital with a helipad) against
  // a ground transfer to the nearest trauma centre. Rural scenes always get the helicopter.
  const auto district = geography_->district(scene);
  const bool rural = !district || !district->urban;
  const auto lz = geography_->landing_zone(scene);
  const auto ground_hospital = geography_->trauma_hospital(scene);
  if (!lz) {
    if (ground_hospital) inc.rec.hospital = ground_hospital->name;
    return;
  }
  const auto air_hospital = geography_->helipad_hospital(lz->pos);
  const double ground_s = ground_hospital
                              ? geo::ground_eta_s(geo::distance_m(scene, ground_hospital->pos))
                              : std::numeric_limits<double>::infinity();
  std::optional<double> air_s;
  Need heli;
  heli.kind = UnitKind::heli;
  heli.task = Task::landing_zone;
  heli.target = lz->pos;
  if (auto hit = nearest(heli, now); hit && air_hospital) {
    const double to_lz = std::max(geo::air_eta_s(hit->distance_m),
                                  geo::ground_eta_s(geo::distance_m(scene, lz->pos)));
    air_s = to_lz + geo::air_leg_s(geo::distance_m(lz->pos, air_hospital->pos));
  }
  const bool air_wins = air_s && *air_s < ground_s;
  if (!rural && !air_wins) {
    if (ground_hospital) inc.rec.hospital = ground_hospital->name;
    if (out && ground_hospital) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "ground transfer to %s (%.0f s)%s", ground_hospital->name.c_str(),
                    ground_s, air_s ? "" : "; no helicopter free");
      timeline(inc, now, "hospital", buf, Actor{"system", "dispatchd"}, *out);
    }
    return;
  }
  inc.needs.push_back(heli);
  inc.rec.hospital = air_hospital ? air_hospital->name : (ground_hospital ? ground_hospital->name : "");
  if (out) {
    char buf[240];
    std::snprintf(buf, sizeof buf, "air-ground rescue%s: landing zone %s, hospital %s (air %s s, ground %.0f s)",
                  rural ? " (rural scene)" : "", lz->name.c_str(), inc.rec.hospital.c_str(),
                  air_s ? std::to_string(std::lround(*air_s)).c_str() : "?", ground_s);
    timeline(inc, now, "air_rescue", buf, Actor{"system", "dispatchd"}, *out);
    timeline(inc, now, "notified", "hospital " + inc.rec.hospital + " notified",
             Actor{"system", "dispatchd"}, *out);
  }
}

std::optional<geo::UnitIndex::Hit> Engine::nearest(const Need& need, Millis now) const {
  const auto& excluded = need.excluded;
  const Millis fresh_after = now - config_.stale_after_ms;
  return index_[static_cast<int>(need.kind)].nearest(need.target, [&](std::uint32_t slot) {
    const Unit& u = units_[slot];
    return u.pos_ts >= fresh_after && u.status == UnitStatus::available &&
           std::find(excluded.begin(), excluded.end(), slot) == excluded.end();
  });
}

bool Engine::any_assignable(UnitKind kind, geo::LatLon near, Millis now) const {
  const auto& idx = index_[static_cast<int>(kind)];
  if (idx.size() == 0) return false;
  const Millis fresh_after = now - config_.stale_after_ms;
  return idx.nearest(near, [&](std::uint32_t slot) {
           const Unit& u = units_[slot];
           return u.pos_ts >= fresh_after && u.status == UnitStatus::available;
         }).has_value();
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
    if (auto hit = nearest(n, now)) {
      create_assignment(inc, i, units_[hit->id], now, actor, out);
    } else {
      left |= kind_bit(n.kind);
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
                                      const Actor& actor, Output& out) {
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
  r.eta_s = static_cast<int>(std::lround(eta_for(u.kind, d)));
  r.assigned_ts = now;
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
  send_to_unit(u,
               ev::Assign{r.id, std::string(u.id()), inc.rec.id, r.task, r.lat, r.lon, inc.rec.severity, r.eta_s,
                          static_cast<int>(config_.ack_within_ms / 1000)},
               out);
  if (!u.capcode().empty()) page(ref, u, now, out);
  out.must_wait = true;
  return ref;
}

void Engine::send_to_unit(const Unit& u, Payload payload, Output& out) {
  const ConnId to = u.own_conn ? u.own_conn : u.gateway_conn;
  if (!to) return;  // unreachable now: the pager (if any) and the ack timer take over
  out.messages.push_back({Target::to(to), std::move(payload)});
}

void Engine::page(const Assignment& a, const Unit& u, Millis now, Output& out) {
  const Incident& inc = *a.incident;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s %s %s %.5f,%.5f ETA%dmin %s", std::string(u.callsign()).c_str(),
                std::string(to_string(inc.rec.severity)).c_str(), inc.rec.id.c_str(),
                a.rec.lat, a.rec.lon, (a.rec.eta_s + 59) / 60, a.rec.id.c_str());
  rec::Page p;
  p.seq = ++page_seq_;
  p.id = make_id('P', p.seq);
  p.unit = u.id();
  p.capcode = u.capcode();
  p.assignment = a.rec.id;
  p.text = utf8_truncate(buf, 80);
  p.created_ts = now;
  ++stats_.pages;
  out.writes.push_back(p);
  out.messages.push_back({Target::pagers(),
                          ev::Page{p.id, p.unit, p.capcode, p.assignment, p.text}});
  pages_.push_back(PendingPage{std::move(p), now});
}

void Engine::end_assignment(Assignment& a, AssignmentState state, const std::string& reason,
                            bool tell_unit, Millis now, const Actor& actor, Output& out) {
  Unit& u = units_[a.unit];
  Incident& inc = *a.incident;
  if (a.rec.state == AssignmentState::assigned) std::erase(pending_ack_, &a);
  a.rec.state = state;
  a.rec.ended_ts = now;
  a.rec.end_reason = reason;
  Need& n = inc.needs[a.need];
  if (n.active == &a) n.active = nullptr;
  n.excluded.push_back(slot_of(u));
  if (u.active == &a) u.active = nullptr;
  out.writes.push_back(a.rec);
  if (state == AssignmentState::declined) ++stats_.assignments_declined;
  if (state == AssignmentState::lapsed) ++stats_.assignments_lapsed;
  if (state == AssignmentState::cancelled) ++stats_.assignments_cancelled;
  timeline(inc, now, std::string(to_string(state)), std::string(u.id()) + ": " + reason, actor, out);
  if (tell_unit) send_to_unit(u, ev::Cancel{a.rec.id, std::string(u.id()), reason}, out);
  free_unit(u, now, actor, std::string(to_string(state)) + " " + a.rec.id, out);
  out.must_wait = true;
  if (is_open(inc.rec.state)) dispatch(inc, now, system_actor, out);
}

void Engine::free_unit(Unit& u, Millis now, const Actor& actor, const std::string& why,
                       Output& out) {
  if (u.status == UnitStatus::off_duty) return;
  set_unit_status(u, UnitStatus::available, now, actor, why, out);
}

void Engine::set_unit_status(Unit& u, UnitStatus s, Millis now, const Actor& actor,
                             const std::string& why, Output& out) {
  const bool changed = u.status != s;
  u.status = s;
  reindex(u, now);
  if (!changed) return;
  rec::Unit r;
  r.id = u.id();
  r.kind = u.kind;
  r.callsign = u.callsign();
  r.capcode = u.capcode();
  r.base = u.base();
  r.status = s;
  r.updated_ts = now;
  out.writes.push_back(std::move(r));
  out.writes.push_back(rec::UnitEvent{std::string(u.id()), now, std::string(to_string(s)), why, actor.role, actor.name});
  unit_changed(u, out);
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
    if (is_active(a->rec.state)) {
      Unit& u = units_[a->unit];
      if (a->rec.state == AssignmentState::assigned) std::erase(pending_ack_, a.get());
      a->rec.state = AssignmentState::cancelled;
      a->rec.ended_ts = now;
      a->rec.end_reason = "incident closed";
      inc.needs[a->need].active = nullptr;
      u.active = nullptr;
      out.writes.push_back(a->rec);
      send_to_unit(u, ev::Cancel{a->rec.id, std::string(u.id()), "incident closed"}, out);
      free_unit(u, now, actor, "incident " + inc.rec.id + " closed", out);
    }
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

void Engine::unit_changed(Unit& u, Output& out) {
  if (u.out_mark < out.messages.size()) {
    const Message& m = out.messages[u.out_mark];
    if (auto* uc = std::get_if<ev::UnitChanged>(&m.payload);
        uc && m.to.kind == Target::Kind::consoles && uc->unit == slot_of(u))
      return;
  }
  u.out_mark = static_cast<std::uint32_t>(out.messages.size());
  out.messages.push_back({Target::consoles(), ev::UnitChanged{slot_of(u)}});
}

// ---------------------------------------------------------------------------------------
// Console commands

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
    end_assignment(*u->active, AssignmentState::cancelled, "reassigned to " + inc->rec.id, true,
                   now, actor, out);
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
    Unit& old = units_[cur->unit];
    if (cur->rec.state == AssignmentState::assigned) std::erase(pending_ack_, cur);
    cur->rec.state = AssignmentState::cancelled;
    cur->rec.ended_ts = now;
    cur->rec.end_reason = "replaced by " + std::string(u->id());
    inc->needs[need].active = nullptr;
    inc->needs[need].excluded.push_back(slot_of(old));  // taken off by hand: not put back by the engine
    old.active = nullptr;
    ++stats_.assignments_cancelled;
    out.writes.push_back(cur->rec);
    timeline(*inc, now, "cancelled", std::string(old.id()) + ": replaced by " + std::string(u->id()), actor,
             out);
    send_to_unit(old, ev::Cancel{cur->rec.id, std::string(old.id()), "replaced by " + std::string(u->id())},
                 out);
    free_unit(old, now, actor, "replaced on " + inc->rec.id, out);
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
  end_assignment(*a, AssignmentState::cancelled, "cancelled by dispatcher", true, now, actor_of(o),
                 out);
  dispatch_waiting(now, out);
}

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

void Engine::on_close(const cmd::Close& c, const Origin& o, Millis now, Output& out) {
  Incident* inc = find_incident(c.incident);
  if (!inc) return error(o, ErrorCode::unknown_incident, "no such incident", c.incident, out);
  if (!is_open(inc->rec.state))
    return error(o, ErrorCode::conflict, "incident is " + std::string(to_string(inc->rec.state)),
                 c.incident, out);
  close_incident(*inc, IncidentState::closed, now, actor_of(o), "closed by dispatcher", out);
  dispatch_waiting(now, out);
}

void Engine::on_delivered(const cmd::Delivered& c, const Origin& o, Millis now, Output& out) {
  auto it = std::find_if(pages_.begin(), pages_.end(),
                         [&](const PendingPage& p) { return p.rec.id == c.page; });
  if (it == pages_.end()) {
    // Delivered twice, or after a restart: harmless unless the page never existed.
    if (seq_of(c.page) == 0 || seq_of(c.page) > page_seq_)
      error(o, ErrorCode::bad_message, "no such page", c.page, out);
    return;
  }
  it->rec.delivered = true;
  it->rec.delivered_ts = now;
  out.writes.push_back(it->rec);
  if (Assignment* a = find_assignment(it->rec.assignment))
    timeline(*a->incident, now, "paged", it->rec.unit + " pager delivered " + it->rec.id,
             actor_of(o), out);
  pages_.erase(it);
  out.must_wait = true;
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
  plan_needs(*inc, now, &out);
  out.writes.push_back(inc->rec);
  dispatch(*inc, now, system_actor, out);
  out.must_wait = true;
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
  timeline(inc, now, c.step, detail, actor_of(o), out);
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

ServiceLevels& Engine::service_of(const Incident& inc) {
  return service_[inc.rec.district + "|" + std::string(to_string(inc.rec.severity))];
}

// ---------------------------------------------------------------------------------------
// Timers

void Engine::tick(Millis now, Output& out) {
  tick_stations(now);
  // Ack timeouts lapse to the next nearest unit.
  std::vector<Assignment*> due;
  for (Assignment* a : pending_ack_)
    if (a->ack_deadline <= now) due.push_back(a);
  for (Assignment* a : due)
    if (a->rec.state == AssignmentState::assigned)
      end_assignment(*a, AssignmentState::lapsed, "no ack within " +
                         std::to_string(config_.ack_within_ms / 1000) + " s",
                     true, now, system_actor, out);
  // Lapsed units are free again (and may answer now): waiting incidents may take them.
  if (!due.empty() && waiting_count_) dispatch_waiting(now, out);

  // Stale sweep: a slice of the fleet per tick, the whole fleet about every second.
  if (!units_.empty()) {
    const std::size_t slice = std::max<std::size_t>(1024, units_.size() / 4);
    for (std::size_t i = 0; i < slice && i < units_.size(); ++i) {
      if (sweep_next_ >= units_.size()) sweep_next_ = 0;
      Unit& u = units_[sweep_next_++];
      if (!u.has_pos) continue;
      const bool stale = now - u.pos_ts > config_.stale_after_ms;
      if (stale != u.stale) {
        u.stale = stale;
        reindex(u, now);
        unit_changed(u, out);
      }
    }
  }

  // Pages not delivered in time go out again, while a pager gateway is there to take
  // them; a page whose assignment has ended is not worth sending any more.
  std::erase_if(pages_, [&](const PendingPage& p) {
    const Assignment* a = find_assignment(p.rec.assignment);
    return !a || !is_active(a->rec.state);
  });
  if (pagers_connected_)
    for (auto& p : pages_)
      if (now - p.sent_ts >= config_.page_retry_ms) {
        p.sent_ts = now;
        ++stats_.pages_resent;
        out.messages.push_back({Target::pagers(),
                                ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
      }

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
  if (!out.writes.empty()) out.must_wait = true;
}

std::vector<Engine::Candidate> Engine::candidates(std::string_view incident, std::size_t k,
                                                  Millis now) const {
  std::vector<Candidate> out;
  const Incident* inc = this->incident(incident);
  if (!inc) return out;
  const geo::LatLon at{inc->rec.lat, inc->rec.lon};
  for (int kind = 0; kind < 3; ++kind) {
    auto hits = index_[kind].nearest_k(at, k, [&](std::uint32_t slot) {
      return assignable(units_[slot], now);
    });
    for (const auto& h : hits)
      out.push_back({h.id, h.distance_m, eta_for(static_cast<UnitKind>(kind), h.distance_m)});
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.eta_s < b.eta_s; });
  if (out.size() > k) out.resize(k);
  return out;
}

}  // namespace dispatch::engine
