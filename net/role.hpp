// Who a connection is: one enum and one table (paths, the token roles that open them,
// the messages each may send, the limits each gets). Pure data; no Beast.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace dispatch::net {

enum class Role : std::uint8_t { console, reporter, unit, gateway, pager, insurer, station };
inline constexpr std::size_t role_count = 7;

struct RoleInfo {
  Role role;
  std::string_view name;       // wire and metric name; also the token's "role"
  std::string_view ws_path;    // the WebSocket path this role opens
  // The message types this role may send (space-separated, padded with spaces).
  std::string_view messages;
  // Outgoing bytes queued before the connection is closed with 1008 (consoles: positions
  // are held back above the soft limit, see ConsoleFeed).
  std::size_t max_queued_bytes;
  // Message rate: a gateway speaks for many units, so it may send many positions.
  bool bulk;
};

inline constexpr std::array<RoleInfo, role_count> role_table{{
    {Role::console, "console", "/ws/console", " report assign cancel liability close escalate clear_hazard ", 16u << 20, false},
    {Role::reporter, "reporter", "/ws/report", " report ", 1u << 20, false},
    {Role::unit, "unit", "/ws/unit", " position status ack decline arrived cleared rescue ", 1u << 20, false},
    {Role::gateway, "gateway", "/ws/unit", " position status ack decline arrived cleared rescue ", 4u << 20, true},
    {Role::pager, "pager", "/ws/pager", " ack delivered ", 1u << 20, false},
    {Role::insurer, "insurer", "/ws/insurer", " claim_paid ", 1u << 20, false},
    // A rural traffic-safety station (contract v2 section 10); its token names its station.
    {Role::station, "station", "/ws/station", " sighting hazard report ", 1u << 20, false},
}};

constexpr const RoleInfo& info(Role r) { return role_table[static_cast<std::size_t>(r)]; }
constexpr std::string_view to_string(Role r) { return info(r).name; }

constexpr std::optional<Role> parse_role(std::string_view s) {
  for (const auto& r : role_table)
    if (r.name == s) return r.role;
  return std::nullopt;
}

// May a connection of this role send a message of this type? (A whole word of the list:
// not empty, no spaces, so neither " report" nor "report assign" matches.)
constexpr bool may_send(Role r, std::string_view type) {
  if (type.empty() || type.find(' ') != std::string_view::npos) return false;
  const std::string_view m = info(r).messages;
  for (auto pos = m.find(type); pos != std::string_view::npos; pos = m.find(type, pos + 1))
    if (pos > 0 && pos + type.size() < m.size() && m[pos - 1] == ' ' && m[pos + type.size()] == ' ')
      return true;
  return false;
}

// The role a token of role `token_role` takes on `path`, or nullopt when that token does
// not open that path (a `unit` or `gateway` token opens /ws/unit as itself).
constexpr std::optional<Role> role_for_path(Role token_role, std::string_view path) {
  return info(token_role).ws_path == path ? std::optional<Role>(token_role) : std::nullopt;
}

// Is this a WebSocket path of any role?
constexpr bool is_ws_path(std::string_view path) {
  for (const auto& r : role_table)
    if (r.ws_path == path) return true;
  return false;
}

}  // namespace dispatch::net
