// The wire protocol (wire-contract.md section 5): JSON frames to engine commands, engine
// events and objects to JSON. No sockets here, so the parser can be fuzzed and tested
// on its own.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.hpp"
#include "net/role.hpp"

namespace dispatch::net {

// What a frame held, message by message. Positions are gathered for the engine's hot
// path; every other message becomes a command; bad ones become errors for the sender.
struct ParsedFrame {
  std::vector<engine::cmd::Position> positions;
  std::vector<engine::Command> commands;
  std::vector<engine::ev::Error> errors;
  std::vector<std::string_view> types;  // each message's type, for metrics (points into a static table)
  std::size_t messages = 0;              // messages in the frame (a batch counts each), for rate limits
  std::int64_t read_us = 0;              // when its read completed (monotonic; --trace-reports)
  void clear() {
    messages = 0;
    positions.clear();
    commands.clear();
    errors.clear();
    types.clear();
  }
};

// Parses a text frame (one message object or an array of them) from a connection of the
// given role (nullopt: any message is allowed, for tools and tests). Never throws.
void parse_frame(std::string_view text, std::optional<Role> role, ParsedFrame& out);
// The same with the role by name ("unit", "gateway", ...; "" for any).
void parse_frame(std::string_view text, std::string_view role, ParsedFrame& out);
// parse_frame without its fast path for frames of positions (net/position_parser.hpp):
// every frame through the JSON DOM. The same result as parse_frame for every input; here
// so that tests, the fuzzer and bench_protocol can hold the two against each other.
void parse_frame_general(std::string_view text, std::optional<Role> role, ParsedFrame& out);

// Parses one report object (the body of POST /api/incidents).
bool parse_report(std::string_view text, engine::cmd::Report& out, engine::ev::Error& err);

// Rendering.
std::string render_error(const engine::ev::Error& e);
std::string render_accepted(const engine::ev::Accepted& a);
std::string render_assign(const engine::ev::Assign& a);
std::string render_cancel(const engine::ev::Cancel& c);
std::string render_page(const engine::ev::Page& p);
// {"type":"alert","alert":"overdue","incident","clock","due_ts","ts"} for consoles.
std::string render_alert(const engine::ev::Alert& a);
// {"type":"claim",...} for an insurer; `inc` adds the accident's facts when known, and
// `signals` the incident's fraud signals ("signals":[...], rural stations).
std::string render_claim(const engine::rec::Claim& c, const engine::rec::Incident* inc,
                         const std::vector<engine::Signal>* signals = nullptr);
// A unit's state at one moment, copied on the engine thread so that it can be rendered on
// another (the console feed). id and callsign point into the engine's roster arena, which
// never moves or changes once restored; status is a static wire name.
struct UnitView {
  std::uint32_t slot = 0;
  std::string_view id, callsign, status;
  engine::UnitKind kind = engine::UnitKind::moto;
  bool has_pos = false;
  double lat = 0, lon = 0;
  engine::Millis ts = 0;
  float speed_kmh = -1, heading = -1;
  std::string assignment, incident;  // the active ones; empty: none
};
UnitView unit_view(const engine::Engine& e, const engine::Unit& u, engine::Millis now);
std::string render_unit_view(const UnitView& u);
// The same object, appended to `out` (a console flush renders its units into one buffer).
void append_unit_view(std::string& out, const UnitView& u);
// {"type":"unit",...} and {"type":"incident",...}, from the engine's current state.
std::string render_unit(const engine::Engine& e, const engine::Unit& u, engine::Millis now);
std::string render_incident(const engine::Engine& e, const engine::Incident& inc,
                            engine::Millis now);
// What the console is told about this server (the snapshot's "config" and GET /api/config).
struct ConsoleConfig {
  std::string tiles;              // a base map's URL template ({z}/{x}/{y}); "" = none (null)
  std::string tiles_attribution;  // shown under that map; "" = null
  std::string lang_default = "zh-CN";
};
// {"tiles":...,"tiles_attribution":...,"lang_default":"zh-CN","version":"..."}
std::string render_console_config(const ConsoleConfig& c);
// {"type":"snapshot","ts":...,"units":[...],"incidents":[...],"config":{...}}; `config_json`
// is render_console_config()'s object (left out when empty).
std::string render_snapshot(const engine::Engine& e, engine::Millis now, std::string_view config_json = {});
// The unit objects of GET /api/units (a JSON array).
std::string render_units(const engine::Engine& e, engine::Millis now);
// GET /api/stats: service levels by district and severity.
std::string render_service_levels(const engine::Engine& e);
// An incident object from its stored record (REST reads).
std::string render_incident_record(const engine::rec::Incident& inc,
                                   const std::vector<engine::rec::Assignment>& assignments,
                                   const std::vector<engine::rec::Timeline>& timeline,
                                   engine::Millis remote_liability_ms,
                                   const std::vector<engine::Signal>& signals = {});

// The CSV export of GET /api/incidents?format=csv (RFC 4180: CRLF lines, fields with a
// comma, quote or line break quoted, quotes doubled; text that a spreadsheet would take for
// a formula (= + - @ first) gets a leading apostrophe). Times twice: ISO-8601 in China
// Standard Time (+08:00) and epoch milliseconds.
std::string render_incidents_csv_header();
void append_incident_csv(std::string& out, const engine::rec::Incident& inc,
                         const std::vector<engine::rec::Assignment>& assignments);
// "2026-11-29T09:47:14.123+08:00"; "" for 0.
std::string iso8601_cst(engine::Millis ms);
// "20261129-094714" (China Standard Time), for file names.
std::string csv_file_stamp(engine::Millis ms);

}  // namespace dispatch::net
