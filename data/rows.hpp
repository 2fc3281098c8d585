// What both backends share, private to data/: the SQL of every write and read (written
// once, with ?N parameters; the PostgreSQL backend turns them into $N), the records'
// columns in order, and the readers that turn a row into a record. A reader takes any
// row type with is_null/int64/real/text(col), so SQLite's cursor and a libpq result row
// go through the same code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "engine/records.hpp"

namespace dispatch::data::rows {

namespace rec = engine::rec;

// Column lists: the readers below take the columns in exactly this order.
#define UNIT_COLS "id, kind, callsign, capcode, base_lat, base_lon, status, updated_ts"
#define INCIDENT_COLS                                                                      \
  "id, seq, report_id, state, severity, lat, lon, district, reported_ts, received_ts, " \
  "injured, drivable, parties_agree, vehicles, note, source, at_fault, liability_ts, "  \
  "closed_ts, hospital"
#define ASSIGNMENT_COLS                                                                  \
  "id, seq, incident, unit, task, state, lat, lon, eta_s, assigned_ts, acked_ts, "      \
  "arrived_ts, cleared_ts, ended_ts, end_reason, candidates"
#define A_ASSIGNMENT_COLS                                                                  \
  "a.id, a.seq, a.incident, a.unit, a.task, a.state, a.lat, a.lon, a.eta_s, "             \
  "a.assigned_ts, a.acked_ts, a.arrived_ts, a.cleared_ts, a.ended_ts, a.end_reason, "     \
  "a.candidates"
#define TIMELINE_COLS "incident, ts, event, detail, actor_role, actor_name"
#define T_TIMELINE_COLS "t.incident, t.ts, t.event, t.detail, t.actor_role, t.actor_name"
#define UNIT_EVENT_COLS "unit, ts, event, detail, actor_role, actor_name"
#define TRACK_COLS "unit, ts, lat, lon"
#define PAGE_COLS                                                                          \
  "id, seq, unit, capcode, assignment, text, delivered, created_ts, delivered_ts"
#define CLAIM_COLS                                                                         \
  "id, seq, incident, insurer, plates, insured_at_fault, paid, created_ts, deadline_ts, "  \
  "paid_ts, amount"
#define C_CLAIM_COLS                                                                       \
  "c.id, c.seq, c.incident, c.insurer, c.plates, c.insured_at_fault, c.paid, c.created_ts, " \
  "c.deadline_ts, c.paid_ts, c.amount"
#define OPEN_STATE "state NOT IN ('closed', 'cancelled')"

// The writes, one prepared statement each on either backend.
enum class W {
  upsert_unit,
  insert_unit_if_absent,
  upsert_incident,
  upsert_assignment,
  insert_timeline,
  insert_unit_event,
  insert_track,
  upsert_page,
  upsert_claim,
  prune_tracks,
  prune_unit_events,
  // rural stations (stations_store.cpp)
  insert_sighting,
  upsert_hazard,
  insert_hazard_event,
  upsert_incident_signals,
  insert_incident_plate,
  prune_sightings,
  count_
};
const char* write_sql(W w);

// The reads.
enum class R {
  units,
  last_positions,
  open_incidents,
  open_assignments,
  open_timeline,
  undelivered_pages,
  report_ids,
  max_seqs,
  live_claims,
  service_samples,
  incident,
  assignments_of,
  timeline_of,
  newest,
  newest_open,
  newest_filtered,
  seq_of,
  track,
  unit_events,
  // rural stations (stations_store.cpp)
  recent_sightings,
  recent_plates,
  open_hazards,
  hazard_keys,
  max_hazard_seq,
  open_signals,
  signals_of,
  hazards_all,
  hazards_open,
  hazard_events,
  vehicle_sightings,
  vehicle_incidents,
  count_
};
const char* read_sql(R r);
// The rural stations' statements (stations_store.cpp).
const char* station_write_sql(W w);
const char* station_read_sql(R r);
std::string signals_json(const std::vector<engine::Signal>& signals);
std::vector<engine::Signal> parse_signals(const std::string& text);
std::string plate_key(const std::string& plate);  // engine::SignalBook::normalize_plate

// 0 means "not yet" in the records and NULL in the database.
inline std::optional<std::int64_t> ts_or_null(engine::Millis t) {
  return t == 0 ? std::nullopt : std::optional<std::int64_t>(t);
}

std::string vehicles_json(const std::vector<engine::Vehicle>& vehicles);
std::vector<engine::Vehicle> parse_vehicles(const std::string& text);
std::string strings_json(const std::vector<std::string>& v);
std::vector<std::string> parse_strings(const std::string& text);

// Calls run(W, parameters...) with the statement and parameters that store `w`;
// returns what run returns.
template <class Run>
auto bind_write(const engine::Write& w, bool insert_only, Run&& run) {
  return std::visit(
      [&](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, rec::Unit>) {
          return run(insert_only ? W::insert_unit_if_absent : W::upsert_unit, r.id,
                     std::string(engine::to_string(r.kind)), r.callsign, r.capcode,
                     r.base ? std::optional<double>(r.base->lat) : std::nullopt,
                     r.base ? std::optional<double>(r.base->lon) : std::nullopt,
                     std::string(engine::to_string(r.status)), ts_or_null(r.updated_ts));
        } else if constexpr (std::is_same_v<T, rec::Incident>) {
          return run(W::upsert_incident, r.id, r.seq, r.report_id, std::string(engine::to_string(r.state)),
                     std::string(engine::to_string(r.severity)), r.lat, r.lon, r.district, r.reported_ts,
                     r.received_ts, r.injured, r.drivable, r.parties_agree, vehicles_json(r.vehicles), r.note,
                     r.source, r.at_fault, ts_or_null(r.liability_ts), ts_or_null(r.closed_ts), r.hospital);
        } else if constexpr (std::is_same_v<T, rec::Assignment>) {
          return run(W::upsert_assignment, r.id, r.seq, r.incident, r.unit, std::string(engine::to_string(r.task)),
                     std::string(engine::to_string(r.state)), r.lat, r.lon, r.eta_s, r.assigned_ts,
                     ts_or_null(r.acked_ts), ts_or_null(r.arrived_ts), ts_or_null(r.cleared_ts),
                     ts_or_null(r.ended_ts), r.end_reason, r.candidates);
        } else if constexpr (std::is_same_v<T, rec::Timeline>) {
          return run(W::insert_timeline, r.incident, r.ts, r.event, r.detail, r.actor_role, r.actor_name);
        } else if constexpr (std::is_same_v<T, rec::UnitEvent>) {
          return run(W::insert_unit_event, r.unit, r.ts, r.event, r.detail, r.actor_role, r.actor_name);
        } else if constexpr (std::is_same_v<T, rec::TrackPoint>) {
          return run(W::insert_track, r.unit, r.ts, r.lat, r.lon);
        } else if constexpr (std::is_same_v<T, rec::Page>) {
          return run(W::upsert_page, r.id, r.seq, r.unit, r.capcode, r.assignment, r.text, r.delivered,
                     r.created_ts, ts_or_null(r.delivered_ts));
        } else if constexpr (std::is_same_v<T, rec::Claim>) {
          return run(W::upsert_claim, r.id, r.seq, r.incident, r.insurer, strings_json(r.plates),
                     r.insured_at_fault, r.paid, r.created_ts, r.deadline_ts, ts_or_null(r.paid_ts), r.amount);
        } else if constexpr (std::is_same_v<T, rec::Sighting>) {  // rural stations
          return run(W::insert_sighting, r.station, r.plate, plate_key(r.plate), r.ts, r.lat, r.lon, r.direction,
                     r.note, r.received_ts);
        } else if constexpr (std::is_same_v<T, rec::Hazard>) {
          return run(W::upsert_hazard, r.id, r.seq, r.report_id, r.source, r.station, r.lat, r.lon, r.ts, r.kind,
                     r.note, std::string(r.cleared ? "cleared" : "open"), r.received_ts, ts_or_null(r.cleared_ts),
                     r.cleared_by);
        } else if constexpr (std::is_same_v<T, rec::HazardEvent>) {
          return run(W::insert_hazard_event, r.hazard, r.ts, r.event, r.detail, r.actor_role, r.actor_name);
        } else if constexpr (std::is_same_v<T, rec::IncidentSignals>) {
          return run(W::upsert_incident_signals, r.incident, r.computed_ts, r.stage, signals_json(r.signals));
        } else {
          static_assert(std::is_same_v<T, rec::IncidentPlate>);
          return run(W::insert_incident_plate, plate_key(r.plate), r.incident, r.plate, r.reported_ts);
        }
      },
      w);
}

