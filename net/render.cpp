// The wire protocol's rendering (wire-contract.md sections 5 and 6): engine events and
// objects to JSON text, straight into one string with JsonWriter (no DOM). Parsing is in
// protocol.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "net/json_writer.hpp"
#include "net/protocol.hpp"
#include "net/render_stations.hpp"

namespace dispatch::net {

using namespace engine;

std::string render_error(const ev::Error& e) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "error").field("code", to_string(e.code)).field("message", e.message);
  w.key("ref").string_or_null(e.ref);
  w.end_object();
  return s;
}

std::string render_accepted(const ev::Accepted& a) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "accepted").field("id", a.report_id).field("incident", a.incident).end_object();
  return s;
}

std::string render_assign(const ev::Assign& a) {
  std::string s;
  JsonWriter w(s);
  w.begin_object()
      .field("type", "assign")
      .field("assignment", a.assignment)
      .field("unit", a.unit)
      .field("incident", a.incident)
      .field("task", to_string(a.task));
  w.key("lat").coord(a.lat);
  w.key("lon").coord(a.lon);
  w.field("severity", to_string(a.severity)).field("eta_s", a.eta_s).field("ack_within_s", a.ack_within_s);
  w.end_object();
  return s;
}

std::string render_cancel(const ev::Cancel& c) {
  std::string s;
  JsonWriter w(s);
  w.begin_object()
      .field("type", "cancel")
      .field("assignment", c.assignment)
      .field("unit", c.unit)
      .field("reason", c.reason)
      .end_object();
  return s;
}

namespace {
void claim_fields(JsonWriter& w, const rec::Claim& c) {
  w.field("claim", c.id).field("incident", c.incident).field("insurer", c.insurer);
  w.key("plates").begin_array();
  for (const auto& p : c.plates) w.value(p);
  w.end_array();
  w.field("insured_at_fault", c.insured_at_fault).field("state", c.paid ? "paid" : "open");
  w.field("created_ts", c.created_ts).field("deadline_ts", c.deadline_ts);
  w.key("paid_ts").time_or_null(c.paid_ts);
  w.field("amount", c.amount);
}
}  // namespace

std::string render_claim(const rec::Claim& c, const rec::Incident* inc, const std::vector<Signal>* signals) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "claim");
  claim_fields(w, c);
  if (inc) {
    w.key("at_fault").string_or_null(inc->at_fault);
    w.key("lat").coord(inc->lat);
    w.key("lon").coord(inc->lon);
    w.field("reported_ts", inc->reported_ts);
    w.key("liability_ts").time_or_null(inc->liability_ts);
  }
  if (signals) signals_field(w, *signals);
  w.end_object();
  return s;
}

std::string render_alert(const ev::Alert& a) {
  std::string s;
  JsonWriter w(s);
  w.begin_object()
      .field("type", "alert")
      .field("alert", a.alert)
      .field("incident", a.incident)
      .field("clock", a.clock)
      .field("due_ts", a.due_ts)
      .field("ts", a.ts)
      .end_object();
  return s;
}

std::string render_page(const ev::Page& p) {
  std::string s;
  JsonWriter w(s);
  w.begin_object()
      .field("type", "page")
      .field("page", p.page)
      .field("unit", p.unit)
      .field("capcode", p.capcode)
      .field("assignment", p.assignment)
      .field("text", p.text)
      .end_object();
  return s;
}

