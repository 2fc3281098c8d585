#include "data/rows.hpp"

#include <boost/json.hpp>

namespace dispatch::data::rows {

std::string vehicles_json(const std::vector<engine::Vehicle>& vehicles) {
  boost::json::array a;
  a.reserve(vehicles.size());
  for (const auto& v : vehicles) a.push_back({{"plate", v.plate}, {"insurer", v.insurer}});
  return boost::json::serialize(a);
}

std::vector<engine::Vehicle> parse_vehicles(const std::string& text) {
  std::vector<engine::Vehicle> out;
  boost::system::error_code ec;
  const auto jv = boost::json::parse(text, ec);
  if (ec || !jv.is_array()) return out;
  for (const auto& item : jv.get_array()) {
    const auto* o = item.if_object();
    if (!o) continue;
    engine::Vehicle v;
    if (const auto* p = o->if_contains("plate"); p && p->is_string()) v.plate = p->get_string();
    if (const auto* p = o->if_contains("insurer"); p && p->is_string()) v.insurer = p->get_string();
    out.push_back(std::move(v));
  }
  return out;
}

std::string strings_json(const std::vector<std::string>& v) {
  boost::json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return boost::json::serialize(a);
}

std::vector<std::string> parse_strings(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  const auto jv = boost::json::parse(text, ec);
  if (ec || !jv.is_array()) return out;
  for (const auto& e : jv.get_array())
    if (e.is_string()) out.emplace_back(e.get_string());
  return out;
}

// Standard SQL that SQLite and PostgreSQL both take (upserts with ON CONFLICT, row values).
const char* write_sql(W w) {
  switch (w) {
    case W::upsert_unit:
      return "INSERT INTO units(" UNIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
             "ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, "
             "callsign = excluded.callsign, capcode = excluded.capcode, "
             "base_lat = excluded.base_lat, base_lon = excluded.base_lon, "
             "status = excluded.status, updated_ts = excluded.updated_ts";
    case W::insert_unit_if_absent:
      return "INSERT INTO units(" UNIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
             "ON CONFLICT(id) DO NOTHING";
    case W::upsert_incident:
      return "INSERT INTO incidents(" INCIDENT_COLS
             ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
             "?17, ?18, ?19, ?20) "
             "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, report_id = excluded.report_id, "
             "state = excluded.state, severity = excluded.severity, lat = excluded.lat, "
             "lon = excluded.lon, district = excluded.district, "
             "reported_ts = excluded.reported_ts, received_ts = excluded.received_ts, "
             "injured = excluded.injured, drivable = excluded.drivable, "
             "parties_agree = excluded.parties_agree, vehicles = excluded.vehicles, "
             "note = excluded.note, source = excluded.source, at_fault = excluded.at_fault, "
             "liability_ts = excluded.liability_ts, closed_ts = excluded.closed_ts, "
             "hospital = excluded.hospital";
    case W::upsert_assignment:
      return "INSERT INTO assignments(" ASSIGNMENT_COLS
             ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) "
             "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, incident = excluded.incident, "
             "unit = excluded.unit, task = excluded.task, state = excluded.state, "
             "lat = excluded.lat, lon = excluded.lon, eta_s = excluded.eta_s, "
             "assigned_ts = excluded.assigned_ts, acked_ts = excluded.acked_ts, "
             "arrived_ts = excluded.arrived_ts, cleared_ts = excluded.cleared_ts, "
             "ended_ts = excluded.ended_ts, end_reason = excluded.end_reason, "
             "candidates = excluded.candidates";
    case W::insert_timeline:
      return "INSERT INTO timeline(" TIMELINE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
    case W::insert_unit_event:
      return "INSERT INTO unit_events(" UNIT_EVENT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
    case W::insert_track:
      // The same unit at the same millisecond is the same point: keep the later fix.
      return "INSERT INTO tracks(" TRACK_COLS ") VALUES(?1, ?2, ?3, ?4) "
             "ON CONFLICT(unit, ts) DO UPDATE SET lat = excluded.lat, lon = excluded.lon";
    case W::upsert_page:
      return "INSERT INTO pages(" PAGE_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
             "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, unit = excluded.unit, "
             "capcode = excluded.capcode, assignment = excluded.assignment, "
             "text = excluded.text, delivered = excluded.delivered, "
             "created_ts = excluded.created_ts, delivered_ts = excluded.delivered_ts";
    case W::upsert_claim:
      return "INSERT INTO claims(" CLAIM_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
             "ON CONFLICT(id) DO UPDATE SET paid = excluded.paid, "
             "paid_ts = excluded.paid_ts, amount = excluded.amount, "
             "insured_at_fault = excluded.insured_at_fault";
    case W::prune_tracks:
      return "DELETE FROM tracks WHERE (unit, ts) IN "
             "(SELECT unit, ts FROM tracks WHERE ts < ?1 ORDER BY ts LIMIT ?2)";
    case W::prune_unit_events:
      return "DELETE FROM unit_events WHERE id IN "
             "(SELECT id FROM unit_events WHERE ts < ?1 ORDER BY ts LIMIT ?2)";
    case W::insert_sighting:
    case W::upsert_hazard:
    case W::insert_hazard_event:
    case W::upsert_incident_signals:
    case W::insert_incident_plate:
    case W::prune_sightings:
      return station_write_sql(w);
    case W::count_:
      break;
  }
  return "";
}

