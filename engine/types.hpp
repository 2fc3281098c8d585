// The engine's vocabulary: kinds, statuses, states and error codes, with their wire
// names (wire-contract.md sections 2, 4, 5 and 6).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::engine {

// Unix epoch milliseconds. The engine never reads a clock: `now` is always an input.
using Millis = std::int64_t;
// A connection, as the server numbers them; 0 is "nobody".
using ConnId = std::uint64_t;

enum class UnitKind : std::uint8_t { moto, heli, car };
enum class UnitStatus : std::uint8_t { available, assigned, en_route, on_scene, off_duty };
enum class Severity : std::uint8_t { minor, injury, critical };
enum class IncidentState : std::uint8_t {
  reported, remote, dispatching, assigned, en_route, on_scene, closed, cancelled
};
enum class AssignmentState : std::uint8_t {
  assigned, en_route, on_scene, cleared, declined, lapsed, cancelled
};
enum class Task : std::uint8_t { scene, landing_zone, secure_lz };
enum class ErrorCode : std::uint8_t {
  bad_json, bad_message, unknown_type, unknown_unit, unknown_incident, unknown_assignment,
  forbidden, conflict, rate_limited, unavailable
};

std::string_view to_string(UnitKind);
std::string_view to_string(UnitStatus);
std::string_view to_string(Severity);
std::string_view to_string(IncidentState);
std::string_view to_string(AssignmentState);
std::string_view to_string(Task);
std::string_view to_string(ErrorCode);

std::optional<UnitKind> parse_unit_kind(std::string_view);
std::optional<UnitStatus> parse_unit_status(std::string_view);
std::optional<Severity> parse_severity(std::string_view);
std::optional<IncidentState> parse_incident_state(std::string_view);
std::optional<AssignmentState> parse_assignment_state(std::string_view);
std::optional<Task> parse_task(std::string_view);

inline bool is_active(AssignmentState s) {
  return s == AssignmentState::assigned || s == AssignmentState::en_route ||
         s == AssignmentState::on_scene;
}
inline bool is_open(IncidentState s) {
  return s != IncidentState::closed && s != IncidentState::cancelled;
}

// Who did something: the token's role and name, kept in the timeline.
struct Actor {
  std::string role;
  std::string name;
};

struct Vehicle {
  std::string plate;
  std::string insurer;
};

}  // namespace dispatch::engine
