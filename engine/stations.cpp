// The engine's room for rural traffic-safety stations (wire contract v2 section 10):
// sightings into the signals' window, hazards (reported, shown, cleared), and the fraud
// signals of incidents, computed at the report and again at the liability decision.
#include <algorithm>
#include <cstdio>

#include "engine/engine.hpp"

namespace dispatch::engine {

namespace {

const Actor system_actor{"system", "dispatchd"};

Actor actor_of(const Origin& o) {
  if (!o.who) return system_actor;
  return Actor{o.who->role, o.who->name};
}

std::string hazard_id(std::uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "H-%06llu", static_cast<unsigned long long>(seq));
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

std::string key_of(std::string_view source, std::string_view id) {
  std::string k(source);
  k += '\n';
  k += id;
  return k;
}

// Cleared hazards stay in memory this long (a second `clear_hazard` is a conflict, not
// an unknown hazard); the store keeps them for ever.
constexpr Millis keep_cleared_ms = 10 * 60'000;

}  // namespace

const rec::Hazard* Engine::hazard(std::string_view id) const {
  auto it = hazards_.find(id);
  return it == hazards_.end() ? nullptr : &it->second;
}

std::vector<const rec::Hazard*> Engine::open_hazards() const {
  std::vector<const rec::Hazard*> out;
  for (const auto& [id, h] : hazards_)
    if (!h.cleared) out.push_back(&h);
  std::sort(out.begin(), out.end(), [](const rec::Hazard* a, const rec::Hazard* b) { return a->seq < b->seq; });
  return out;
}

void Engine::on_sighting(const cmd::Sighting& c, const Origin& o, Millis now, Output& out) {
  const std::string station = o.who ? o.who->station : std::string();
  std::optional<PlaceRef> place;
  if (geography_ && !station.empty()) place = geography_->station(station);
  if (!place)
    return error(o, ErrorCode::bad_message,
                 station.empty() ? "only a station token may log sightings"
                                 : "this token's station '" + station + "' is not a known place",
                 c.id, out);
  if (c.ts > now + config_.max_future_ms)
    return error(o, ErrorCode::bad_message, "ts is too far in the future", c.id, out);
  ++stats_.sightings;
  if (signals_.add_sighting(station, c.plate, c.ts, place->pos, now)) ++stats_.sightings_windowed;
  rec::Sighting s;
  s.station = station;
  s.plate = c.plate;
  s.ts = c.ts;
  s.lat = place->pos.lat;
  s.lon = place->pos.lon;
  s.direction = c.direction;
  s.note = c.note;
  s.received_ts = now;
  out.writes.push_back(std::move(s));
  if (!c.id.empty()) {
    out.messages.push_back({Target::to(o.conn), ev::SightingAccepted{c.id, c.plate, c.ts}});
    out.must_wait = true;
  }
}

void Engine::hazard_event(const rec::Hazard& h, Millis ts, std::string event, std::string detail,
                          const Actor& actor, Output& out) {
  out.writes.push_back(rec::HazardEvent{h.id, ts, std::move(event), std::move(detail), actor.role, actor.name});
}

void Engine::on_hazard(const cmd::Hazard& c, const Origin& o, Millis now, Output& out) {
  const Actor actor = actor_of(o);
  const std::string source = actor.role + ":" + actor.name;
  std::string key = key_of(source, c.id);
  if (auto it = hazard_keys_.find(key); it != hazard_keys_.end()) {
    // The same id from the same token: the same hazard, the same answer.
    out.messages.push_back({Target::to(o.conn), ev::HazardAccepted{c.id, it->second}});
    out.must_wait = true;
    return;
  }
  if (c.ts > now + config_.max_future_ms)
    return error(o, ErrorCode::bad_message, "ts is too far in the future", c.id, out);
  if (config_.max_open_per_source) {
    // Like reports: a token may have so many open hazards at once.
    const auto open = static_cast<std::size_t>(std::count_if(hazards_.begin(), hazards_.end(), [&](const auto& e) {
      return !e.second.cleared && e.second.source == source;
    }));
    if (open >= config_.max_open_per_source)
      return error(o, ErrorCode::rate_limited,
                   "this token has too many open hazards (" + std::to_string(open) + "); no new one until some are cleared",
                   c.id, out);
  }
  rec::Hazard h;
  h.seq = ++hazard_seq_;
  h.id = hazard_id(h.seq);
  h.report_id = c.id;
  h.source = source;
  h.station = o.who ? o.who->station : std::string();
  h.lat = c.lat;
  h.lon = c.lon;
  h.ts = c.ts;
  h.kind = c.kind;
  h.note = c.note;
  h.received_ts = now;
  ++stats_.hazards;
  out.writes.push_back(h);
  hazard_event(h, now, "reported",
               c.kind + " reported by " + actor.role + " " + actor.name +
                   (h.station.empty() ? std::string() : " (station " + h.station + ")"),
               actor, out);
  out.messages.push_back({Target::to(o.conn), ev::HazardAccepted{c.id, h.id}});
  out.messages.push_back({Target::consoles(), ev::HazardChanged{h.id}});
  out.must_wait = true;
  hazard_keys_.emplace(std::move(key), h.id);
  hazards_.emplace(h.id, std::move(h));
}

void Engine::on_clear_hazard(const cmd::ClearHazard& c, const Origin& o, Millis now, Output& out) {
  auto it = hazards_.find(c.hazard);
  if (it == hazards_.end()) return error(o, ErrorCode::bad_message, "no such open hazard", c.hazard, out);
  rec::Hazard& h = it->second;
  if (h.cleared) return error(o, ErrorCode::conflict, "the hazard is already cleared", c.hazard, out);
  const Actor actor = actor_of(o);
  h.cleared = true;
  h.cleared_ts = now;
  h.cleared_by = actor.role + ":" + actor.name;
  out.writes.push_back(h);
  hazard_event(h, now, "cleared", "cleared by " + actor.role + " " + actor.name, actor, out);
  out.messages.push_back({Target::consoles(), ev::HazardChanged{h.id}});
  out.must_wait = true;
  cleared_hazards_.emplace_back(now, h.id);
}

void Engine::compute_signals(Incident& inc, const char* stage, Millis now, Output& out) {
  const bool at_report = std::string_view(stage) == "report";
  std::vector<std::string> plates;
  plates.reserve(inc.rec.vehicles.size());
  for (const auto& v : inc.rec.vehicles) plates.push_back(v.plate);
  if (at_report) {
    signals_.add_incident(inc.rec.id, inc.rec.reported_ts, plates, now);
    for (const auto& p : plates) out.writes.push_back(rec::IncidentPlate{p, inc.rec.id, inc.rec.reported_ts});
  }
  auto merged = SignalBook::merge(inc.signals, signals_.check(inc.rec.id, {inc.rec.lat, inc.rec.lon},
                                                              inc.rec.reported_ts, plates));
  if (merged == inc.signals) return;
  // A timeline line for each signal not raised before (by kind and plates).
  for (const auto& s : merged) {
    const bool known = std::any_of(inc.signals.begin(), inc.signals.end(), [&](const Signal& old) {
      return old.kind == s.kind && old.plates == s.plates;
    });
    if (!known) timeline(inc, now, "signal", s.kind + ": " + s.detail, system_actor, out);
  }
  if (inc.signals.empty()) ++stats_.signals_raised;
  inc.signals = std::move(merged);
  incident_changed(inc, out);
  out.writes.push_back(rec::IncidentSignals{inc.rec.id, now, stage, inc.signals});
  out.must_wait = true;
}

void Engine::restore_stations(const StationSnapshot& s, Millis now) {
  for (const auto& x : s.recent_sightings) signals_.add_sighting(x.station, x.plate, x.ts, {x.lat, x.lon}, now);
  for (const auto& i : s.recent_incidents) signals_.add_incident(i.incident, i.reported_ts, i.plates, now);
  hazard_seq_ = std::max(hazard_seq_, s.max_hazard_seq);
  for (const auto& k : s.hazard_keys) {
    hazard_keys_.emplace(key_of(k.source, k.report_id), k.hazard);
    hazard_seq_ = std::max(hazard_seq_, seq_of(k.hazard));
  }
  for (const auto& h : s.open_hazards) {
    hazard_seq_ = std::max(hazard_seq_, h.seq);
    hazards_.emplace(h.id, h);
  }
  for (const auto& is : s.signals)
    if (auto it = incidents_.find(is.incident); it != incidents_.end()) it->second->signals = is.signals;
}

void Engine::tick_stations(Millis now) {
  signals_.evict(now);
  while (!cleared_hazards_.empty() && now - cleared_hazards_.front().first > keep_cleared_ms) {
    auto it = hazards_.find(cleared_hazards_.front().second);
    cleared_hazards_.pop_front();
    if (it != hazards_.end() && it->second.cleared) hazards_.erase(it);
  }
}

}  // namespace dispatch::engine
