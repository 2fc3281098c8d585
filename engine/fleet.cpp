// The fleet: the roster (ids, callsigns, capcodes, bases packed in an arena), the id
// table, the spatial index of assignable units, positions, staleness, duty status, and
// how a message reaches a unit.
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

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
  auto& other = unassignable_[static_cast<int>(u.kind)];
  if (u.status == UnitStatus::available && u.has_pos && now - u.pos_ts <= config_.stale_after_ms) {
    idx.upsert(slot_of(u), u.pos);
    other.remove(slot_of(u));
  } else {
    idx.remove(slot_of(u));
    if (u.has_pos)
      other.upsert(slot_of(u), u.pos);
    else
      other.remove(slot_of(u));
  }
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

bool Engine::any_assignable(UnitKind kind, geo::LatLon near, Millis now) const {
  const auto& idx = index_[static_cast<int>(kind)];
  if (idx.size() == 0) return false;
  const Millis fresh_after = now - config_.stale_after_ms;
  return idx.nearest(near, [&](std::uint32_t slot) {
           const Unit& u = units_[slot];
           return u.pos_ts >= fresh_after && u.status == UnitStatus::available;
         }).has_value();
}

void Engine::send_to_unit(const Unit& u, Payload payload, Output& out) {
  const ConnId to = u.own_conn ? u.own_conn : u.gateway_conn;
  if (!to) return;  // unreachable now: the pager (if any) and the ack timer take over
  out.messages.push_back({Target::to(to), std::move(payload)});
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

void Engine::sweep_stale(Millis now, Output& out) {
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

}

}  // namespace dispatch::engine
