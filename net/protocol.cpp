#include "net/protocol.hpp"

#include <array>
#include <boost/json.hpp>
#include <cmath>

#include "net/json_writer.hpp"
#include "net/position_parser.hpp"
#include "net/role.hpp"

namespace json = boost::json;

namespace dispatch::net {

using namespace engine;

namespace {

// A note is free text from a person; longer ones are refused rather than sent to every
// console again and again.
constexpr std::size_t max_note_bytes = 4096;

// Message types (the roles that may send each are in role.hpp's table).
constexpr std::array<std::string_view, 18> known_types{
    "position", "status", "ack", "decline", "arrived", "cleared", "report", "assign",
    "cancel", "liability", "close", "delivered", "escalate", "rescue", "claim_paid",
    "sighting", "hazard", "clear_hazard"};

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
    if (r.integer("ts", ts, true, 0, max_message_ts)) rep.ts = ts;
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
  for (std::string_view k : {"id", "unit", "assignment", "incident", "page", "claim", "hazard"})
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
    r.integer("ts", p.ts, true, 0, max_message_ts);
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
  } else if (type == "sighting") {  // rural stations (contract v2 section 10)
    cmd::Sighting x;
    r.string("id", x.id, false);
    r.string("plate", x.plate, true);
    r.integer("ts", x.ts, true, 0, max_message_ts);
    r.string("direction", x.direction, false, false);
    r.string("note", x.note, false, false);
    if (r.ok() && x.plate.size() > 32) r.fail("plate", "is too long (at most 32 bytes)");
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(x));
  } else if (type == "hazard") {
    cmd::Hazard x;
    r.string("id", x.id, true);
    r.number("lat", x.lat, true, -90, 90);
    r.number("lon", x.lon, true, -180, 180);
    r.integer("ts", x.ts, true, 0, max_message_ts);
    r.string("kind", x.kind, true);
    r.string("note", x.note, false, false);
    if (r.ok() && x.kind.size() > 64) r.fail("kind", "is too long (at most 64 bytes)");
    if (!r.ok()) return bad();
    out.commands.emplace_back(std::move(x));
  } else if (type == "clear_hazard") {
    cmd::ClearHazard x;
    if (!r.string("hazard", x.hazard, true)) return bad();
    out.commands.emplace_back(std::move(x));
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
  // Frames of positions only (nearly all of a gateway's traffic) skip the DOM; the fast
  // path takes a frame only when every message in it is a valid position, and otherwise
  // leaves it to the general path below, which reads it from the start.
  if (!role || may_send(*role, "position")) {
    const std::size_t before = out.messages;
    if (parse_positions_fast(text, out.positions, out.messages)) {
      out.types.insert(out.types.end(), out.messages - before, known_types[0]);
      return;
    }
  }
  parse_frame_general(text, role, out);
}

void parse_frame_general(std::string_view text, std::optional<Role> role, ParsedFrame& out) {
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

}  // namespace dispatch::net
