// The dispatch engine: units, incidents and assignments as explicit state machines, and
// the contract's dispatch policy (wire-contract.md section 7).
//
// One facade: commands in, an Output (writes to persist, messages to send) out. The
// engine does no I/O, reads no clock (`now` is an input) and takes no locks: one thread
// owns it. The server releases the messages of an Output that `must_wait` only after the
// store has committed its writes ("tell nobody before the disk knows").
//
// Change messages for consoles (ev::UnitChanged, ev::IncidentChanged) name a unit or an
// incident whose current state is rendered when the Output is released, so one per unit
// and per incident in an Output is enough:
// - An incident gets an IncidentChanged only when its state, its assignments or its
//   timeline changed (every timeline line, and so every assignment change, marks it).
//   Trying the waiting queue when a unit becomes assignable touches only the incidents it
//   assigns, not every waiting one.
// - No Output holds two UnitChanged for one unit, nor two IncidentChanged for one
//   incident. Each Unit and Incident keeps `out_mark`, the index in `Output::messages` at
//   which its change message was last pushed. Before pushing, the engine looks at that
//   index of the Output at hand: if the message there is this unit's (incident's) change
//   message, it is already in this Output and nothing is pushed. The mark validates itself
//   against the Output's contents, so no reset is needed when an Output is cleared,
//   reused or moved from (a stale mark just fails the check); no allocation and no scan
//   per message. The engine only appends to `messages`; callers may append too, but must
//   not erase or reorder messages while they keep passing the same Output to the engine.
//   Filling two Outputs alternately may let a change message be sent twice (never lost).
//
// The engine's rooms, one job each (this facade's members are defined across them):
//   engine.cpp     the facade: commands, reports, rescue steps, the timeline, the timers
//   fleet.cpp      the roster, the id table, the spatial index, positions, staleness, duty
//   lifecycle.cpp  needs and assignments: create, ack, arrive, and one retire path
//   policy.cpp     the policy (policy.hpp: a pure function returning a plan and its reasons)
//                  and the choice of the nearest unit, by road ETA when roads are set
//   claims.cpp     liability decisions and insurers' claims
//   pages.cpp      pages to pagers, resent until delivered
//   restore.cpp    the engine rebuilt from the store's snapshot
#pragma once

#include <array>
#include <deque>
#include <map>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/geography.hpp"
#include "engine/policy.hpp"
#include "engine/records.hpp"
#include "engine/signals.hpp"
#include "engine/stations.hpp"
#include "engine/types.hpp"
#include "geo/geo.hpp"
#include "geo/travel_times.hpp"
#include "geo/unit_index.hpp"

