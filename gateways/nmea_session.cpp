#include "gateways/nmea_session.hpp"

namespace dispatch::gateways {

namespace {
std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}
}  // namespace

bool valid_unit_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

NmeaSession::NmeaSession(std::int64_t now_ms) : tracker_(now_ms - rollover_window_ms) {}

NmeaSession::Result NmeaSession::feed(std::string_view line) {
  line = trim(line);
  if (line.empty()) return Skipped{};
  if (!unit_) {
    constexpr std::string_view prefix = "UNIT ";
    if (!line.starts_with(prefix))
      return Rejected{"the first line must be \"UNIT <id>\"", true};
    const auto id = trim(line.substr(prefix.size()));
    if (!valid_unit_id(id)) return Rejected{"bad unit id \"" + std::string(id) + "\"", true};
    unit_ = std::string(id);
    return Identified{*unit_};
  }
  ++sentences_;
  const auto parsed = geo::parse_nmea(line);
  if (const auto* e = std::get_if<geo::NmeaError>(&parsed)) {
    if (e->code == geo::NmeaErrc::unsupported) return Skipped{};
    ++rejected_;
    return Rejected{e->reason, false};
  }
  const auto pos = tracker_.update(std::get<geo::NmeaFix>(parsed));
  if (!pos) return Skipped{};
  const bool motion = pos->speed_kmh || pos->heading;
  if (last_ts_ && (pos->ts_ms < *last_ts_ || (pos->ts_ms == *last_ts_ && (!motion || last_had_motion_))))
    return Skipped{};
  last_ts_ = pos->ts_ms;
  last_had_motion_ = motion;
  ++positions_;
  return Position{*unit_, pos->pos.lat, pos->pos.lon, pos->ts_ms, pos->speed_kmh, pos->heading};
}

}  // namespace dispatch::gateways