const char* read_sql(R r) {
  switch (r) {
    case R::units:
      return "SELECT " UNIT_COLS " FROM units ORDER BY id";
    case R::last_positions:
      // Each unit's newest track point: one index probe per unit on tracks(unit, ts).
      return "SELECT t.unit, t.ts, t.lat, t.lon FROM units u JOIN tracks t ON t.unit = u.id "
             "AND t.ts = (SELECT max(ts) FROM tracks WHERE unit = u.id)";
    case R::open_incidents:
      return "SELECT " INCIDENT_COLS " FROM incidents WHERE " OPEN_STATE " ORDER BY seq";
    case R::open_assignments:
      return "SELECT " A_ASSIGNMENT_COLS " FROM assignments a JOIN incidents i ON i.id = a.incident "
             "WHERE i." OPEN_STATE " ORDER BY a.seq, a.id";
    case R::open_timeline:
      return "SELECT " T_TIMELINE_COLS " FROM timeline t JOIN incidents i ON i.id = t.incident "
             "WHERE i." OPEN_STATE " ORDER BY t.ts, t.id";
    case R::undelivered_pages:
      return "SELECT " PAGE_COLS " FROM pages WHERE delivered = 0 ORDER BY seq";
    case R::report_ids:
      return "SELECT source, report_id, id FROM incidents ORDER BY seq";
    case R::max_seqs:
      return "SELECT (SELECT max(seq) FROM incidents), (SELECT max(seq) FROM assignments), "
             "(SELECT max(seq) FROM pages), (SELECT max(seq) FROM claims)";
    case R::live_claims:
      return "SELECT " C_CLAIM_COLS " FROM claims c JOIN incidents i ON i.id = c.incident "
             "WHERE c.paid = 0 OR i." OPEN_STATE " ORDER BY c.seq";
    // Service levels from what is on disk, one sample (milliseconds) per event, as the
    // engine counts them live (engine.hpp, ServiceLevels): the first assignment, the first
    // unit at the scene itself, the liability decision, each claim paid, and the air rescue
    // stages from the helicopter's call (the first line of each step).
    case R::service_samples:
      return "SELECT i.district, i.severity, 'to_assign', "
             "(SELECT min(a.assigned_ts) FROM assignments a WHERE a.incident = i.id) - i.received_ts "
             "FROM incidents i WHERE EXISTS (SELECT 1 FROM assignments a WHERE a.incident = i.id) "
             "UNION ALL "
             "SELECT i.district, i.severity, 'to_scene', min(a.arrived_ts) - i.received_ts "
             "FROM incidents i JOIN assignments a ON a.incident = i.id "
             "WHERE a.task = 'scene' AND a.arrived_ts IS NOT NULL "
             "GROUP BY i.id, i.district, i.severity, i.received_ts "
             "UNION ALL "
             "SELECT district, severity, 'to_liability', liability_ts - reported_ts "
             "FROM incidents WHERE liability_ts IS NOT NULL "
             "UNION ALL "
             "SELECT i.district, i.severity, 'to_claim_paid', c.paid_ts - i.reported_ts "
             "FROM claims c JOIN incidents i ON i.id = c.incident WHERE c.paid_ts IS NOT NULL "
             "UNION ALL "
             "SELECT i.district, i.severity, s.event, s.ts - h.ts FROM "
             "(SELECT incident, min(ts) AS ts FROM timeline WHERE event = 'heli_called' GROUP BY incident) h "
             "JOIN (SELECT incident, event, min(ts) AS ts FROM timeline "
             "WHERE event IN ('airborne', 'landed', 'transferred') GROUP BY incident, event) s "
             "ON s.incident = h.incident JOIN incidents i ON i.id = h.incident";
    case R::incident:
      return "SELECT " INCIDENT_COLS " FROM incidents WHERE id = ?1";
    case R::assignments_of:
      return "SELECT " ASSIGNMENT_COLS " FROM assignments WHERE incident = ?1 ORDER BY seq, id";
    case R::timeline_of:
      return "SELECT " TIMELINE_COLS " FROM timeline WHERE incident = ?1 ORDER BY ts, id";
    // Pages, newest first. The key is (seq, id): seq is unique for everything the engine
    // wrote, but rows migrated from version 1 whose ids end in no number share seq 0;
    // with id as the tie-break no page boundary can skip or repeat one of them.
    // `seq <= ?1` keeps the range on the seq index; the rest is the exact boundary.
    case R::newest:
      return "SELECT " INCIDENT_COLS " FROM incidents WHERE seq <= ?1 AND "
             "(seq < ?1 OR id < ?2) ORDER BY seq DESC, id DESC LIMIT ?3";
    case R::newest_open:
      return "SELECT " INCIDENT_COLS " FROM incidents WHERE " OPEN_STATE
             " AND seq <= ?1 AND (seq < ?1 OR id < ?2) ORDER BY seq DESC, id DESC LIMIT ?3";
    // The same page with the history filters (GET /api/incidents): ?4 open only (0/1),
    // ?5/?6 reported_ts from/to, ?7 district, ?8 severity, ?9 state, ?10 a plate (upper
    // case, no spaces, LIKE's % _ \ escaped), each NULL when unset. Plain SQL that SQLite
    // and PostgreSQL both read: the CASTs type the parameters for PostgreSQL; the plate is
    // looked for as `"plate":"<it>"` in the vehicles' JSON text (spaces dropped, upper case).
    case R::newest_filtered:
      return "SELECT " INCIDENT_COLS " FROM incidents WHERE seq <= ?1 AND (seq < ?1 OR id < ?2) "
             "AND (?4 = 0 OR " OPEN_STATE ") "
             "AND (CAST(?5 AS BIGINT) IS NULL OR reported_ts >= ?5) "
             "AND (CAST(?6 AS BIGINT) IS NULL OR reported_ts <= ?6) "
             "AND (CAST(?7 AS TEXT) IS NULL OR district = ?7) "
             "AND (CAST(?8 AS TEXT) IS NULL OR severity = ?8) "
             "AND (CAST(?9 AS TEXT) IS NULL OR state = ?9) "
             "AND (CAST(?10 AS TEXT) IS NULL OR upper(replace(vehicles, ' ', '')) "
             "LIKE '%\"PLATE\":\"' || ?10 || '\"%' ESCAPE '\\') "
             "ORDER BY seq DESC, id DESC LIMIT ?3";
    case R::seq_of:
      return "SELECT seq FROM incidents WHERE id = ?1";
    case R::track:
      return "SELECT " TRACK_COLS " FROM tracks WHERE unit = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts";
    case R::unit_events:
      return "SELECT " UNIT_EVENT_COLS " FROM unit_events WHERE unit = ?1 ORDER BY ts, id";
    case R::recent_sightings:
    case R::recent_plates:
    case R::open_hazards:
    case R::hazard_keys:
    case R::max_hazard_seq:
    case R::open_signals:
    case R::signals_of:
    case R::hazards_all:
    case R::hazards_open:
    case R::hazard_events:
    case R::vehicle_sightings:
    case R::vehicle_incidents:
      return station_read_sql(r);
    case R::count_:
      break;
  }
  return "";
}

}  // namespace dispatch::data::rows