template <class Row>
rec::Unit read_unit(const Row& q) {
  rec::Unit u;
  u.id = q.text(0);
  u.kind = engine::parse_unit_kind(q.text(1)).value_or(engine::UnitKind::moto);
  u.callsign = q.text(2);
  u.capcode = q.text(3);
  if (!q.is_null(4) && !q.is_null(5)) u.base = geo::LatLon{q.real(4), q.real(5)};
  u.status = engine::parse_unit_status(q.text(6)).value_or(engine::UnitStatus::available);
  u.updated_ts = q.int64(7);
  return u;
}

template <class Row>
rec::Incident read_incident(const Row& q) {
  rec::Incident i;
  i.id = q.text(0);
  i.seq = static_cast<std::uint64_t>(q.int64(1));
  i.report_id = q.text(2);
  i.state = engine::parse_incident_state(q.text(3)).value_or(engine::IncidentState::reported);
  i.severity = engine::parse_severity(q.text(4)).value_or(engine::Severity::minor);
  i.lat = q.real(5);
  i.lon = q.real(6);
  i.district = q.text(7);
  i.reported_ts = q.int64(8);
  i.received_ts = q.int64(9);
  i.injured = static_cast<int>(q.int64(10));
  i.drivable = q.int64(11) != 0;
  i.parties_agree = q.int64(12) != 0;
  i.vehicles = parse_vehicles(q.text(13));
  i.note = q.text(14);
  i.source = q.text(15);
  i.at_fault = q.text(16);
  i.liability_ts = q.int64(17);
  i.closed_ts = q.int64(18);
  i.hospital = q.text(19);
  return i;
}