namespace {

void unit_view_fields(JsonWriter& w, const UnitView& u) {
  w.field("id", u.id).field("kind", to_string(u.kind)).field("status", u.status);
  if (u.has_pos) {
    w.key("lat").coord(u.lat);
    w.key("lon").coord(u.lon);
    w.field("ts", u.ts);
  } else {
    w.key("lat").null();
    w.key("lon").null();
    w.key("ts").null();
  }
  w.field("callsign", u.callsign);
  if (u.speed_kmh >= 0) w.field("speed_kmh", static_cast<double>(u.speed_kmh));
  if (u.heading >= 0) w.field("heading", static_cast<double>(u.heading));
  w.key("assignment").string_or_null(u.assignment);
  w.key("incident").string_or_null(u.incident);
}

void unit_fields(JsonWriter& w, const Engine& e, const Unit& u, Millis now) {
  unit_view_fields(w, unit_view(e, u, now));
}

void assignment_fields(JsonWriter& w, const rec::Assignment& a) {
  w.begin_object()
      .field("assignment", a.id)
      .field("unit", a.unit)
      .field("task", to_string(a.task))
      .field("state", to_string(a.state));
  w.key("assigned_ts").time_or_null(a.assigned_ts);
  w.key("acked_ts").time_or_null(a.acked_ts);
  w.key("arrived_ts").time_or_null(a.arrived_ts);
  w.key("cleared_ts").time_or_null(a.cleared_ts);
  w.field("eta_s", a.eta_s);
  w.key("lat").coord(a.lat);
  w.key("lon").coord(a.lon);
  w.key("ended_ts").time_or_null(a.ended_ts);
  w.key("reason").string_or_null(a.end_reason);
  // The candidates weighed (protocol.md "Candidates"): kept as JSON text by the engine.
  w.key("candidates").raw(a.candidates.empty() ? std::string_view("[]") : std::string_view(a.candidates));
  w.end_object();
}

void incident_fields(JsonWriter& w, const rec::Incident& r, Millis remote_liability_ms) {
  w.field("id", r.id)
      .field("report_id", r.report_id)
      .field("state", to_string(r.state))
      .field("severity", to_string(r.severity));
  w.key("lat").coord(r.lat);
  w.key("lon").coord(r.lon);
  w.key("district").string_or_null(r.district);
  w.field("reported_ts", r.reported_ts).field("received_ts", r.received_ts);
  w.field("injured", r.injured).field("drivable", r.drivable).field("parties_agree", r.parties_agree);
  w.key("vehicles").begin_array();
  for (const auto& v : r.vehicles) {
    w.begin_object().field("plate", v.plate);
    w.key("insurer").string_or_null(v.insurer);
    w.end_object();
  }
  w.end_array();
  w.field("note", r.note);
  w.key("at_fault").string_or_null(r.at_fault);
  w.key("hospital").string_or_null(r.hospital);
  w.key("closed_ts").time_or_null(r.closed_ts);
  if (r.state == IncidentState::remote) w.field("remote_deadline_ts", r.reported_ts + remote_liability_ms);
}

void timeline_fields(JsonWriter& w, const rec::Timeline& t) {
  w.begin_object().field("ts", t.ts).field("event", t.event).field("detail", t.detail);
  w.key("by").value(t.actor_role.empty() ? t.actor_name : t.actor_role + ":" + t.actor_name);
  w.end_object();
}

void place_or_null(JsonWriter& w, std::string_view key, const std::optional<PlaceRef>& p) {
  w.key(key);
  if (!p) {
    w.null();
    return;
  }
  w.begin_object().field("id", p->id).field("name", p->name);
  w.key("lat").coord(p->pos.lat);
  w.key("lon").coord(p->pos.lon);
  w.end_object();
}

std::string actor_text(const Actor& a) { return a.role.empty() ? a.name : a.role + ":" + a.name; }

// "rescue": null, or the air-ground rescue: where the helicopter goes, the landing zone,
// the hospital, the chain's steps so far.
void rescue_fields(JsonWriter& w, const Incident& inc) {
  w.key("rescue");
  if (!inc.rescue) {
    w.null();
    return;
  }
  const Rescue& r = *inc.rescue;
  w.begin_object().field("target", r.target == Task::landing_zone ? "landing_zone" : "scene");
  place_or_null(w, "landing_zone", r.landing_zone);
  place_or_null(w, "hospital", r.hospital);
  w.key("steps").begin_array();
  for (const auto& st : r.steps)
    w.begin_object().field("step", st.step).field("ts", st.ts).field("actor", actor_text(st.actor)).end_object();
  w.end_array();
  w.end_object();
}

// "clocks": each clock the incident runs, its due time, when met, and whether it ran out.
void clock_fields(JsonWriter& w, const Incident& inc) {
  w.key("clocks").begin_array();
  for (const auto& c : inc.clocks) {
    w.begin_object().field("clock", c.name).field("start_ts", c.start_ts).field("due_ts", c.due_ts);
    w.key("done_ts").time_or_null(c.done_ts);
    w.field("overdue", c.overdue);
    w.end_object();
  }
  w.end_array();
}

void incident_object(JsonWriter& w, const Engine& e, const Incident& inc, bool with_type) {
  w.begin_object();
  if (with_type) w.field("type", "incident");
  incident_fields(w, inc.rec, e.config().remote_liability_ms);
  rescue_fields(w, inc);
  clock_fields(w, inc);
  w.key("claims").begin_array();
  for (const auto& id : inc.claims)
    if (const rec::Claim* c = e.claim(id)) {
      w.begin_object();
      claim_fields(w, *c);
      w.end_object();
    }
  w.end_array();
  w.key("assignments").begin_array();
  for (const auto& a : inc.assignments) assignment_fields(w, a->rec);
  w.end_array();
  w.key("timeline").begin_array();
  for (const auto& t : inc.timeline) timeline_fields(w, t);
  w.end_array();
  signals_field(w, inc.signals);
  w.end_object();
}

}  // namespace

