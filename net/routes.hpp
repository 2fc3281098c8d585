// REST as a route table: (method, pattern, roles, handler). Matching is pure code over
// the decoded path segments (net/http_target.hpp); the handlers live in rest.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/role.hpp"

namespace dispatch::net {

enum class Method : std::uint8_t { get, head, post, other };

enum class RouteId : std::uint8_t {
  healthz, metrics, geo_districts, geo_places,
  api_units, api_unit_track, api_stats, api_incidents, api_incident, post_incident,
  api_hazards, api_vehicle,
  geo_roads, api_assignment_route,
  api_config, api_incidents_csv,
};

// Roles as a bit set; 0 = no token needed.
using RoleMask = std::uint32_t;
constexpr RoleMask mask(Role r) { return RoleMask{1} << static_cast<unsigned>(r); }

struct Route {
  Method method;            // GET routes answer HEAD too
  std::string_view pattern; // "/api/incidents/{}": "{}" matches one segment
  RoleMask roles;
  RouteId id;
};

inline constexpr std::array<Route, 16> route_table{{
    {Method::get, "/healthz", 0, RouteId::healthz},
    {Method::get, "/metrics", 0, RouteId::metrics},
    {Method::get, "/geo/districts.geojson", 0, RouteId::geo_districts},
    {Method::get, "/geo/places.geojson", 0, RouteId::geo_places},
    {Method::get, "/api/units", mask(Role::console), RouteId::api_units},
    {Method::get, "/api/units/{}/track", mask(Role::console), RouteId::api_unit_track},
    {Method::get, "/api/stats", mask(Role::console), RouteId::api_stats},
    {Method::get, "/api/incidents", mask(Role::console), RouteId::api_incidents},
    {Method::get, "/api/incidents/{}", mask(Role::console), RouteId::api_incident},
    {Method::post, "/api/incidents", mask(Role::console) | mask(Role::reporter), RouteId::post_incident},
    // Rural stations (contract v2 section 10).
    {Method::get, "/api/hazards", mask(Role::console), RouteId::api_hazards},
    {Method::get, "/api/vehicles/{}", mask(Role::console), RouteId::api_vehicle},
    {Method::get, "/geo/roads.geojson", 0, RouteId::geo_roads},
    {Method::get, "/api/assignments/{}/route", mask(Role::console), RouteId::api_assignment_route},
    {Method::get, "/api/config", mask(Role::console), RouteId::api_config},
    {Method::get, "/api/incidents.csv", mask(Role::console), RouteId::api_incidents_csv},
}};

struct RouteMatch {
  enum class Kind : std::uint8_t { found, not_found, method_not_allowed } kind = Kind::not_found;
  const Route* route = nullptr;
  std::vector<std::string> captures;  // what each "{}" matched (decoded)
  std::string allow;                  // method_not_allowed: the Allow header
};

// Matches decoded path segments ("/a/b" -> {"a","b"}) against the table.
inline RouteMatch match_route(Method method, std::span<const std::string> segments) {
  RouteMatch m;
  for (const auto& r : route_table) {
    std::vector<std::string> caps;
    std::string_view p = r.pattern.substr(1);
    std::size_t i = 0;
    bool ok = true;
    while (ok) {
      const auto slash = p.find('/');
      const std::string_view part = p.substr(0, slash);
      if (i >= segments.size()) ok = false;
      else if (part == "{}") {
        if (segments[i].empty()) ok = false;
        else caps.push_back(segments[i]);
      } else if (part != segments[i]) ok = false;
      ++i;
      if (slash == std::string_view::npos) break;
      p = p.substr(slash + 1);
    }
    if (!ok || i != segments.size()) continue;
    const bool method_ok = r.method == method || (r.method == Method::get && method == Method::head);
    if (method_ok) {
      m.kind = RouteMatch::Kind::found;
      m.route = &r;
      m.captures = std::move(caps);
      return m;
    }
    m.kind = RouteMatch::Kind::method_not_allowed;
    const std::string_view name = r.method == Method::get ? "GET, HEAD" : r.method == Method::post ? "POST" : "";
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += name;
  }
  return m;
}

}  // namespace dispatch::net
