// One plain-NMEA TCP connection of the AVL gateway, without the socket: the first
// line names the unit ("UNIT M017"), every line after it is an NMEA sentence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "gateways/position.hpp"
#include "geo/nmea.hpp"

namespace dispatch::gateways {

class NmeaSession {
 public:
  // now_ms: the gateway's clock, to undo GPS week rollover (see geo::NmeaTracker).
  explicit NmeaSession(std::int64_t now_ms);

  struct Identified {
    std::string unit;
  };
  struct Skipped {};  // blank, unsupported, or no fix yet: normal in a stream
  struct Rejected {
    std::string reason;
    bool fatal = false;  // the connection should be closed
  };
  using Result = std::variant<Identified, Position, Skipped, Rejected>;

  // A receiver sends RMC and GGA for the same instant; the second one is forwarded
  // only when it adds speed or heading. Times going backwards are skipped too: the
  // server would ignore them.
  Result feed(std::string_view line);

  const std::optional<std::string>& unit() const { return unit_; }
  std::uint64_t sentences() const { return sentences_; }
  std::uint64_t positions() const { return positions_; }
  std::uint64_t rejected() const { return rejected_; }

 private:
  geo::NmeaTracker tracker_;
  std::optional<std::string> unit_;
  std::optional<std::int64_t> last_ts_;
  bool last_had_motion_ = false;
  std::uint64_t sentences_ = 0, positions_ = 0, rejected_ = 0;
};

// A unit id as the first line may give it: 1 to 64 of A-Z a-z 0-9 _ - .
bool valid_unit_id(std::string_view id);

// A week back: a receiver's true time is never older than that, a rolled-back one is.
inline constexpr std::int64_t rollover_window_ms = 7LL * 86400 * 1000;

}  // namespace dispatch::gateways