UnitView unit_view(const Engine& e, const Unit& u, Millis now) {
  UnitView v;
  v.slot = static_cast<std::uint32_t>(&u - e.units().data());
  v.id = u.id();
  v.callsign = u.callsign();
  v.kind = u.kind;
  v.status = e.wire_status(u, now);
  v.has_pos = u.has_pos;
  v.lat = u.pos.lat;
  v.lon = u.pos.lon;
  v.ts = u.pos_ts;
  v.speed_kmh = u.speed_kmh;
  v.heading = u.heading;
  if (u.active) {
    v.assignment = u.active->rec.id;
    v.incident = u.active->rec.incident;
  }
  return v;
}

void append_unit_view(std::string& out, const UnitView& u) {
  JsonWriter w(out);
  w.begin_object().field("type", "unit");
  unit_view_fields(w, u);
  w.end_object();
}

std::string render_unit_view(const UnitView& u) {
  std::string s;
  s.reserve(256);
  append_unit_view(s, u);
  return s;
}

std::string render_unit(const Engine& e, const Unit& u, Millis now) { return render_unit_view(unit_view(e, u, now)); }

std::string render_incident(const Engine& e, const Incident& inc, Millis) {
  std::string s;
  JsonWriter w(s);
  incident_object(w, e, inc, true);
  return s;
}

std::string render_units(const Engine& e, Millis now) {
  std::string s;
  s.reserve(e.units().size() * 200 + 2);
  JsonWriter w(s);
  w.begin_array();
  for (const auto& u : e.units()) {
    w.begin_object();
    unit_fields(w, e, u, now);
    w.end_object();
  }
  w.end_array();
  return s;
}

std::string render_console_config(const ConsoleConfig& c) {
  std::string s;
  JsonWriter w(s);
  w.begin_object();
  w.key("tiles").string_or_null(c.tiles);
  w.key("tiles_attribution").string_or_null(c.tiles_attribution);
  w.field("lang_default", c.lang_default);
#ifdef DISPATCH_VERSION
  w.field("version", DISPATCH_VERSION);
#endif
  w.end_object();
  return s;
}

std::string render_snapshot(const Engine& e, Millis now, std::string_view config_json) {
  std::string s;
  s.reserve(e.units().size() * 200 + 1024);
  JsonWriter w(s);
  w.begin_object().field("type", "snapshot").field("ts", now);
  // Every policy number the console shows, from the server's one config.
  const Config& c = e.config();
  auto secs = [](Millis ms) { return static_cast<double>(ms) / 1000.0; };
  w.key("config").begin_object();
  w.key("ack_within_s").value(secs(c.ack_within_ms));
  w.key("stale_after_s").value(secs(c.stale_after_ms));
  w.key("remote_liability_s").value(secs(c.remote_liability_ms));
  w.key("claim_paid_within_s").value(secs(c.claim_paid_within_ms));
  w.key("lz_max_km").value(c.lz_max_km);
  w.key("airborne_s").value(secs(c.airborne_within_ms));
  w.key("landed_s").value(secs(c.landed_within_ms));
  w.key("hospital_s").value(secs(c.hospital_within_ms));
  // The server's own settings for the console (--tiles, the language, the version): the
  // members of render_console_config()'s object, in the same "config".
  if (config_json.size() > 2) w.raw(config_json.substr(1, config_json.size() - 2));
  w.end_object();
  w.key("units").begin_array();
  for (const auto& u : e.units()) {
    w.begin_object();
    unit_fields(w, e, u, now);
    w.end_object();
  }
  w.end_array();
  w.key("incidents").begin_array();
  for (const Incident* inc : e.open_incidents()) incident_object(w, e, *inc, false);
  w.end_array();
  open_hazards_field(w, e);
  w.end_object();
  return s;
}

