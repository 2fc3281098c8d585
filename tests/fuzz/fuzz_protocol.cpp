// libFuzzer target for the wire protocol parser: any bytes, any role, never a crash,
// and every message ends up as exactly one of position, command or error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::string_view roles[] = {"unit", "gateway", "console", "reporter", "pager", ""};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dispatch::net::ParsedFrame frame;
  for (auto role : roles) {
    frame.clear();
    dispatch::net::parse_frame(text, role, frame);
    // A frame yields at least one outcome: a position, a command or an error.
    if (frame.positions.empty() && frame.commands.empty() && frame.errors.empty()) std::abort();
    for (const auto& p : frame.positions)
      if (p.unit.empty() || !(p.lat >= -90 && p.lat <= 90) || !(p.lon >= -180 && p.lon <= 180)) std::abort();
  }
  dispatch::engine::cmd::Report r;
  dispatch::engine::ev::Error e;
  dispatch::net::parse_report(text, r, e);
  return 0;
}