template <class Row>
rec::Claim read_claim(const Row& q) {
  rec::Claim c;
  c.id = q.text(0);
  c.seq = static_cast<std::uint64_t>(q.int64(1));
  c.incident = q.text(2);
  c.insurer = q.text(3);
  c.plates = parse_strings(q.text(4));
  c.insured_at_fault = q.int64(5) != 0;
  c.paid = q.int64(6) != 0;
  c.created_ts = q.int64(7);
  c.deadline_ts = q.int64(8);
  c.paid_ts = q.int64(9);
  c.amount = q.real(10);
  return c;
}

template <class Row>
rec::Assignment read_assignment(const Row& q) {
  rec::Assignment a;
  a.id = q.text(0);
  a.seq = static_cast<std::uint64_t>(q.int64(1));
  a.incident = q.text(2);
  a.unit = q.text(3);
  a.task = engine::parse_task(q.text(4)).value_or(engine::Task::scene);
  a.state = engine::parse_assignment_state(q.text(5)).value_or(engine::AssignmentState::assigned);
  a.lat = q.real(6);
  a.lon = q.real(7);
  a.eta_s = static_cast<int>(q.int64(8));
  a.assigned_ts = q.int64(9);
  a.acked_ts = q.int64(10);
  a.arrived_ts = q.int64(11);
  a.cleared_ts = q.int64(12);
  a.ended_ts = q.int64(13);
  a.end_reason = q.text(14);
  a.candidates = q.text(15);
  return a;
}

template <class Row>
rec::Timeline read_timeline(const Row& q) {
  return rec::Timeline{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)};
}

template <class Row>
rec::UnitEvent read_unit_event(const Row& q) {
  return rec::UnitEvent{q.text(0), q.int64(1), q.text(2), q.text(3), q.text(4), q.text(5)};
}

template <class Row>
rec::TrackPoint read_track_point(const Row& q) {
  return rec::TrackPoint{q.text(0), q.int64(1), q.real(2), q.real(3)};
}

template <class Row>
rec::Page read_page(const Row& q) {
  rec::Page p;
  p.id = q.text(0);
  p.seq = static_cast<std::uint64_t>(q.int64(1));
  p.unit = q.text(2);
  p.capcode = q.text(3);
  p.assignment = q.text(4);
  p.text = q.text(5);
  p.delivered = q.int64(6) != 0;
  p.created_ts = q.int64(7);
  p.delivered_ts = q.int64(8);
  return p;
}

}  // namespace dispatch::data::rows
