// One error catalog: each code's wire name (contract section 2), HTTP status for the REST
// side, and metric label. Pure data; no Beast.
#pragma once

#include <array>
#include <string_view>

#include "engine/types.hpp"

namespace dispatch::net {

struct ErrorInfo {
  engine::ErrorCode code;
  std::string_view wire;    // "code" in {"type":"error",...}
  unsigned http_status;     // the REST answer
  std::string_view metric;  // label of dispatch_errors_total
};

inline constexpr std::size_t error_count = 10;
inline constexpr std::array<ErrorInfo, error_count> error_catalog{{
    {engine::ErrorCode::bad_json, "bad_json", 400, "bad_json"},
    {engine::ErrorCode::bad_message, "bad_message", 400, "bad_message"},
    {engine::ErrorCode::unknown_type, "unknown_type", 400, "unknown_type"},
    {engine::ErrorCode::unknown_unit, "unknown_unit", 404, "unknown_unit"},
    {engine::ErrorCode::unknown_incident, "unknown_incident", 404, "unknown_incident"},
    {engine::ErrorCode::unknown_assignment, "unknown_assignment", 404, "unknown_assignment"},
    {engine::ErrorCode::forbidden, "forbidden", 403, "forbidden"},
    {engine::ErrorCode::conflict, "conflict", 409, "conflict"},
    {engine::ErrorCode::rate_limited, "rate_limited", 429, "rate_limited"},
    {engine::ErrorCode::unavailable, "unavailable", 503, "unavailable"},
}};

constexpr const ErrorInfo& info(engine::ErrorCode c) {
  return error_catalog[static_cast<std::size_t>(c)];
}
constexpr std::size_t index(engine::ErrorCode c) { return static_cast<std::size_t>(c); }

// The catalog lists every code in the enum's order.
static_assert([] {
  for (std::size_t i = 0; i < error_catalog.size(); ++i)
    if (static_cast<std::size_t>(error_catalog[i].code) != i) return false;
  return true;
}());

}  // namespace dispatch::net
