#include "data/stations_store.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <limits>

#include "engine/signals.hpp"

namespace dispatch::data {

namespace rec = engine::rec;
namespace json = boost::json;
using engine::Millis;

namespace rows {

#define SIGHTING_COLS "station, plate, ts, lat, lon, direction, note, received_ts"
#define HAZARD_COLS                                                                             \
  "id, seq, report_id, source, station, lat, lon, ts, kind, note, state, received_ts, "        \
  "cleared_ts, cleared_by"
#define HAZARD_EVENT_COLS "hazard, ts, event, detail, actor_role, actor_name"

std::string plate_key(const std::string& plate) { return engine::SignalBook::normalize_plate(plate); }

const char* station_write_sql(W w) {
  switch (w) {
    case W::insert_sighting:
      // The same station, plate (as a key) and ts is the same sighting (a station sending
      // its log again after a lost answer).
      return "INSERT INTO sightings(station, plate, plate_key, ts, lat, lon, direction, note, received_ts) "
             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(station, plate_key, ts) DO NOTHING";
    case W::upsert_hazard:
      return "INSERT INTO hazards(" HAZARD_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
             "ON CONFLICT(id) DO UPDATE SET state = excluded.state, cleared_ts = excluded.cleared_ts, "
             "cleared_by = excluded.cleared_by";
    case W::insert_hazard_event:
      return "INSERT INTO hazard_events(" HAZARD_EVENT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
    case W::upsert_incident_signals:
      return "INSERT INTO incident_signals(incident, computed_ts, stage, signals) VALUES(?1, ?2, ?3, ?4) "
             "ON CONFLICT(incident) DO UPDATE SET computed_ts = excluded.computed_ts, stage = excluded.stage, "
             "signals = excluded.signals";
    case W::insert_incident_plate:
      return "INSERT INTO incident_plates(plate_key, incident, plate, reported_ts) VALUES(?1, ?2, ?3, ?4) "
             "ON CONFLICT(plate_key, incident) DO NOTHING";
    case W::prune_sightings:
      return "DELETE FROM sightings WHERE (station, plate_key, ts) IN "
             "(SELECT station, plate_key, ts FROM sightings WHERE ts < ?1 ORDER BY ts LIMIT ?2)";
    default:
      return "";
  }
}

const char* station_read_sql(R r) {
  switch (r) {
    case R::recent_sightings:
      return "SELECT " SIGHTING_COLS " FROM sightings WHERE ts >= ?1 ORDER BY ts, station";
    case R::recent_plates:
      return "SELECT incident, reported_ts, plate FROM incident_plates WHERE reported_ts >= ?1 "
             "ORDER BY reported_ts, incident";
    case R::open_hazards:
      return "SELECT " HAZARD_COLS " FROM hazards WHERE state = 'open' ORDER BY seq";
    case R::hazard_keys:
      return "SELECT source, report_id, id FROM hazards ORDER BY seq";
    case R::max_hazard_seq:
      return "SELECT max(seq) FROM hazards";
    case R::open_signals:
      return "SELECT s.incident, s.computed_ts, s.stage, s.signals FROM incident_signals s "
             "JOIN incidents i ON i.id = s.incident WHERE i." OPEN_STATE;
    case R::signals_of:
      return "SELECT signals FROM incident_signals WHERE incident = ?1";
    case R::hazards_all:
      return "SELECT " HAZARD_COLS " FROM hazards ORDER BY seq DESC LIMIT ?1";
    case R::hazards_open:
      return "SELECT " HAZARD_COLS " FROM hazards WHERE state = 'open' ORDER BY seq DESC LIMIT ?1";
    case R::hazard_events:
      return "SELECT " HAZARD_EVENT_COLS " FROM hazard_events WHERE hazard = ?1 ORDER BY ts, id";
    case R::vehicle_sightings:
      return "SELECT " SIGHTING_COLS " FROM sightings WHERE plate_key = ?1 AND ts < ?2 "
             "ORDER BY ts DESC, station DESC LIMIT ?3";
    case R::vehicle_incidents:
      return "SELECT i.id, i.reported_ts, i.severity, i.state, i.lat, i.lon, i.district "
             "FROM incident_plates p JOIN incidents i ON i.id = p.incident "
             "WHERE p.plate_key = ?1 AND p.reported_ts < ?2 ORDER BY p.reported_ts DESC, p.incident DESC LIMIT ?3";
    default:
      return "";
  }
}

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

}  // namespace rows

namespace stations {

namespace {

rec::Sighting read_sighting(const Row& q) {
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

rec::Hazard read_hazard(const Row& q) {
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
  return static_cast<std::int64_t>(
      std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

}  // namespace

void load(Backend& db, engine::StationSnapshot& s, Millis now) {
  using rows::R;
  auto read = [&db](R what, const Params& p, const EachRow& each) { return db.read(what, p, each); };
  const engine::SignalConfig c;
  read(R::recent_sightings, params(now - c.sighting_window_ms),
       [&](const Row& q) { s.recent_sightings.push_back(read_sighting(q)); });
  read(R::recent_plates, params(now - c.history_ms), [&](const Row& q) {
    std::string id = q.text(0);
    if (s.recent_incidents.empty() || s.recent_incidents.back().incident != id)
      s.recent_incidents.push_back({std::move(id), q.int64(1), {}});
    s.recent_incidents.back().plates.push_back(q.text(2));
  });
  read(R::open_hazards, {}, [&](const Row& q) { s.open_hazards.push_back(read_hazard(q)); });
  read(R::hazard_keys, {}, [&](const Row& q) { s.hazard_keys.push_back({q.text(0), q.text(1), q.text(2)}); });
  read(R::max_hazard_seq, {}, [&](const Row& q) { s.max_hazard_seq = static_cast<std::uint64_t>(q.int64(0)); });
  read(R::open_signals, {}, [&](const Row& q) {
    s.signals.push_back(rec::IncidentSignals{q.text(0), q.int64(1), q.text(2), rows::parse_signals(q.text(3))});
  });
}

std::vector<engine::Signal> signals_of(Backend& db, const std::string& incident) {
  std::vector<engine::Signal> out;
  db.read(rows::R::signals_of, params(incident), [&](const Row& q) { out = rows::parse_signals(q.text(0)); });
  return out;
}

std::vector<HazardRecord> hazards(Backend& db, const HazardQuery& query) {
  std::vector<HazardRecord> out;
  db.read(query.open_only ? rows::R::hazards_open : rows::R::hazards_all, params(clamp_limit(query.limit)),
       [&](const Row& q) { out.push_back(HazardRecord{read_hazard(q), {}}); });
  for (auto& h : out)
    db.read(rows::R::hazard_events, params(h.hazard.id), [&](const Row& q) {
      h.events.push_back(rec::HazardEvent{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)});
    });
  return out;
}

VehicleHistory vehicle(Backend& db, const VehicleQuery& query) {
  VehicleHistory out;
  const std::string key = rows::plate_key(query.plate);
  const std::int64_t before = query.before_ts > 0 ? query.before_ts : std::numeric_limits<std::int64_t>::max();
  db.read(rows::R::vehicle_sightings, params(key, before, clamp_limit(query.limit)),
       [&](const Row& q) { out.sightings.push_back(read_sighting(q)); });
  db.read(rows::R::vehicle_incidents, params(key, before, clamp_limit(query.limit)), [&](const Row& q) {
    VehicleHistory::Incident i;
    i.id = q.text(0);
    i.reported_ts = q.int64(1);
    i.severity = q.text(2);
    i.state = q.text(3);
    i.lat = q.real(4);
    i.lon = q.real(5);
    i.district = q.text(6);
    out.incidents.push_back(std::move(i));
  });
  return out;
}

}  // namespace stations

}  // namespace dispatch::data
