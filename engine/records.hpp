// What the engine asks the store to persist, and what the store gives back at start.
// Plain values: the engine knows nothing of SQL, the store nothing of the policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/station_records.hpp"
#include "engine/types.hpp"
#include "geo/geo.hpp"

namespace dispatch::engine::rec {

// Times are epoch milliseconds; 0 means "not yet" (NULL in the database).

// A unit of the roster and its duty status (upserted on fleet load and on every status
// change). Positions are not persisted here; tracks are (TrackPoint).
struct Unit {
  std::string id;
  UnitKind kind = UnitKind::moto;
  std::string callsign;
  std::string capcode;                 // empty: no pager
  std::optional<geo::LatLon> base;     // home base (helicopters)
  UnitStatus status = UnitStatus::available;
  Millis updated_ts = 0;
};

struct Incident {
  std::uint64_t seq = 0;               // the number in the id, for the id counter
  std::string id;
  std::string report_id;
  IncidentState state = IncidentState::reported;
  Severity severity = Severity::minor;
  double lat = 0, lon = 0;
  std::string district;
  Millis reported_ts = 0;              // the report's ts (or when received)
  Millis received_ts = 0;              // when the server took it
  int injured = 0;
  bool drivable = false;
  bool parties_agree = false;
  std::vector<Vehicle> vehicles;
  std::string note;
  std::string source;                  // who reported: the token's role and name
  std::string hospital;                // air-ground rescue: the receiving hospital
  std::string at_fault;                // liability decision: a plate, "none", or empty
  Millis liability_ts = 0;
  Millis closed_ts = 0;
};

struct Assignment {
  std::uint64_t seq = 0;
  std::string id;
  std::string incident;
  std::string unit;
  Task task = Task::scene;
  AssignmentState state = AssignmentState::assigned;
  double lat = 0, lon = 0;             // where the unit is sent
  int eta_s = 0;
  Millis assigned_ts = 0, acked_ts = 0, arrived_ts = 0, cleared_ts = 0;
  Millis ended_ts = 0;                 // declined, lapsed or cancelled
  std::string end_reason;
  // The candidates weighed (protocol.md "Candidates"): a JSON array, as sent; empty for
  // assignments stored before it was kept.
  std::string candidates;
};

// One line of an incident's timeline (appended, never changed).
struct Timeline {
  std::string incident;
  Millis ts = 0;
  std::string event;
  std::string detail;
  std::string actor_role;
  std::string actor_name;
};

// One line of a unit's audit trail: status changes and who caused them (appended).
struct UnitEvent {
  std::string unit;
  Millis ts = 0;
  std::string event;
  std::string detail;
  std::string actor_role;
  std::string actor_name;
};

// A downsampled track point (appended).
struct TrackPoint {
  std::string unit;
  Millis ts = 0;
  double lat = 0, lon = 0;
};

// A pager message and its delivery (upserted).
struct Page {
  std::uint64_t seq = 0;
  std::string id;
  std::string unit;
  std::string capcode;
  std::string assignment;
  std::string text;
  bool delivered = false;
  Millis created_ts = 0;
  Millis delivered_ts = 0;
};

// A claim handed to an insurer after the liability decision (upserted).
struct Claim {
  std::uint64_t seq = 0;
  std::string id;
  std::string incident;
  std::string insurer;
  std::vector<std::string> plates;     // the insurer's vehicles in the incident
  bool insured_at_fault = false;       // one of those plates was found at fault
  bool paid = false;
  Millis created_ts = 0;
  Millis deadline_ts = 0;              // the 15-minute target
  Millis paid_ts = 0;
  double amount = 0;
};

}  // namespace dispatch::engine::rec

namespace dispatch::engine {

using Write = std::variant<rec::Unit, rec::Incident, rec::Assignment, rec::Timeline,
                           rec::UnitEvent, rec::TrackPoint, rec::Page, rec::Claim,
                           // rural stations (station_records.hpp)
                           rec::Sighting, rec::Hazard, rec::HazardEvent, rec::IncidentSignals,
                           rec::IncidentPlate>;

// What the store hands the engine at start: everything still open, and the counters.
struct Snapshot {
  std::vector<rec::Unit> units;
  // Each unit's last known position and its time (its newest track point), if any.
  std::vector<rec::TrackPoint> last_positions;
  std::vector<rec::Incident> open_incidents;     // state not closed/cancelled
  std::vector<rec::Assignment> assignments;      // every assignment of the open incidents
  std::vector<rec::Timeline> timeline;           // every line of the open incidents, by ts
  std::vector<rec::Page> undelivered_pages;
  std::vector<rec::Claim> claims;                // unpaid claims, and all of open incidents
  std::uint64_t max_claim_seq = 0;
  // (source, report id) -> incident id, for every incident ever stored (reports are
  // idempotent per token: contract v2 section 5.2). `source` is rec::Incident::source,
  // "role:name" of the token that reported; token names are unique.
  struct ReportKey {
    std::string source;
    std::string report_id;
    std::string incident;
  };
  std::vector<ReportKey> report_ids;
  // Service levels rebuilt from the history on disk: one sample per event. `stage` names a
  // ServiceLevels member (to_assign, to_scene, to_liability, to_claim_paid), or a rescue
  // step from the helicopter's call (airborne, landed, transferred).
  struct ServiceSample {
    std::string district;
    Severity severity = Severity::minor;
    std::string stage;
    double seconds = 0;
  };
  std::vector<ServiceSample> service_samples;
  std::uint64_t max_incident_seq = 0;
  std::uint64_t max_assignment_seq = 0;
  std::uint64_t max_page_seq = 0;
  StationSnapshot stations;  // sightings, incidents' plates, hazards, signals
};

}  // namespace dispatch::engine
