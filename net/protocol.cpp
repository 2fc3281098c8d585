#include "net/protocol.hpp"

#include <array>
#include <boost/json.hpp>
#include <cmath>

#include "net/json_writer.hpp"
#include "net/role.hpp"

namespace json = boost::json;

namespace dispatch::net {

using namespace engine;

namespace {

// A note is free text from a person; longer ones are refused rather than sent to every
// console again and again.
constexpr std::size_t max_note_bytes = 4096;

// Message types (the roles that may send each are in role.hpp's table).
constexpr std::array<std::string_view, 15> known_types{
    "position", "status", "ack", "decline", "arrived", "cleared", "report", "assign",
    "cancel", "liability", "close", "delivered", "escalate", "rescue", "claim_paid"};

const std::string_view* find_type(std::string_view t) {
  for (const auto& k : known_types)
    if (k == t) return &k;
  return nullptr;
}

// Reads fields of one message object; remembers the first problem.
class Reader {
 public:
  explicit Reader(const json::object& o) : o_(o) {}

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }

  bool string(std::string_view k, std::string& out, bool required, bool non_empty = true) {
    const json::value* v = o_.if_contains(k);
    if (!v || v->is_null()) return missing(k, required);
    if (!v->is_string()) return fail(k, "must be a string");
    const auto& s = v->get_string();
    if (non_empty && s.empty()) return fail(k, "must not be empty");
    if (s.size() > 256 && k != "note") return fail(k, "is too long");
    if (s.size() > max_note_bytes) return fail(k, "is too long (at most 4096 bytes)");
    out.assign(s.data(), s.size());
    return true;
  }
  bool number(std::string_view k, double& out, bool required, double lo, double hi) {
    const json::value* v = o_.if_contains(k);
    if (!v || v->is_null()) return missing(k, required);
    double d;
    if (v->is_double()) d = v->get_double();
    else if (v->is_int64()) d = static_cast<double>(v->get_int64());
    else if (v->is_uint64()) d = static_cast<double>(v->get_uint64());
    else return fail(k, "must be a number");
    if (!std::isfinite(d) || d < lo || d > hi) return fail(k, "is out of range");
    out = d;
    return true;
  }
  bool opt_number(std::string_view k, std::optional<double>& out, double lo, double hi) {
    double d;
    const json::value* v = o_.if_contains(k);
    if (!v || v->is_null()) return true;
    if (!number(k, d, true, lo, hi)) return false;
    out = d;
    return true;
  }
  bool integer(std::string_view k, std::int64_t& out, bool required, std::int64_t lo,
               std::int64_t hi) {
    const json::value* v = o_.if_contains(k);
    if (!v || v->is_null()) return missing(k, required);
    std::int64_t i;
    if (v->is_int64()) i = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
      i = static_cast<std::int64_t>(v->get_uint64());
    else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() &&
             std::abs(v->get_double()) < 9e15)
      i = static_cast<std::int64_t>(v->get_double());
    else return fail(k, "must be an integer");
    if (i < lo || i > hi) return fail(k, "is out of range");
    out = i;
    return true;
  }
  bool boolean(std::string_view k, bool& out) {
    const json::value* v = o_.if_contains(k);
    if (!v || v->is_null()) return true;
    if (!v->is_bool()) return fail(k, "must be true or false");
    out = v->get_bool();
    return true;
  }
  const json::value* raw(std::string_view k) const { return o_.if_contains(k); }
  bool fail(std::string_view k, std::string_view why) {
    if (problem_.empty()) problem_ = std::string(k) + " " + std::string(why);
    return false;
  }

 private:
  bool missing(std::string_view k, bool required) {
    if (required) return fail(k, "is required");
    return true;
  }
  const json::object& o_;
  std::string problem_;
};

constexpr std::int64_t max_ts = 32503680000000;  // year 3000

bool read_report(Reader& r, cmd::Report& rep) {
  std::string sev;
  std::int64_t ts = 0, injured = 0;
  r.string("id", rep.id, true);
  r.number("lat", rep.lat, true, -90, 90);
  r.number("lon", rep.lon, true, -180, 180);
  if (r.string("severity", sev, true) && r.ok()) {
    auto s = parse_severity(sev);
    if (!s) r.fail("severity", "must be minor, injury or critical");
    else rep.severity = *s;
  }
  if (r.raw("ts") && !r.raw("ts")->is_null()) {
    if (r.integer("ts", ts, true, 0, max_ts)) rep.ts = ts;
  }
  if (r.integer("injured", injured, false, 0, 10000)) rep.injured = static_cast<int>(injured);
  r.boolean("drivable", rep.drivable);
  r.boolean("parties_agree", rep.parties_agree);
  r.string("note", rep.note, false, false);
  if (const json::value* v = r.raw("vehicles"); v && !v->is_null()) {
    if (!v->is_array()) return r.fail("vehicles", "must be an array");
    if (v->get_array().size() > 32) return r.fail("vehicles", "has too many entries");
    for (const auto& e : v->get_array()) {
      if (!e.is_object()) return r.fail("vehicles", "entries must be objects");
      Reader vr(e.get_object());
      Vehicle veh;
      vr.string("plate", veh.plate, true);
      vr.string("insurer", veh.insurer, false, false);
      if (!vr.ok()) return r.fail("vehicles", vr.problem());
      rep.vehicles.push_back(std::move(veh));
    }
  }
  return r.ok();
}