namespace dispatch::engine {

// Who sent a command: the token's role and name, and the units it may speak for.
struct Principal {
  std::string role;  // console, reporter, unit, gateway, pager, insurer
  std::string name;
  bool all_units = false;
  std::vector<std::string> units;
  std::string insurer;  // insurer tokens: whose claims
  std::string station{};  // station tokens: which station (a place of kind station)
  bool may_speak_for(std::string_view unit) const;
};

struct Origin {
  ConnId conn = 0;
  const Principal* who = nullptr;
};

struct Config {
  Millis stale_after_ms = 60'000;
  Millis max_future_ms = 300'000;
  Millis ack_within_ms = 30'000;
  Millis page_retry_ms = 60'000;
  Millis remote_liability_ms = 300'000;
  Millis claim_paid_within_ms = 15 * 60'000;
  // Air-ground rescue stages, each from the helicopter's call: airborne, landed, the
  // patient handed to the hospital. Past them, an overdue alert.
  Millis airborne_within_ms = 10 * 60'000;
  Millis landed_within_ms = 30 * 60'000;
  Millis hospital_within_ms = 60 * 60'000;
  double max_speed_kmh_ground = 250;
  double max_speed_kmh_heli = 400;
  // Track downsampling: a point when the unit moved this far or this long has passed.
  double track_min_distance_m = 100;
  Millis track_min_interval_ms = 60'000;
  // Closed incidents stay in memory this long for late messages, then only the store has them.
  Millis keep_closed_ms = 10 * 60'000;
  // One token (Incident::source, "role:name") may have at most this many open incidents
  // (not closed or cancelled); a report over it is refused with `rate_limited` and creates
  // nothing. A report id the token already used is still answered. 0: no cap.
  std::size_t max_open_per_source = 2000;
  // A unit may change its duty status (`status` messages that change it) at most this many
  // times in a 60 s window (fixed, starting at the first change after the last window
  // ended); over it a `status` message is refused with `rate_limited`, changes nothing and
  // writes nothing. Status changes the engine makes itself (assign, clear) do not count.
  // 0: no cap.
  std::uint32_t max_status_changes_per_min = 30;
  // With road travel times: how many nearest ground units by straight line are asked for
  // their road ETA (the least wins).
  std::size_t road_candidates = 16;
  // Air-ground rescue: a landing zone farther than this from the scene is not used (the
  // helicopter lands at the scene).
  double lz_max_km = 10;
};

namespace cmd {
struct Position {
  std::string unit;
  double lat = 0, lon = 0;
  Millis ts = 0;
  std::optional<double> speed_kmh;
  std::optional<double> heading;
};
struct Status {
  std::string unit;
  UnitStatus status = UnitStatus::available;
};
struct Ack {
  std::string assignment;
};
struct Decline {
  std::string assignment;
  std::string reason;
};
struct Arrived {
  std::string assignment;
};
struct Cleared {
  std::string assignment;
};
struct Report {
  std::string id;
  double lat = 0, lon = 0;
  std::optional<Millis> ts;
  Severity severity = Severity::minor;
  int injured = 0;
  bool drivable = false;
  bool parties_agree = false;
  std::vector<Vehicle> vehicles;
  std::string note;
};
struct Assign {  // console: manual assignment (override)
  std::string incident;
  std::string unit;
};
struct Cancel {  // console: withdraw an assignment
  std::string assignment;
};
struct Liability {
  std::string incident;
  std::string at_fault;
  std::string note;
};
struct Close {
  std::string incident;
};
struct Delivered {  // pager gateway: a page reached the pager
  std::string page;
};
struct Escalate {  // console: remote handling failed (video, disagreement): dispatch a unit
  std::string incident;
  std::string reason;
};
struct ClaimPaid {  // insurer: a claim is paid
  std::string claim;
  double amount = 0;
};
// A helicopter crew's step in an air-ground rescue: airborne, landed, patient_loaded,
// transferred (the patient handed to the hospital).
struct Rescue {
  std::string assignment;
  std::string step;
};
}  // namespace cmd

using Command = std::variant<cmd::Status, cmd::Ack, cmd::Decline, cmd::Arrived, cmd::Cleared,
                             cmd::Report, cmd::Assign, cmd::Cancel, cmd::Liability, cmd::Close,
                             cmd::Delivered, cmd::Escalate, cmd::Rescue, cmd::ClaimPaid,
                             cmd::Sighting, cmd::Hazard, cmd::ClearHazard>;

namespace ev {
struct Accepted {
  std::string report_id;
  std::string incident;
};
struct Assign {
  std::string assignment, unit, incident;
  Task task = Task::scene;
  double lat = 0, lon = 0;
  Severity severity = Severity::minor;
  int eta_s = 0;
  int ack_within_s = 0;
};
struct Cancel {
  std::string assignment, unit, reason;
};
struct Page {
  std::string page, unit, capcode, assignment, text;
};
struct Claim {
  std::string claim;
};
struct Error {
  ErrorCode code;
  std::string message;
  std::string ref;
};
// For consoles: the current state of a unit or an incident is rendered when released.
struct UnitChanged {
  std::uint32_t unit;
};
struct IncidentChanged {
  std::string incident;
};
// For consoles: a clock ran out (`alert` is "overdue").
struct Alert {
  std::string alert;
  std::string incident;
  std::string clock;
  Millis due_ts = 0;
  Millis ts = 0;
};
}  // namespace ev

using Payload = std::variant<ev::Accepted, ev::Assign, ev::Cancel, ev::Page, ev::Error,
                             ev::UnitChanged, ev::IncidentChanged, ev::Claim, ev::Alert,
                             ev::HazardAccepted, ev::HazardChanged, ev::SightingAccepted>;

struct Target {
  enum class Kind : std::uint8_t { conn, consoles, pagers, insurer };
  Kind kind = Kind::conn;
  ConnId conn = 0;
  std::string insurer;  // Kind::insurer: every connection of that insurer