std::string render_service_levels(const Engine& e) {
  std::string s;
  JsonWriter w(s);
  auto level = [&](std::string_view name, const ServiceLevel& l) {
    w.key(name).begin_object().field("count", l.count);
    w.key("mean_s").value(l.count ? l.sum_s / static_cast<double>(l.count) : 0.0);
    w.key("max_s").value(l.max_s);
    w.end_object();
  };
  w.begin_object().key("service_levels").begin_array();
  for (const auto& [key, sl] : e.service_levels()) {
    const auto bar = key.find('|');
    w.begin_object();
    w.key("district").string_or_null(std::string_view(key).substr(0, bar));
    w.field("severity", std::string_view(key).substr(bar + 1));
    level("to_assign", sl.to_assign);
    level("to_scene", sl.to_scene);
    level("to_liability", sl.to_liability);
    level("to_claim_paid", sl.to_claim_paid);
    level("call_to_airborne", sl.call_to_airborne);
    level("call_to_landed", sl.call_to_landed);
    level("call_to_hospital", sl.call_to_hospital);
    w.end_object();
  }
  w.end_array().end_object();
  return s;
}

std::string render_incident_record(const rec::Incident& inc,
                                   const std::vector<rec::Assignment>& assignments,
                                   const std::vector<rec::Timeline>& timeline, Millis remote_liability_ms,
                                   const std::vector<Signal>& signals) {
  std::string s;
  JsonWriter w(s);
  w.begin_object();
  incident_fields(w, inc, remote_liability_ms);
  w.key("assignments").begin_array();
  for (const auto& a : assignments) assignment_fields(w, a);
  w.end_array();
  w.key("timeline").begin_array();
  for (const auto& t : timeline) timeline_fields(w, t);
  w.end_array();
  signals_field(w, signals);
  w.end_object();
  return s;
}

std::string iso8601_cst(Millis ms) {
  if (ms == 0) return {};
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds(ms + 8 * 3600 * 1000)};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+08:00", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

std::string csv_file_stamp(Millis ms) {
  std::string s = iso8601_cst(ms).substr(0, 19);  // 2026-11-29T09:47:14
  std::erase(s, '-');
  std::erase(s, ':');
  std::replace(s.begin(), s.end(), 'T', '-');
  return s;
}

namespace {

void csv_field(std::string& out, std::string_view v, bool text = true) {
  // A spreadsheet runs a cell that starts with one of these as a formula.
  const bool formula = text && !v.empty() && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' ||
                                              v[0] == '\t' || v[0] == '\r');
  const bool quote = formula || v.find_first_of(",\"\r\n") != std::string_view::npos;
  if (!quote) {
    out += v;
    return;
  }
  out += '"';
  if (formula) out += '\'';
  for (const char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

std::string csv_coord(double v) {
  std::string s;
  JsonWriter w(s);
  w.coord(v);
  return s;
}

}  // namespace

std::string render_incidents_csv_header() {
  return "id,report_id,state,severity,lat,lon,district,reported_at,reported_ts,plates,units,closed_at,closed_ts,"
         "note\r\n";
}

void append_incident_csv(std::string& out, const rec::Incident& r, const std::vector<rec::Assignment>& assignments) {
  csv_field(out, r.id);
  out += ',';
  csv_field(out, r.report_id);
  out += ',';
  out += to_string(r.state);
  out += ',';
  out += to_string(r.severity);
  out += ',';
  out += csv_coord(r.lat);
  out += ',';
  out += csv_coord(r.lon);
  out += ',';
  csv_field(out, r.district);
  out += ',';
  out += iso8601_cst(r.reported_ts);
  out += ',';
  out += std::to_string(r.reported_ts);
  out += ',';
  std::string plates;
  for (const auto& v : r.vehicles) {
    if (!plates.empty()) plates += "; ";
    plates += v.plate;
  }
  csv_field(out, plates);
  out += ',';
  std::string units;
  std::vector<std::string_view> seen;
  for (const auto& a : assignments) {
    if (std::find(seen.begin(), seen.end(), a.unit) != seen.end()) continue;
    seen.push_back(a.unit);
    if (!units.empty()) units += "; ";
    units += a.unit;
  }
  csv_field(out, units);
  out += ',';
  out += iso8601_cst(r.closed_ts);
  out += ',';
  if (r.closed_ts) out += std::to_string(r.closed_ts);
  out += ',';
  csv_field(out, r.note);
  out += "\r\n";
}

}  // namespace dispatch::net
