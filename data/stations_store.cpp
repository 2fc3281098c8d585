#include "data/stations_store.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <limits>

#include "engine/signals.hpp"

namespace dispatch::data {

namespace rec = engine::rec;
namespace json = boost::json;
using engine::Millis;

namespace {

std::optional<std::int64_t> ts_or_null(Millis t) {
  return t == 0 ? std::nullopt : std::optional<std::int64_t>(t);
}

#define SIGHTING_COLS "station, plate, ts, lat, lon, direction, note, received_ts"
#define HAZARD_COLS                                                                             \
  "id, seq, report_id, source, station, lat, lon, ts, kind, note, state, received_ts, "        \
  "cleared_ts, cleared_by"
#define HAZARD_EVENT_COLS "hazard, ts, event, detail, actor_role, actor_name"

rec::Sighting read_sighting(const sql::Query& q) {
  rec::Sighting s;
  s.station = q.text(0);
  s.plate = q.text(1);
  s.ts = q.int64(2);
  s.lat = q.real(3);
  s.lon = q.real(4);
  s.direction = q.text(5);
  s.note = q.text(6);
  s.received_ts = q.int64(7);
  return s;
}

rec::Hazard read_hazard(const sql::Query& q) {
  rec::Hazard h;
  h.id = q.text(0);
  h.seq = static_cast<std::uint64_t>(q.int64(1));
  h.report_id = q.text(2);
  h.source = q.text(3);
  h.station = q.text(4);
  h.lat = q.real(5);
  h.lon = q.real(6);
  h.ts = q.int64(7);
  h.kind = q.text(8);
  h.note = q.text(9);
  h.cleared = q.text(10) == "cleared";
  h.received_ts = q.int64(11);
  h.cleared_ts = q.int64(12);
  h.cleared_by = q.text(13);
  return h;
}

std::int64_t clamp_limit(std::size_t n) {
  return static_cast<std::int64_t>(std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

}  // namespace

std::string signals_json(const std::vector<engine::Signal>& signals) {
  json::array a;
  for (const auto& s : signals) {
    json::object o{{"kind", s.kind}, {"detail", s.detail}};
    json::array plates;
    for (const auto& p : s.plates) plates.emplace_back(p);
    o["plates"] = std::move(plates);
    if (s.sighting) {
      const auto& e = *s.sighting;
      o["sighting"] = json::object{{"station", e.station}, {"plate", e.plate}, {"ts", e.ts},
                                   {"lat", e.lat}, {"lon", e.lon}, {"distance_m", e.distance_m},
                                   {"elapsed_ms", e.elapsed_ms}, {"min_travel_ms", e.min_travel_ms}};
    }
    json::array incidents;
    for (const auto& i : s.incidents) incidents.emplace_back(i);
    o["incidents"] = std::move(incidents);
    a.push_back(std::move(o));
  }
  return json::serialize(a);
}

std::vector<engine::Signal> parse_signals(const std::string& text) {
  std::vector<engine::Signal> out;
  boost::system::error_code ec;
  const json::value v = json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  auto str = [](const json::object& o, const char* k) {
    const json::value* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->get_string()) : std::string();
  };
  auto num = [](const json::object& o, const char* k) {
    const json::value* x = o.if_contains(k);
    return x && x->is_number() ? x->to_number<double>() : 0.0;
  };
  for (const auto& e : v.get_array()) {
    const json::object* o = e.if_object();
    if (!o) continue;
    engine::Signal s;
    s.kind = str(*o, "kind");
    s.detail = str(*o, "detail");
    if (const auto* p = o->if_contains("plates"); p && p->is_array())
      for (const auto& x : p->get_array())
        if (x.is_string()) s.plates.emplace_back(x.get_string());
    if (const auto* p = o->if_contains("sighting"); p && p->is_object()) {
      const auto& so = p->get_object();
      engine::SignalSighting ev;
      ev.station = str(so, "station");
      ev.plate = str(so, "plate");
      ev.ts = static_cast<Millis>(num(so, "ts"));
      ev.lat = num(so, "lat");
      ev.lon = num(so, "lon");
      ev.distance_m = num(so, "distance_m");
      ev.elapsed_ms = static_cast<Millis>(num(so, "elapsed_ms"));
      ev.min_travel_ms = static_cast<Millis>(num(so, "min_travel_ms"));
      s.sighting = std::move(ev);
    }
    if (const auto* p = o->if_contains("incidents"); p && p->is_array())
      for (const auto& x : p->get_array())
        if (x.is_string()) s.incidents.emplace_back(x.get_string());
    out.push_back(std::move(s));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Writes

StationWrites::StationWrites(sql::Db& db)
    : db_(db),
      // The same station, plate and ts is the same sighting (a station sending its log
      // again after a lost answer).
      insert_sighting_(db, "INSERT INTO sightings(station, plate, plate_key, ts, lat, lon, direction, note, "
                           "received_ts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                           "ON CONFLICT(station, plate_key, ts) DO NOTHING"),
      upsert_hazard_(db, "INSERT INTO hazards(" HAZARD_COLS
                         ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                         "ON CONFLICT(id) DO UPDATE SET state = excluded.state, "
                         "cleared_ts = excluded.cleared_ts, cleared_by = excluded.cleared_by"),
      insert_hazard_event_(db, "INSERT INTO hazard_events(" HAZARD_EVENT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
      upsert_signals_(db, "INSERT INTO incident_signals(incident, computed_ts, stage, signals) "
                          "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(incident) DO UPDATE SET "
                          "computed_ts = excluded.computed_ts, stage = excluded.stage, "
                          "signals = excluded.signals"),
      insert_plate_(db, "INSERT INTO incident_plates(plate_key, incident, plate, reported_ts) "
                        "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(plate_key, incident) DO NOTHING"),
      prune_(db, "DELETE FROM sightings WHERE (station, plate_key, ts) IN "
                 "(SELECT station, plate_key, ts FROM sightings WHERE ts < ?1 ORDER BY ts LIMIT ?2)") {}

int StationWrites::apply(const rec::Sighting& s) {
  return insert_sighting_.run(s.station, s.plate, engine::SignalBook::normalize_plate(s.plate), s.ts, s.lat, s.lon,
                              s.direction, s.note, s.received_ts);
}

int StationWrites::apply(const rec::Hazard& h) {
  return upsert_hazard_.run(h.id, h.seq, h.report_id, h.source, h.station, h.lat, h.lon, h.ts, h.kind, h.note,
                            std::string(h.cleared ? "cleared" : "open"), h.received_ts, ts_or_null(h.cleared_ts),
                            h.cleared_by);
}

int StationWrites::apply(const rec::HazardEvent& e) {
  return insert_hazard_event_.run(e.hazard, e.ts, e.event, e.detail, e.actor_role, e.actor_name);
}

int StationWrites::apply(const rec::IncidentSignals& s) {
  int rc = upsert_signals_.run(s.incident, s.computed_ts, s.stage, signals_json(s.signals));
  for (std::size_t i = 0; rc == SQLITE_OK && i < s.plates.size(); ++i) {
    const std::string key = engine::SignalBook::normalize_plate(s.plates[i]);
    if (!key.empty()) rc = insert_plate_.run(key, s.incident, s.plates[i], s.reported_ts);
  }
  return rc;
}

std::int64_t StationWrites::prune(Millis cutoff, std::int64_t chunk) {
  if (prune_.run(cutoff, chunk) != SQLITE_OK) return -1;
  return db_.changes();
}

// ---------------------------------------------------------------------------------------
// Reads

StationReads::StationReads(sql::Db& db)
    : recent_sightings_(db, "SELECT " SIGHTING_COLS " FROM sightings WHERE ts >= ?1 ORDER BY ts, station"),
      recent_plates_(db, "SELECT incident, reported_ts, plate FROM incident_plates WHERE reported_ts >= ?1 "
                         "ORDER BY reported_ts, incident"),
      open_hazards_(db, "SELECT " HAZARD_COLS " FROM hazards WHERE state = 'open' ORDER BY seq"),
      hazard_keys_(db, "SELECT source, report_id, id FROM hazards ORDER BY seq"),
      max_hazard_seq_(db, "SELECT max(seq) FROM hazards"),
      open_signals_(db, "SELECT s.incident, s.computed_ts, s.stage, s.signals FROM incident_signals s "
                        "JOIN incidents i ON i.id = s.incident WHERE i.state NOT IN ('closed', 'cancelled')"),
      signals_of_(db, "SELECT signals FROM incident_signals WHERE incident = ?1"),
      hazards_all_(db, "SELECT " HAZARD_COLS " FROM hazards ORDER BY seq DESC LIMIT ?1"),
      hazards_open_(db, "SELECT " HAZARD_COLS " FROM hazards WHERE state = 'open' ORDER BY seq DESC LIMIT ?1"),
      hazard_events_(db, "SELECT " HAZARD_EVENT_COLS " FROM hazard_events WHERE hazard = ?1 ORDER BY ts, id"),
      vehicle_sightings_(db, "SELECT " SIGHTING_COLS " FROM sightings WHERE plate_key = ?1 AND ts < ?2 "
                             "ORDER BY ts DESC, station DESC LIMIT ?3"),
      vehicle_incidents_(db, "SELECT i.id, i.reported_ts, i.severity, i.state, i.lat, i.lon, i.district "
                             "FROM incident_plates p JOIN incidents i ON i.id = p.incident "
                             "WHERE p.plate_key = ?1 AND p.reported_ts < ?2 "
                             "ORDER BY p.reported_ts DESC, p.incident DESC LIMIT ?3") {}

void StationReads::load(engine::StationSnapshot& s, Millis now) {
  const engine::SignalConfig c;
  {
    sql::Query q(recent_sightings_, now - c.sighting_window_ms);
    while (q.next()) s.recent_sightings.push_back(read_sighting(q));
  }
  {
    sql::Query q(recent_plates_, now - c.history_ms);
    while (q.next()) {
      std::string id = q.text(0);
      if (s.recent_incidents.empty() || s.recent_incidents.back().incident != id)
        s.recent_incidents.push_back({std::move(id), q.int64(1), {}});
      s.recent_incidents.back().plates.push_back(q.text(2));
    }
  }
  {
    sql::Query q(open_hazards_);
    while (q.next()) s.open_hazards.push_back(read_hazard(q));
  }
  {
    sql::Query q(hazard_keys_);
    while (q.next()) s.hazard_keys.push_back({q.text(0), q.text(1), q.text(2)});
  }
  {
    sql::Query q(max_hazard_seq_);
    if (q.next()) s.max_hazard_seq = static_cast<std::uint64_t>(q.int64(0));
  }
  sql::Query q(open_signals_);
  while (q.next()) {
    rec::IncidentSignals is;
    is.incident = q.text(0);
    is.computed_ts = q.int64(1);
    is.stage = q.text(2);
    is.signals = parse_signals(q.text(3));
    s.signals.push_back(std::move(is));
  }
}

std::vector<engine::Signal> StationReads::signals_of(const std::string& incident) {
  sql::Query q(signals_of_, incident);
  if (!q.next()) return {};
  return parse_signals(q.text(0));
}

std::vector<HazardRecord> StationReads::hazards(const HazardQuery& query) {
  std::vector<HazardRecord> out;
  {
    sql::Query q(query.open_only ? hazards_open_ : hazards_all_, clamp_limit(query.limit));
    while (q.next()) out.push_back(HazardRecord{read_hazard(q), {}});
  }
  for (auto& h : out) {
    sql::Query q(hazard_events_, h.hazard.id);
    while (q.next())
      h.events.push_back(rec::HazardEvent{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)});
  }
  return out;
}

VehicleHistory StationReads::vehicle(const VehicleQuery& query) {
  VehicleHistory out;
  const std::string key = engine::SignalBook::normalize_plate(query.plate);
  const std::int64_t before = query.before_ts > 0 ? query.before_ts : std::numeric_limits<std::int64_t>::max();
  {
    sql::Query q(vehicle_sightings_, key, before, clamp_limit(query.limit));
    while (q.next()) out.sightings.push_back(read_sighting(q));
  }
  sql::Query q(vehicle_incidents_, key, before, clamp_limit(query.limit));
  while (q.next()) {
    VehicleHistory::Incident i;
    i.id = q.text(0);
    i.reported_ts = q.int64(1);
    i.severity = q.text(2);
    i.state = q.text(3);
    i.lat = q.real(4);
    i.lon = q.real(5);
    i.district = q.text(6);
    out.incidents.push_back(std::move(i));
  }
  return out;
}

}  // namespace dispatch::data