  static Target to(ConnId c) { return Target{Kind::conn, c, {}}; }
  static Target consoles() { return Target{Kind::consoles, 0, {}}; }
  static Target pagers() { return Target{Kind::pagers, 0, {}}; }
  static Target insurer_of(std::string name) { return Target{Kind::insurer, 0, std::move(name)}; }
};

struct Message {
  Target to;
  Payload payload;
};

struct Output {
  std::vector<Write> writes;
  std::vector<Message> messages;
  // The messages may leave only after the writes (and all queued before) are durable.
  bool must_wait = false;
  void clear() {
    writes.clear();
    messages.clear();
    must_wait = false;
  }
  bool empty() const { return writes.empty() && messages.empty(); }
};

struct Stats {
  std::uint64_t positions = 0;
  std::uint64_t positions_out_of_order = 0;
  std::uint64_t positions_gps_jump = 0;
  std::uint64_t reports = 0;
  std::uint64_t reports_duplicate = 0;
  std::uint64_t reports_rate_limited = 0;   // over max_open_per_source
  std::uint64_t status_rate_limited = 0;    // over max_status_changes_per_min
  std::uint64_t assignments = 0;
  std::uint64_t assignments_declined = 0;
  std::uint64_t assignments_lapsed = 0;
  std::uint64_t assignments_cancelled = 0;
  std::uint64_t assignments_cleared = 0;
  std::uint64_t incidents_closed = 0;
  std::uint64_t pages = 0;
  std::uint64_t pages_resent = 0;
  std::uint64_t claims = 0;
  std::uint64_t claims_paid = 0;
  std::uint64_t sightings = 0;          // taken (stored)
  std::uint64_t sightings_windowed = 0; // of them, in the signals' window
  std::uint64_t hazards = 0;
  std::uint64_t signals_raised = 0;     // incidents that got a new signal
  std::array<std::uint64_t, 5> overdue{};  // by clock, in the order of clock_names
};

// The clocks that raise the alarm (clocks.cpp), on every incident that has them:
// liability (remote handling: from the accident), claim (from the first claim), and the
// air rescue stages airborne, landed, hospital (from the helicopter's call).
inline constexpr std::array<std::string_view, 5> clock_names{"liability", "claim", "airborne", "landed",
                                                             "hospital"};
struct Clock {
  std::string_view name;  // one of clock_names
  Millis start_ts = 0;
  Millis due_ts = 0;
  Millis done_ts = 0;     // 0: not met yet
  bool overdue = false;   // it ran out before it was met (the alert was raised)
};

// The steps of an air-ground rescue, in order (rescue.cpp).
inline constexpr std::array<std::string_view, 7> rescue_steps{
    "hospital_notified", "heli_called", "airborne", "lz_secured", "landed", "patient_loaded", "transferred"};
struct RescueStep {
  std::string step;
  Millis ts = 0;
  Actor actor;
};
struct Rescue {
  Task target = Task::scene;  // landing_zone or scene: where the helicopter goes
  std::optional<PlaceRef> landing_zone;
  std::optional<PlaceRef> hospital;
  std::vector<RescueStep> steps;
  const RescueStep* step(std::string_view name) const {
    for (const auto& s : steps)
      if (s.step == name) return &s;
    return nullptr;
  }
};

// Service levels: how long things took, by district and severity (in memory since start).
struct ServiceLevel {
  std::uint64_t count = 0;
  double sum_s = 0;
  double max_s = 0;
  void add(double s) {
    ++count;
    sum_s += s;
    if (s > max_s) max_s = s;
  }
};
struct ServiceLevels {
  ServiceLevel to_assign;     // report received -> first unit assigned
  ServiceLevel to_scene;      // report received -> first unit on scene
  ServiceLevel to_liability;  // accident (reported ts) -> liability decided
  ServiceLevel to_claim_paid; // accident (reported ts) -> a claim paid
  // Air-ground rescue stages, from the helicopter's call.
  ServiceLevel call_to_airborne;
  ServiceLevel call_to_landed;
  ServiceLevel call_to_hospital;
};

// ---------------------------------------------------------------------------------------
// State. Read-only views are public so that the server can render objects; only the
// engine changes them.

struct Incident;
struct Assignment;

// A unit: 112 bytes, no allocation of its own. Its roster data (id, callsign, capcode,
// base), fixed once restored, is packed in the engine's append-only arena and read
// through the accessors; its slot is its index in Engine::units().
struct Unit {
  geo::LatLon pos;  // exact as received: the nearest is decided on these doubles
  Millis pos_ts = 0;
  Assignment* active = nullptr;
  float speed_kmh = -1;
  float heading = -1;
  ConnId own_conn = 0;      // the unit's own /ws/unit connection
  ConnId gateway_conn = 0;  // the gateway that last sent its position
  geo::LatLon track_pos;
  Millis track_ts = 0;
  // Duty status changes asked for by `status` messages in the current 60 s window.
  Millis status_window_start = 0;
  std::uint32_t status_changes = 0;
  // Where this unit's UnitChanged was last pushed in an Output (see the top of this file).
  std::uint32_t out_mark = static_cast<std::uint32_t>(-1);
  UnitKind kind = UnitKind::moto;
  UnitStatus status = UnitStatus::available;
  bool has_pos = false;
  bool stale = false;  // last known staleness (the sweep keeps it current to within a tick)
  bool moved = false;  // position changed since the consoles last heard

