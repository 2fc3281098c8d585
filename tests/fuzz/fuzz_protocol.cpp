// libFuzzer target for the wire protocol parser: any bytes, any role, never a crash,
// every message ends up as exactly one of position, command or error, and the fast path
// for positions gives what the general (DOM) path gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "net/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::string_view roles[] = {"unit", "gateway", "console", "reporter", "pager", ""};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dispatch::net::ParsedFrame frame, general;
  for (auto role : roles) {
    frame.clear();
    dispatch::net::parse_frame(text, role, frame);
    // A frame yields at least one outcome: a position, a command or an error.
    if (frame.positions.empty() && frame.commands.empty() && frame.errors.empty()) std::abort();
    for (const auto& p : frame.positions)
      if (p.unit.empty() || !(p.lat >= -90 && p.lat <= 90) || !(p.lon >= -180 && p.lon <= 180)) std::abort();
    general.clear();
    const auto r = role.empty() ? std::nullopt : dispatch::net::parse_role(role);
    dispatch::net::parse_frame_general(text, r, general);
    if (frame.messages != general.messages || frame.types != general.types ||
        frame.positions.size() != general.positions.size() || frame.commands.size() != general.commands.size() ||
        frame.errors.size() != general.errors.size())
      std::abort();
    for (std::size_t i = 0; i < frame.positions.size(); ++i) {
      const auto &a = frame.positions[i], &b = general.positions[i];
      if (a.unit != b.unit || a.lat != b.lat || a.lon != b.lon || a.ts != b.ts || a.speed_kmh != b.speed_kmh ||
          a.heading != b.heading)
        std::abort();
    }
    for (std::size_t i = 0; i < frame.errors.size(); ++i)
      if (frame.errors[i].code != general.errors[i].code || frame.errors[i].message != general.errors[i].message ||
          frame.errors[i].ref != general.errors[i].ref)
        std::abort();
  }
  dispatch::engine::cmd::Report r;
  dispatch::engine::ev::Error e;
  dispatch::net::parse_report(text, r, e);
  return 0;
}
