#include "geo/nmea.hpp"

#include <charconv>
#include <chrono>
#include <span>
#include <vector>

namespace dispatch::geo {

namespace {

constexpr std::int64_t day_ms = 86400LL * 1000;
constexpr double knots_to_kmh = 1.852;

NmeaError error(NmeaErrc code, std::string reason) { return {code, std::move(reason)}; }

// Messages are assembled by hand: geo/ keeps to the standard library.
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  ((s += parts), ...);
  return s;
}
std::string hex2(unsigned v) {
  constexpr char digits[] = "0123456789ABCDEF";
  return {digits[(v >> 4) & 0xf], digits[v & 0xf]};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool all_digits(std::string_view s) {
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto comma = s.find(',');
    out.push_back(s.substr(0, comma));
    if (comma == std::string_view::npos) return out;
    s.remove_prefix(comma + 1);
  }
}

// Unsigned decimal ("12", "0.35", ".5"); NMEA numbers that cannot be negative.
std::optional<double> unsigned_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  bool digit = false;
  int dots = 0;
  for (char c : s) {
    if (c == '.') ++dots;
    else if (is_digit(c)) digit = true;
    else return std::nullopt;
  }
  if (!digit || dots > 1) return std::nullopt;
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// hhmmss with an optional fraction, to milliseconds since midnight (rounded).
std::optional<std::int32_t> time_of_day(std::string_view s) {
  const auto dot = s.find('.');
  const auto whole = s.substr(0, dot);
  if (whole.size() != 6 || !all_digits(whole)) return std::nullopt;
  const int hh = (whole[0] - '0') * 10 + (whole[1] - '0');
  const int mm = (whole[2] - '0') * 10 + (whole[3] - '0');
  const int ss = (whole[4] - '0') * 10 + (whole[5] - '0');
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;  // 60: leap second
  int ms = 0;
  if (dot != std::string_view::npos) {
    const auto frac = s.substr(dot + 1);
    if (!all_digits(frac)) return std::nullopt;
    // Three digits make the milliseconds, the fourth rounds them.
    int scale = 100;
    for (std::size_t i = 0; i < frac.size() && i < 3; ++i, scale /= 10)
      ms += (frac[i] - '0') * scale;
    if (frac.size() > 3 && frac[3] >= '5') ++ms;
  }
  return ((hh * 60 + mm) * 60 + ss) * 1000 + ms;
}

// "ddmm.mmmm" / "dddmm.mmmm" plus hemisphere letter, to signed decimal degrees.
std::optional<double> coordinate(std::string_view value, std::string_view hemi, bool is_lat) {
  const auto dot = value.find('.');
  const auto whole = value.substr(0, dot);
  if (whole.size() < 2 || whole.size() > (is_lat ? 4u : 5u) || !all_digits(whole))
    return std::nullopt;
  const auto deg_digits = whole.substr(0, whole.size() - 2);
  int deg = 0;
  for (char c : deg_digits) deg = deg * 10 + (c - '0');
  const auto minutes = unsigned_number(value.substr(whole.size() - 2));
  if (!minutes || *minutes >= 60) return std::nullopt;
  double v = deg + *minutes / 60.0;
  if (v > (is_lat ? 90.0 : 180.0)) return std::nullopt;
  if (hemi.size() != 1) return std::nullopt;
  const char h = hemi[0];
  if (is_lat ? (h != 'N' && h != 'S') : (h != 'E' && h != 'W')) return std::nullopt;
  if (h == 'S' || h == 'W') v = -v;
  return v;
}

// Call after fix.quality is known: with a fix the coordinates must be right, without
// one an unreadable leftover (an unlocked SiRF-II writes 360 degrees of latitude) is
// simply no position.
std::optional<NmeaError> read_position(NmeaFix& fix, std::span<const std::string_view> f) {
  // f: lat, N/S, lon, E/W
  const auto lat = coordinate(f[0], f[1], true);
  const auto lon = coordinate(f[2], f[3], false);
  if (lat && lon) {
    fix.pos = LatLon{*lat, *lon};
    return std::nullopt;
  }
  if (fix.quality == 0) return std::nullopt;
  if (!lat) return error(NmeaErrc::bad_field, cat(fix.type, ": bad latitude '", f[0], ",", f[1], "'"));
  return error(NmeaErrc::bad_field, cat(fix.type, ": bad longitude '", f[2], ",", f[3], "'"));
}

std::optional<NmeaError> read_time(NmeaFix& fix, std::string_view f) {
  if (f.empty()) return std::nullopt;  // receivers without a fix often leave it out
  fix.time_of_day_ms = time_of_day(f);
  if (!fix.time_of_day_ms)
    return error(NmeaErrc::bad_field, cat(fix.type, ": bad time '", f, "'"));
  return std::nullopt;
}

// A malformed or impossible date is left unknown rather than rejecting the sentence:
// receivers hit by the 2019 week rollover write years like "-1" (Telit HE910) while
// their position is still good, and gpsd keeps such positions too.
std::optional<NmeaDate> checked_date(NmeaDate d) {
  if (days_from_civil(d)) return d;
  return std::nullopt;
}

std::optional<NmeaError> parse_rmc(NmeaFix& fix, const std::vector<std::string_view>& f) {
  // RMC,time,status,lat,N/S,lon,E/W,knots,course,ddmmyy,magvar,E/W[,mode[,navstatus]]
  if (f.size() < 10)
    return error(NmeaErrc::bad_field, cat("RMC: ", std::to_string(f.size()), " fields, at least 10 needed"));
  if (auto e = read_time(fix, f[1])) return e;
  const auto status = f[2];
  if (status != "A" && status != "V" && !status.empty())
    return error(NmeaErrc::bad_field, cat("RMC: bad status '", status, "'"));
  // NMEA 2.3 mode 'N' (no fix) overrides a status of A.
  const bool mode_no_fix = f.size() > 12 && f[12] == "N";
  fix.quality = (status == "A" && !mode_no_fix) ? 1 : 0;
  if (auto e = read_position(fix, std::span(f).subspan(3, 4))) return e;
  if (!f[7].empty()) {
    const auto knots = unsigned_number(f[7]);
    if (!knots) return error(NmeaErrc::bad_field, cat("RMC: bad speed '", f[7], "'"));
    fix.speed_kmh = *knots * knots_to_kmh;
  }
  if (!f[8].empty()) {
    const auto course = unsigned_number(f[8]);
    if (!course || *course > 360)
      return error(NmeaErrc::bad_field, cat("RMC: bad course '", f[8], "'"));
    fix.heading = *course == 360 ? 0.0 : *course;
  }
  const auto ddmmyy = f[9];
  if (ddmmyy.size() == 6 && all_digits(ddmmyy)) {
    const int dd = (ddmmyy[0] - '0') * 10 + (ddmmyy[1] - '0');
    const int mm = (ddmmyy[2] - '0') * 10 + (ddmmyy[3] - '0');
    const int yy = (ddmmyy[4] - '0') * 10 + (ddmmyy[5] - '0');
    // Two-digit years span 1981..2080, as in gpsd: "99" after the 2019 rollover is
    // 1999, which the tracker then moves forward by 1024 weeks.
    const int year = 2000 + yy > 2080 ? 1900 + yy : 2000 + yy;
    fix.date = checked_date({year, mm, dd});
  }
  return std::nullopt;
}

std::optional<NmeaError> parse_gga(NmeaFix& fix, const std::vector<std::string_view>& f) {
  // GGA,time,lat,N/S,lon,E/W,quality,sats,hdop,alt,M,sep,M,age,station
  if (f.size() < 7)
    return error(NmeaErrc::bad_field, cat("GGA: ", std::to_string(f.size()), " fields, at least 7 needed"));
  if (auto e = read_time(fix, f[1])) return e;
  const auto q = f[6];
  if (q.size() > 1 || (q.size() == 1 && !is_digit(q[0])))
    return error(NmeaErrc::bad_field, cat("GGA: bad fix quality '", q, "'"));
  fix.quality = q.empty() ? 0 : q[0] - '0';
  if (auto e = read_position(fix, std::span(f).subspan(2, 4))) return e;
  if (f.size() > 7 && !f[7].empty()) {
    if (f[7].size() > 3 || !all_digits(f[7]))
      return error(NmeaErrc::bad_field, cat("GGA: bad satellite count '", f[7], "'"));
    int n = 0;
    for (char c : f[7]) n = n * 10 + (c - '0');
    fix.satellites = n;
  }
  return std::nullopt;
}

std::optional<NmeaError> parse_zda(NmeaFix& fix, const std::vector<std::string_view>& f) {
  // ZDA,time,dd,mm,yyyy,zone hours,zone minutes
  if (f.size() < 5)
    return error(NmeaErrc::bad_field, cat("ZDA: ", std::to_string(f.size()), " fields, at least 5 needed"));
  if (auto e = read_time(fix, f[1])) return e;
  const auto num = [](std::string_view s, std::size_t width) -> std::optional<int> {
    if (s.size() != width || !all_digits(s)) return std::nullopt;
    int n = 0;
    for (char c : s) n = n * 10 + (c - '0');
    return n;
  };
  const auto dd = num(f[2], 2), mm = num(f[3], 2), yyyy = num(f[4], 4);
  if (dd && mm && yyyy) fix.date = checked_date({*yyyy, *mm, *dd});
  return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> days_from_civil(const NmeaDate& d) {
  using namespace std::chrono;
  if (d.month < 1 || d.month > 12 || d.day < 1 || d.day > 31) return std::nullopt;
  const year_month_day ymd{year{d.year}, month{static_cast<unsigned>(d.month)},
                           day{static_cast<unsigned>(d.day)}};
  if (!ymd.ok()) return std::nullopt;
  return sys_days{ymd}.time_since_epoch().count();
}

std::optional<std::int64_t> NmeaFix::time_ms() const {
  if (!date || !time_of_day_ms) return std::nullopt;
  const auto days = days_from_civil(*date);
  if (!days) return std::nullopt;
  return *days * day_ms + *time_of_day_ms;
}

std::uint8_t nmea_checksum(std::string_view body) {
  std::uint8_t sum = 0;
  for (char c : body) sum ^= static_cast<std::uint8_t>(c);
  return sum;
}

std::string nmea_sentence(std::string_view body) {
  return cat("$", body, "*", hex2(nmea_checksum(body)));
}

std::variant<NmeaFix, NmeaError> parse_nmea(std::string_view line) {
  line = trim(line);
  if (line.empty()) return error(NmeaErrc::empty, "empty line");
  if (line.front() != '$')
    return error(NmeaErrc::no_start, cat("does not start with '$' (starts with 0x",
                                                 hex2(static_cast<unsigned char>(line.front())), ")"));
  const auto star = line.rfind('*');
  if (star == std::string_view::npos) return error(NmeaErrc::no_checksum, "no checksum ('*hh' missing)");
  const auto body = line.substr(1, star - 1);
  const auto given = line.substr(star + 1);
  for (std::size_t i = 0; i < body.size(); ++i) {
    const auto c = static_cast<unsigned char>(body[i]);
    if (c == '$' || c == '!')
      return error(NmeaErrc::garbled,
                   cat("stray '", std::string(1, body[i]), "' at column ", std::to_string(i + 2),
                       ": two sentences run together"));
    if (c < 0x20 || c > 0x7e || c == '*')
      return error(NmeaErrc::garbled, cat("byte 0x", hex2(c), " at column ", std::to_string(i + 2)));
  }
  if (given.size() != 2 || hex_value(given[0]) < 0 || hex_value(given[1]) < 0)
    return error(NmeaErrc::bad_checksum, cat("checksum field '", given, "' is not two hex digits"));
  const int expected = hex_value(given[0]) * 16 + hex_value(given[1]);
  const int computed = nmea_checksum(body);
  if (expected != computed)
    return error(NmeaErrc::bad_checksum,
                 cat("checksum mismatch: sentence says ", hex2(static_cast<unsigned>(expected)),
                     ", content gives ", hex2(static_cast<unsigned>(computed))));

  const auto f = split(body);
  const auto address = f[0];
  if (!address.empty() && address[0] == 'P')  // proprietary: P + maker + type, any length
    return error(NmeaErrc::unsupported, cat("unsupported proprietary sentence ", address));
  if (address.size() != 5)
    return error(NmeaErrc::bad_address, cat("bad address '", address, "' (talker and type, 5 letters)"));
  for (char c : address)
    if (!(c >= 'A' && c <= 'Z') && !is_digit(c))
      return error(NmeaErrc::bad_address, cat("bad address '", address, "'"));

  NmeaFix fix;
  fix.talker = std::string(address.substr(0, 2));
  fix.type = std::string(address.substr(2));
  std::optional<NmeaError> e;
  if (fix.type == "RMC") e = parse_rmc(fix, f);
  else if (fix.type == "GGA") e = parse_gga(fix, f);
  else if (fix.type == "ZDA") e = parse_zda(fix, f);
  else return error(NmeaErrc::unsupported, cat("unsupported sentence ", fix.type));
  if (e) return *std::move(e);
  return fix;
}

std::optional<std::int64_t> NmeaTracker::raw_time(const NmeaFix& fix) const {
  if (fix.date) {
    const auto days = days_from_civil(*fix.date);
    if (!days) return std::nullopt;
    // A date without a time anchors at noon, so that any time of day that follows
    // falls on that same date.
    return *days * day_ms + fix.time_of_day_ms.value_or(day_ms / 2);
  }
  if (!fix.time_of_day_ms || !anchor_ms_) return std::nullopt;
  const std::int64_t anchor_day = *anchor_ms_ >= 0 ? *anchor_ms_ / day_ms : (*anchor_ms_ - day_ms + 1) / day_ms;
  std::int64_t t = anchor_day * day_ms + *fix.time_of_day_ms;
  if (t - *anchor_ms_ < -day_ms / 2) t += day_ms;
  else if (t - *anchor_ms_ > day_ms / 2) t -= day_ms;
  return t;
}

std::optional<std::int64_t> NmeaTracker::resolve(const NmeaFix& fix) const {
  auto t = raw_time(fix);
  if (!t || !fix.time_of_day_ms) return std::nullopt;
  if (*t < not_before_ms_) {
    const auto periods = (not_before_ms_ - *t + gps_rollover_ms - 1) / gps_rollover_ms;
    *t += periods * gps_rollover_ms;
  }
  return t;
}

std::optional<NmeaPosition> NmeaTracker::update(const NmeaFix& fix) {
  const auto ts = resolve(fix);
  if (const auto raw = raw_time(fix)) anchor_ms_ = raw;
  if (!ts || !fix.has_fix()) return std::nullopt;
  return NmeaPosition{*fix.pos, *ts, fix.speed_kmh, fix.heading, fix.type};
}

}  // namespace dispatch::geo
