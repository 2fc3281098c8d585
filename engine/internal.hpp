// Helpers shared by the engine's rooms (not part of its public API).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "engine/engine.hpp"

namespace dispatch::engine::detail {

inline const Actor system_actor{"system", "dispatchd"};

inline Actor actor_of(const Origin& o) {
  if (!o.who) return system_actor;
  return Actor{o.who->role, o.who->name};
}

inline std::string make_id(char prefix, std::uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%c-%06llu", prefix, static_cast<unsigned long long>(seq));
  return buf;
}

inline std::uint64_t seq_of(std::string_view id) {
  const auto dash = id.find('-');
  if (dash == std::string_view::npos) return 0;
  std::uint64_t v = 0;
  for (char c : id.substr(dash + 1)) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

// Counts UTF-8 code points, and cuts a string to at most n of them.
inline std::string utf8_truncate(const std::string& s, std::size_t n) {
  std::size_t count = 0, i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (count == n) return s.substr(0, i);
    i += len;
    ++count;
  }
  return s;
}

inline std::uint8_t kind_bit(UnitKind k) { return static_cast<std::uint8_t>(1u << static_cast<int>(k)); }

inline double eta_for(UnitKind kind, double metres) {
  return kind == UnitKind::heli ? geo::air_eta_s(metres) : geo::ground_eta_s(metres);
}

}  // namespace dispatch::engine::detail