std::string ref_of(const json::object& o) {
  for (std::string_view k : {"id", "unit", "assignment", "incident", "page", "claim"})
    if (const json::value* v = o.if_contains(k); v && v->is_string())
      return std::string(JsonWriter::utf8_prefix(std::string_view(v->get_string()), 256));
  return {};
}

void parse_message(const json::value& v, std::optional<Role> role, ParsedFrame& out) {
  if (!v.is_object()) {
    out.errors.push_back({ErrorCode::bad_message, "a message must be a JSON object", {}});
    return;
  }
  const auto& o = v.get_object();
  const json::value* t = o.if_contains("type");
  if (!t || !t->is_string()) {
    out.errors.push_back({ErrorCode::bad_message, "type is required", ref_of(o)});
    return;
  }
  const std::string_view type(t->get_string().data(), t->get_string().size());
  const std::string_view* known = find_type(type);
  if (!known) {
    out.errors.push_back({ErrorCode::unknown_type,
                          "unknown message type '" + std::string(JsonWriter::utf8_prefix(type, 64)) + "'",
                          ref_of(o)});
    return;
  }
  out.types.push_back(*known);
  if (role && !may_send(*role, type)) {
    out.errors.push_back({ErrorCode::forbidden,
                          std::string(type) + " may not be sent on a " +
                              std::string(to_string(*role)) + " connection",
                          ref_of(o)});
    return;
  }
  Reader r(o);
  auto bad = [&] {
    out.errors.push_back({ErrorCode::bad_message, r.problem(), ref_of(o)});
  };
  if (type == "position") {
    cmd::Position p;
    r.string("unit", p.unit, true);
    r.number("lat", p.lat, true, -90, 90);
    r.number("lon", p.lon, true, -180, 180);
    r.integer("ts", p.ts, true, 0, max_ts);
    r.opt_number("speed_kmh", p.speed_kmh, 0, 2000);
    r.opt_number("heading", p.heading, 0, 360);
    if (!r.ok()) return bad();
    out.positions.push_back(std::move(p));
  } else if (type == "status") {
    cmd::Status s;
    std::string st;
    r.string("unit", s.unit, true);
    r.string("status", st, true);
    if (!r.ok()) return bad();
    if (st == "available") s.status = UnitStatus::available;
    else if (st == "off_duty") s.status = UnitStatus::off_duty;
    else {
      r.fail("status", "must be available or off_duty");
      return bad();
    }
    out.commands.emplace_back(std::move(s));
  } else if (type == "ack") {
    cmd::Ack a;
    if (!r.string("assignment", a.assignment, true)) return bad();
    out.commands.emplace_back(std::move(a));
  } else if (type == "decline") {
    cmd::Decline d;
    r.string("assignment", d.assignment, true);
    r.string("reason", d.reason, false, false);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(d));
  } else if (type == "arrived") {
    cmd::Arrived a;
    if (!r.string("assignment", a.assignment, true)) return bad();
    out.commands.emplace_back(std::move(a));
  } else if (type == "cleared") {
    cmd::Cleared c;
    if (!r.string("assignment", c.assignment, true)) return bad();
    out.commands.emplace_back(std::move(c));
  } else if (type == "report") {
    cmd::Report rep;
    if (!read_report(r, rep)) return bad();
    out.commands.emplace_back(std::move(rep));
  } else if (type == "assign") {
    cmd::Assign a;
    r.string("incident", a.incident, true);
    r.string("unit", a.unit, true);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(a));
  } else if (type == "cancel") {
    cmd::Cancel c;
    if (!r.string("assignment", c.assignment, true)) return bad();
    out.commands.emplace_back(std::move(c));
  } else if (type == "liability") {
    cmd::Liability l;
    r.string("incident", l.incident, true);
    r.string("at_fault", l.at_fault, true);
    r.string("note", l.note, false, false);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(l));
  } else if (type == "close") {
    cmd::Close c;
    if (!r.string("incident", c.incident, true)) return bad();
    out.commands.emplace_back(std::move(c));
  } else if (type == "escalate") {
    cmd::Escalate e;
    r.string("incident", e.incident, true);
    r.string("reason", e.reason, false, false);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(e));
  } else if (type == "rescue") {
    cmd::Rescue x;
    r.string("assignment", x.assignment, true);
    r.string("step", x.step, true);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(x));
  } else if (type == "claim_paid") {
    cmd::ClaimPaid x;
    r.string("claim", x.claim, true);
    r.number("amount", x.amount, false, 0, 1e12);
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(x));
  } else if (type == "delivered") {
    cmd::Delivered d;
    if (!r.string("page", d.page, true)) return bad();
    out.commands.emplace_back(std::move(d));
  }
}

}  // namespace