  std::string_view id() const { return name(0); }
  std::string_view callsign() const { return name(1); }
  std::string_view capcode() const { return name(2); }  // empty: no pager
  std::optional<geo::LatLon> base() const;              // home base (helicopters)

 private:
  friend class Engine;
  // [length][id][length][callsign][length][capcode] (lengths LEB128), then 0, or 1 and
  // the base's two doubles. Owned by the engine's arena; stable for the engine's life.
  const char* roster_ = nullptr;
  std::string_view name(int i) const;
};

struct Assignment {
  rec::Assignment rec;
  Incident* incident = nullptr;
  std::uint32_t unit = 0;
  std::size_t need = 0;
  Millis ack_deadline = 0;
};

struct Need {
  UnitKind kind = UnitKind::moto;
  std::optional<UnitKind> or_kind;  // taken when no unit of `kind` is assignable
  Task task = Task::scene;
  geo::LatLon target;
  Assignment* active = nullptr;
  bool done = false;
  std::vector<std::uint32_t> excluded;  // units that declined or lapsed
  bool fits(UnitKind k) const { return k == kind || (or_kind && k == *or_kind); }
  std::uint8_t kind_bits() const {
    return static_cast<std::uint8_t>((1u << static_cast<int>(kind)) |
                                     (or_kind ? 1u << static_cast<int>(*or_kind) : 0u));
  }
};

struct Incident {
  rec::Incident rec;
  std::vector<std::string> claims;  // claim ids
  std::vector<Need> needs;
  std::vector<std::unique_ptr<Assignment>> assignments;
  std::vector<rec::Timeline> timeline;
  bool waiting = false;  // in the dispatch queue: a need has no unit
  // The kinds of its needs without a unit (bit 1 << UnitKind) while it waits: the kinds'
  // waiting queues it is in.
  std::uint8_t wait_kinds = 0;
  bool counted = false;  // counts towards its source's open incidents (max_open_per_source)
  std::vector<Signal> signals;  // fraud signals (engine/signals.hpp), [] when none
  std::optional<Rescue> rescue;  // an air-ground rescue: its target, places and steps
  std::vector<Clock> clocks;
  const Clock* clock(std::string_view name) const {
    for (const auto& c : clocks)
      if (c.name == name) return &c;
    return nullptr;
  }
  // Where this incident's IncidentChanged was last pushed in an Output (see the top).
  std::size_t out_mark = static_cast<std::size_t>(-1);
};

class Engine {
 public:
  explicit Engine(Config config = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Districts and rescue places; without them every scene counts as urban and critical
  // incidents get a motorcycle team only. Not owned; must outlive the engine.
  void set_geography(const Geography* g) { geography_ = g; }
  // Road travel times for ground units (contract v2 section 8); null: straight lines.
  // Not owned; must outlive the engine.
  void set_travel_times(const geo::TravelTimes* t) { travel_ = t; }

  // At start: the store's snapshot (roster, open incidents, counters).
  void restore(const Snapshot& snapshot, Millis now);

  // A frame's positions: the hot path. Allocation-free unless something changes state.
  void positions(std::span<const cmd::Position> batch, const Origin& origin, Millis now,
                 Output& out);
  void handle(const Command& command, const Origin& origin, Millis now, Output& out);
  // Timers: ack timeouts, stale units, page resends, eviction of closed incidents.
  void tick(Millis now, Output& out);

  // Connections, so that assigns reach the right one.
  void unit_connected(ConnId conn, const Principal& who);
  void disconnected(ConnId conn);
  // A pager gateway connected: every undelivered page again.
  void pager_connected(ConnId conn, Output& out);
  void pager_disconnected() {
    if (pagers_connected_) --pagers_connected_;
  }
  // An insurer connected: its unpaid claims.
  void insurer_connected(ConnId conn, const std::string& insurer, Output& out);
  const rec::Claim* claim(std::string_view id) const;

  // Views, for rendering.
  const std::vector<Unit>& units() const { return units_; }
  const Unit* unit(std::string_view id) const;
  const Incident* incident(std::string_view id) const;
  std::vector<const Incident*> open_incidents() const;
  // Derived status for the wire: `stale` when available but silent for stale_after.
  std::string_view wire_status(const Unit& u, Millis now) const;
  bool assignable(const Unit& u, Millis now) const;
  // Units whose position changed since the last call (for coalesced console updates).
  void take_moved(std::vector<std::uint32_t>& out);
  // Candidates for a manual assignment: the k nearest available units of any kind.
  struct Candidate {
    std::uint32_t unit;
    double distance_m;
    double eta_s;
  };
  std::vector<Candidate> candidates(std::string_view incident, std::size_t k, Millis now) const;

  // Rural stations (engine/stations.cpp): hazards, and the signals' room.
  const rec::Hazard* hazard(std::string_view id) const;
  std::vector<const rec::Hazard*> open_hazards() const;  // oldest first
  const SignalBook& signal_book() const { return signals_; }

  // Keyed by "district|severity" (district empty when unknown).
  const std::map<std::string, ServiceLevels>& service_levels() const { return service_; }
  const Config& config() const { return config_; }
  const Stats& stats() const { return stats_; }
  std::size_t waiting_count() const { return waiting_count_; }
  // Pages not yet delivered and still kept (a page of an ended assignment leaves when
  // next due).
  std::size_t pending_pages() const { return pages_.size(); }
  // Open incidents (not closed or cancelled) reported by `source` ("role:name").
  std::size_t open_count(std::string_view source) const;

 private:
  Unit* find_unit(std::string_view id);
  Assignment* find_assignment(std::string_view id);
  Incident* find_incident(std::string_view id);

  void on_status(const cmd::Status&, const Origin&, Millis, Output&);
  void on_ack(const cmd::Ack&, const Origin&, Millis, Output&);
  void on_decline(const cmd::Decline&, const Origin&, Millis, Output&);
  void on_arrived(const cmd::Arrived&, const Origin&, Millis, Output&);
  void on_cleared(const cmd::Cleared&, const Origin&, Millis, Output&);
  void on_report(const cmd::Report&, const Origin&, Millis, Output&);
  void on_assign(const cmd::Assign&, const Origin&, Millis, Output&);
  void on_cancel(const cmd::Cancel&, const Origin&, Millis, Output&);
  void on_liability(const cmd::Liability&, const Origin&, Millis, Output&);
  void on_close(const cmd::Close&, const Origin&, Millis, Output&);
  void on_delivered(const cmd::Delivered&, const Origin&, Millis, Output&);
  void on_escalate(const cmd::Escalate&, const Origin&, Millis, Output&);
  void on_rescue(const cmd::Rescue&, const Origin&, Millis, Output&);
  void on_claim_paid(const cmd::ClaimPaid&, const Origin&, Millis, Output&);
  // Rural stations (engine/stations.cpp).
  void on_sighting(const cmd::Sighting&, const Origin&, Millis, Output&);
  void on_hazard(const cmd::Hazard&, const Origin&, Millis, Output&);
  void on_clear_hazard(const cmd::ClearHazard&, const Origin&, Millis, Output&);
  void restore_stations(const StationSnapshot& s, Millis now);
  void tick_stations(Millis now);  // windows evicted, cleared hazards leave memory
  // Computes the incident's fraud signals (at the report, at the liability decision),
  // keeps what was raised before, and writes and shows them when they changed.
  void compute_signals(Incident& inc, const char* stage, Millis now, Output& out);
  void hazard_event(const rec::Hazard& h, Millis ts, std::string event, std::string detail,
                    const Actor& actor, Output& out);
  // Clocks (clocks.cpp): started once per name; met once; overdue checked by tick().
  void start_clock(Incident& inc, std::string_view name, Millis start, Millis due);
  void meet_clock(Incident& inc, std::string_view name, Millis now);
  void check_clocks(Millis now, Output& out);
  // The rescue chain (rescue.cpp): a step once, in the timeline and the rescue's steps;
  // it meets its clock and adds its service level.
  void rescue_step(Incident& inc, std::string_view step, std::string detail, Millis now,
                   const Actor& actor, Output& out);
  // A helicopter was assigned to the incident: the rescue (made when missing) records the
  // call and starts the air clocks.
  void heli_called(Incident& inc, const Unit& u, Task task, Millis now, const Actor& actor, Output& out);
  // At restore: the rescue and the clocks rebuilt from the incident's record and timeline.
  void rebuild_rescue_and_clocks(Incident& inc);
  // After a liability decision: one claim per insurer of the incident's vehicles.
  void open_claims(Incident& inc, Millis now, const Actor& actor, Output& out);

  // An assignment message about a unit: looks it up and checks the sender may speak for it.
  Assignment* assignment_for(std::string_view id, const Origin&, Output&);

  // The policy: which units an incident needs (section 7). With `out`, the air-rescue
  // decision is explained in the timeline.
  // `air`: at restore, the air decision already taken (the timeline says).
  void plan_needs(Incident& inc, Millis now, Output* out, std::optional<bool> air = std::nullopt);
  // Assigns every open need of the incident it can; queues the incident when one is left.
  void dispatch(Incident& inc, Millis now, const Actor& actor, Output& out);
  // Tries the waiting incidents, most urgent first (a unit has become assignable): only
  // those waiting for a kind that still has an assignable unit, and only while it has one.
  void dispatch_waiting(Millis now, Output& out);
  // Puts the incident in the waiting queues of these kinds (bits 1 << UnitKind) and takes
  // it out of the others; no kinds: it no longer waits.
  void set_waiting(Incident& inc, std::uint8_t kinds);
  // Whether any unit of this kind is assignable now (declines aside).
  bool any_assignable(UnitKind kind, geo::LatLon near, Millis now) const;
  // The nearest assignable unit for a target (policy.cpp): by ETA, road ETA for ground
  // units when travel times are set.
  // With `examined`: the units it weighed (with roads, the straight-line prefilter and
  // their road ETAs), each `chosen`, `farther` or `unreachable`.
  std::optional<policy::Choice> choose(UnitKind kind, geo::LatLon target,
                                       const std::vector<std::uint32_t>& skip, Millis now,
                                       std::vector<policy::Weighed>* examined = nullptr) const;
  // The assignment's `candidates` (JSON array text) for a policy choice: the chosen unit,
  // a few others examined, and the nearest few units of the kind that could not be taken
  // (busy, stale, off_duty, declined) within the chosen unit's distance. At most
  // policy::max_candidates entries.
  std::string candidates_json(UnitKind kind, geo::LatLon target,
                              const std::vector<std::uint32_t>& excluded, Millis now,
                              const policy::Choice& chosen,
                              std::vector<policy::Weighed> examined) const;
  // A manual assignment's `candidates`: the one unit the dispatcher chose, `manual`.
  std::string manual_candidates_json(const Unit& u, geo::LatLon target) const;
  // `eta_s`: as the policy found it; none: eta_to() (a manual assignment).
  Assignment& create_assignment(Incident& inc, std::size_t need, Unit& u, Millis now,
                                const Actor& actor, Output& out,
                                std::optional<double> eta_s = std::nullopt,
                                std::string candidates = {});
  // One unit's ETA to a target: by road for ground units when roads are set and reachable.
  double eta_to(const Unit& u, geo::LatLon target) const;
  // The one way an assignment ends (lifecycle.cpp): cleared, declined, lapsed or cancelled.
  struct RetireHow {
    bool tell_unit = false;   // send the unit a cancel
    bool redispatch = false;  // the need takes the next nearest at once
  };
  void retire(Assignment& a, AssignmentState end, const std::string& reason, RetireHow how,
              Millis now, const Actor& actor, Output& out);
  // Timers, one per room.
  void lapse_due(Millis now, Output& out);     // lifecycle: acks not in time
  void sweep_stale(Millis now, Output& out);   // fleet: a slice of the units per tick
  void resend_pages(Millis now, Output& out);  // pages: undelivered ones again
  void evict_closed(Millis now);               // closed incidents leave memory
  void free_unit(Unit& u, Millis now, const Actor& actor, const std::string& why, Output& out);
  void set_unit_status(Unit& u, UnitStatus s, Millis now, const Actor& actor,
                       const std::string& why, Output& out);
  void update_incident_state(Incident& inc, Millis now, Output& out);
  void close_incident(Incident& inc, IncidentState final_state, Millis now, const Actor& actor,
                      const std::string& why, Output& out);
  void timeline(Incident& inc, Millis ts, std::string event, std::string detail,
                const Actor& actor, Output& out);
  void incident_changed(Incident& inc, Output& out);
  void unit_changed(Unit& u, Output& out);
  void send_to_unit(const Unit& u, Payload payload, Output& out);
  void page(const Assignment& a, const Unit& u, Millis now, Output& out);
  void reindex(Unit& u, Millis now);
  void error(const Origin& o, ErrorCode code, std::string message, std::string ref, Output& out);

  ServiceLevels& service_of(const Incident& inc);

  Config config_;
  Stats stats_;
  std::map<std::string, ServiceLevels> service_;
  const Geography* geography_ = nullptr;
  const geo::TravelTimes* travel_ = nullptr;
  std::vector<Unit> units_;
  std::uint32_t slot_of(const Unit& u) const { return static_cast<std::uint32_t>(&u - units_.data()); }
  // The units' roster data (Unit::roster_): append-only blocks, so addresses stay put.
  std::vector<std::unique_ptr<char[]>> arena_;
  std::size_t arena_used_ = 0, arena_size_ = 0;
  const char* pack_roster(const rec::Unit& ru);
  // Unit ids -> slots: open addressing with linear probing over slot + 1 (0: empty), at
  // most half full, keyed by the ids in the arena (4 bytes per entry, 8-16 per unit).
  std::vector<std::uint32_t> by_id_;
  std::uint32_t find_slot(std::string_view id) const;  // npos_slot when unknown
  void index_id(std::uint32_t slot);
  static constexpr std::uint32_t npos_slot = static_cast<std::uint32_t>(-1);
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::unique_ptr<Incident>, Hash, std::equal_to<>> incidents_;
  std::unordered_map<std::string, Assignment*, Hash, std::equal_to<>> assignments_;
  // Per reporting token (rec::Incident::source, "role:name"): its report ids -> incident
  // ids (every incident ever stored: reports are idempotent per token, contract 5.2), and
  // how many of its incidents are open (kept on create, close and restore).
  struct Source {
    std::unordered_map<std::string, std::string, Hash, std::equal_to<>> reports;
    std::size_t open = 0;
  };
  std::unordered_map<std::string, Source, Hash, std::equal_to<>> sources_;
  Source& source(const std::string& name);
  std::array<geo::UnitIndex, 3> index_;  // by UnitKind: the assignable units with a position
  // By UnitKind: every other unit with a position (busy, off duty, stale): the nearest few
  // that could not go, for an assignment's candidates (candidates_json).
  std::array<geo::UnitIndex, 3> unassignable_;
  // The waiting queues, one per unit kind: the incidents with a need of that kind without a
  // unit, most urgent first (severity, then the oldest report: rank()). An incident
  // waiting for two kinds is in both.
  struct Waiting {
    std::uint64_t rank;  // (2 - severity) << 62 | seq: smaller is more urgent
    Incident* inc;
    static std::uint64_t rank_of(const Incident& inc) {
      return static_cast<std::uint64_t>(2 - static_cast<int>(inc.rec.severity)) << 62 | inc.rec.seq;
    }
    bool operator<(const Waiting& o) const { return rank < o.rank; }
  };
  std::array<std::set<Waiting>, 3> waiting_;
  std::size_t waiting_count_ = 0;
  std::vector<Assignment*> pending_ack_;
  // Pages not yet delivered, by page number (so in the order they were made), and when
  // each is next due to go out again: the tick looks only at the pages that are due,
  // and a delivery finds its page without a scan (at 1,000 reports/s without a pager
  // gateway tens of thousands wait, and the tick used to walk them all every 100 ms).
  struct PendingPage {
    rec::Page rec;
    Millis sent_ts = 0;
    Millis due_ts = 0;  // the entry of pages_due_ that stands for it
  };
  std::map<std::uint64_t, PendingPage> pages_;
  std::deque<std::pair<Millis, std::uint64_t>> pages_due_;  // (due, page number), due ascending
  void track_page(rec::Page p, Millis sent_ts);
  std::unordered_map<std::string, rec::Claim, Hash, std::equal_to<>> claims_;
  std::vector<std::uint32_t> moved_;
  std::size_t sweep_next_ = 0;
  std::uint64_t incident_seq_ = 0, assignment_seq_ = 0, page_seq_ = 0, claim_seq_ = 0;
  std::size_t pagers_connected_ = 0;
  std::deque<std::pair<Millis, std::string>> closed_;  // closed incidents, oldest first
  // Rural stations: the signals' room, hazards (open ones, and every cleared one since
  // start: a console may clear only once), and per token its hazard ids.
  SignalBook signals_;
  std::unordered_map<std::string, rec::Hazard, Hash, std::equal_to<>> hazards_;
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> hazard_keys_;  // source \n id -> hazard
  std::uint64_t hazard_seq_ = 0;
  std::deque<std::pair<Millis, std::string>> cleared_hazards_;  // oldest first
  // Clocks not met yet, by due time: (due, incident id, clock name).
  std::set<std::tuple<Millis, std::string, std::string_view>> clocks_due_;
};

}  // namespace dispatch::engine
