// NMEA 0183 position sentences (RMC, GGA, and ZDA for the date), parsed without I/O.
//
// A radio AVL feed or a receiver on a serial line sends one sentence per line:
//   $GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010413,,*26
// parse_nmea() turns one line into an NmeaFix or an NmeaError with a reason;
// NmeaTracker joins GGA's time of day with the date last seen (RMC or ZDA) so that
// every fix gets a full UTC timestamp, as gpsd does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "geo/geo.hpp"

namespace dispatch::geo {

struct NmeaDate {
  int year = 0;  // four digits: RMC's two-digit year is read as 1981..2080
  int month = 0;
  int day = 0;
  friend bool operator==(const NmeaDate&, const NmeaDate&) = default;
};

struct NmeaFix {
  std::string talker;  // "GP", "GN", "BD", "GB", "GL", "GA", ...
  std::string type;    // "RMC", "GGA" or "ZDA"
  std::optional<std::int32_t> time_of_day_ms;  // UTC milliseconds since midnight
  std::optional<NmeaDate> date;                // RMC and ZDA only
  // The coordinates as written. Without a fix (see has_fix) they are the receiver's
  // last guess and may be garbage; they are kept only when they read as coordinates.
  std::optional<LatLon> pos;
  std::optional<double> speed_kmh;  // RMC speed over ground
  std::optional<double> heading;    // RMC course over ground, degrees true
  // GGA fix quality (0 none, 1 GPS, 2 DGPS, 4/5 RTK, 6 dead reckoning, 8 simulation;
  // an empty field counts as 0, as gpsd reads it); RMC: 1 when status is A and the
  // mode is not N, else 0; ZDA: 0.
  int quality = 0;
  std::optional<int> satellites;  // GGA

  // The receiver vouches for pos.
  bool has_fix() const { return quality > 0 && pos.has_value(); }
  // UTC milliseconds since the Unix epoch, when the sentence carries both date and time.
  std::optional<std::int64_t> time_ms() const;
};

enum class NmeaErrc {
  empty,              // blank line
  no_start,           // does not begin with '$'
  no_checksum,        // no "*hh" at the end
  bad_checksum,       // checksum field is not two hex digits, or does not match
  garbled,            // a stray '$' or a control byte inside: lines run together or noise
  bad_address,        // talker + sentence type is not 5 letters
  unsupported,        // a well-formed sentence this parser does not read (GSV, VTG, ...)
  bad_field,          // a field of a supported sentence is malformed or out of range
};

struct NmeaError {
  NmeaErrc code = NmeaErrc::bad_field;
  std::string reason;
};

// One line (leading and trailing whitespace, CR and LF are ignored).
std::variant<NmeaFix, NmeaError> parse_nmea(std::string_view line);

// XOR of the bytes between '$' and '*'; useful to write sentences, e.g. in tests.
std::uint8_t nmea_checksum(std::string_view body);
// "$" + body + "*HH".
std::string nmea_sentence(std::string_view body);

// 1024 GPS weeks: receivers with the week-rollover bug report dates this far back.
inline constexpr std::int64_t gps_rollover_ms = 1024LL * 7 * 86400 * 1000;
// gpsd's own rule: a date before 2017-01-01 cannot be right while the leap second
// count is 18, so it is a rollover victim. Reproducing it makes gpsd's output an oracle.
inline constexpr std::int64_t gpsd_not_before_ms = 1483228800000LL;

// A fix with a full timestamp, what a gateway forwards.
struct NmeaPosition {
  LatLon pos;
  std::int64_t ts_ms = 0;  // UTC, Unix epoch milliseconds
  std::optional<double> speed_kmh;
  std::optional<double> heading;
  std::string type;  // sentence it came from
};

// Per receiver state: the day, which GGA lacks, and the rollover correction.
class NmeaTracker {
 public:
  // Timestamps earlier than not_before_ms are moved forward by whole GPS rollover
  // periods. A live gateway passes "now minus a few days": a true recent time stays
  // as it is and a rolled-back one lands on the right week.
  explicit NmeaTracker(std::int64_t not_before_ms = gpsd_not_before_ms)
      : not_before_ms_(not_before_ms) {}

  // Takes in any parsed sentence and returns the position when the sentence has a
  // fix and its full time is known. Dates come from RMC and ZDA; a time of day alone (GGA)
  // goes on the day of the last full time seen, or the next or previous one when it
  // is more than 12 hours away from it (midnight passed).
  std::optional<NmeaPosition> update(const NmeaFix& fix);
  // The full UTC time of a sentence given what the tracker knows, without changing it.
  std::optional<std::int64_t> resolve(const NmeaFix& fix) const;

 private:
  std::optional<std::int64_t> raw_time(const NmeaFix& fix) const;

  std::int64_t not_before_ms_;
  // Last full time seen, before rollover correction.
  std::optional<std::int64_t> anchor_ms_;
};

// Days since 1970-01-01 for a proleptic Gregorian date; nullopt when not a real date.
std::optional<std::int64_t> days_from_civil(const NmeaDate& d);

}  // namespace dispatch::geo
