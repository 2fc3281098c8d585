#include "engine/types.hpp"

#include <array>

namespace dispatch::engine {

namespace {
template <class E, std::size_t N>
std::string_view name_of(E e, const std::array<std::string_view, N>& names) {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : std::string_view("?");
}
template <class E, std::size_t N>
std::optional<E> parse_of(std::string_view s, const std::array<std::string_view, N>& names) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == s) return static_cast<E>(i);
  return std::nullopt;
}

constexpr std::array<std::string_view, 3> kinds{"moto", "heli", "car"};
constexpr std::array<std::string_view, 5> statuses{"available", "assigned", "en_route", "on_scene",
                                                   "off_duty"};
constexpr std::array<std::string_view, 3> severities{"minor", "injury", "critical"};
constexpr std::array<std::string_view, 8> incident_states{
    "reported", "remote", "dispatching", "assigned", "en_route", "on_scene", "closed", "cancelled"};
constexpr std::array<std::string_view, 7> assignment_states{
    "assigned", "en_route", "on_scene", "cleared", "declined", "lapsed", "cancelled"};
constexpr std::array<std::string_view, 3> tasks{"scene", "landing_zone", "secure_lz"};
constexpr std::array<std::string_view, 10> error_codes{
    "bad_json",  "bad_message", "unknown_type", "unknown_unit", "unknown_incident",
    "unknown_assignment", "forbidden", "conflict", "rate_limited", "unavailable"};
}  // namespace

std::string_view to_string(UnitKind e) { return name_of(e, kinds); }
std::string_view to_string(UnitStatus e) { return name_of(e, statuses); }
std::string_view to_string(Severity e) { return name_of(e, severities); }
std::string_view to_string(IncidentState e) { return name_of(e, incident_states); }
std::string_view to_string(AssignmentState e) { return name_of(e, assignment_states); }
std::string_view to_string(Task e) { return name_of(e, tasks); }
std::string_view to_string(ErrorCode e) { return name_of(e, error_codes); }

std::optional<UnitKind> parse_unit_kind(std::string_view s) { return parse_of<UnitKind>(s, kinds); }
std::optional<UnitStatus> parse_unit_status(std::string_view s) {
  return parse_of<UnitStatus>(s, statuses);
}
std::optional<Severity> parse_severity(std::string_view s) {
  return parse_of<Severity>(s, severities);
}
std::optional<IncidentState> parse_incident_state(std::string_view s) {
  return parse_of<IncidentState>(s, incident_states);
}
std::optional<AssignmentState> parse_assignment_state(std::string_view s) {
  return parse_of<AssignmentState>(s, assignment_states);
}
std::optional<Task> parse_task(std::string_view s) { return parse_of<Task>(s, tasks); }

}  // namespace dispatch::engine