void parse_frame(std::string_view text, std::string_view role, ParsedFrame& out) {
  if (role.empty()) return parse_frame(text, std::optional<Role>(), out);
  const auto r = parse_role(role);
  if (!r) {
    out.messages += 1;
    out.errors.push_back({ErrorCode::forbidden, "no such role", {}});
    return;
  }
  parse_frame(text, r, out);
}

void parse_frame(std::string_view text, std::optional<Role> role, ParsedFrame& out) {
  // A per-thread arena: parsing a frame allocates nothing once it has grown.
  thread_local std::array<unsigned char, 64 * 1024> arena;
  json::monotonic_resource mr(arena.data(), arena.size());
  json::parse_options opts;
  opts.max_depth = 16;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, &mr, opts);
  if (ec) {
    out.messages += 1;
    out.errors.push_back({ErrorCode::bad_json, "invalid JSON: " + ec.message(), {}});
    return;
  }
  if (v.is_array()) {
    const auto& arr = v.get_array();
    out.messages += std::max<std::size_t>(1, arr.size());
    if (arr.empty()) {
      out.errors.push_back({ErrorCode::bad_message, "an empty batch", {}});
      return;
    }
    for (const auto& m : arr) parse_message(m, role, out);
  } else {
    out.messages += 1;
    parse_message(v, role, out);
  }
}

bool parse_report(std::string_view text, cmd::Report& out, ev::Error& err) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    err = {ErrorCode::bad_json, "invalid JSON: " + ec.message(), {}};
    return false;
  }
  if (!v.is_object()) {
    err = {ErrorCode::bad_message, "a report must be a JSON object", {}};
    return false;
  }
  const auto& o = v.get_object();
  if (const json::value* t = o.if_contains("type"); t && !(t->is_string() && t->get_string() == "report")) {
    err = {ErrorCode::bad_message, "type must be report", ref_of(o)};
    return false;
  }
  Reader r(o);
  if (!read_report(r, out)) {
    err = {ErrorCode::bad_message, r.problem(), ref_of(o)};
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Rendering

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

std::string render_claim(const rec::Claim& c, const rec::Incident* inc) {
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
  w.end_object();
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

void unit_fields(JsonWriter& w, const Engine& e, const Unit& u, Millis now) {
  w.field("id", u.id).field("kind", to_string(u.kind)).field("status", e.wire_status(u, now));
  if (u.has_pos) {
    w.key("lat").coord(u.pos.lat);
    w.key("lon").coord(u.pos.lon);
    w.field("ts", u.pos_ts);
  } else {
    w.key("lat").null();
    w.key("lon").null();
    w.key("ts").null();
  }
  w.field("callsign", u.callsign);
  if (u.speed_kmh >= 0) w.field("speed_kmh", static_cast<double>(u.speed_kmh));
  if (u.heading >= 0) w.field("heading", static_cast<double>(u.heading));
  w.key("assignment").string_or_null(u.active ? std::string_view(u.active->rec.id) : std::string_view());
  w.key("incident").string_or_null(u.active ? std::string_view(u.active->rec.incident) : std::string_view());
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
  w.end_object();
}

void incident_fields(JsonWriter& w, const rec::Incident& r) {
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
  if (r.state == IncidentState::remote) w.field("remote_deadline_ts", r.reported_ts + 300'000);
}

void timeline_fields(JsonWriter& w, const rec::Timeline& t) {
  w.begin_object().field("ts", t.ts).field("event", t.event).field("detail", t.detail);
  w.key("by").value(t.actor_role.empty() ? t.actor_name : t.actor_role + ":" + t.actor_name);
  w.end_object();
}

void incident_object(JsonWriter& w, const Engine& e, const Incident& inc, bool with_type) {
  w.begin_object();
  if (with_type) w.field("type", "incident");
  incident_fields(w, inc.rec);
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
  w.end_object();
}

}  // namespace

std::string render_unit(const Engine& e, const Unit& u, Millis now) {
  std::string s;
  s.reserve(256);
  JsonWriter w(s);
  w.begin_object().field("type", "unit");
  unit_fields(w, e, u, now);
  w.end_object();
  return s;
}

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

std::string render_snapshot(const Engine& e, Millis now) {
  std::string s;
  s.reserve(e.units().size() * 200 + 1024);
  JsonWriter w(s);
  w.begin_object().field("type", "snapshot").field("ts", now);
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
    w.end_object();
  }
  w.end_array().end_object();
  return s;
}

std::string render_incident_record(const rec::Incident& inc,
                                   const std::vector<rec::Assignment>& assignments,
                                   const std::vector<rec::Timeline>& timeline) {
  std::string s;
  JsonWriter w(s);
  w.begin_object();
  incident_fields(w, inc);
  w.key("assignments").begin_array();
  for (const auto& a : assignments) assignment_fields(w, a);
  w.end_array();
  w.key("timeline").begin_array();
  for (const auto& t : timeline) timeline_fields(w, t);
  w.end_array();
  w.end_object();
  return s;
}

}  // namespace dispatch::net
