#include "gateways/gpsd.hpp"

#include <chrono>
#include <cstdio>

#include <boost/json.hpp>

namespace dispatch::gateways {

namespace json = boost::json;

namespace {
std::optional<double> number(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_number()) return std::nullopt;
  return v->to_number<double>();
}
std::string string_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return {};
  return std::string(v->get_string());
}
}  // namespace

std::optional<std::int64_t> parse_iso8601_ms(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, n = 0;
  const std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
    return std::nullopt;
  std::size_t i = static_cast<std::size_t>(n);
  int ms = 0;
  if (i < str.size() && str[i] == '.') {
    int scale = 100;
    for (++i; i < str.size() && str[i] >= '0' && str[i] <= '9'; ++i) {
      ms += (str[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (i >= str.size() || str[i] != 'Z' || i + 1 != str.size()) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  const auto days = sys_days{ymd}.time_since_epoch().count();
  return static_cast<std::int64_t>(days) * 86400000 + ((h * 60 + mi) * 60 + sec) * 1000LL + ms;
}

std::variant<GpsdTpv, GpsdOther, GpsdBad> parse_gpsd_line(std::string_view line) {
  json::error_code ec;
  const auto v = json::parse(line, ec);
  if (ec) return GpsdBad{"not JSON: " + ec.message()};
  if (!v.is_object()) return GpsdBad{"not a JSON object"};
  const auto& o = v.get_object();
  const auto cls = string_field(o, "class");
  if (cls.empty()) return GpsdBad{"no \"class\""};
  if (cls != "TPV") {
    if (cls == "ERROR") return GpsdOther{cls, string_field(o, "message")};
    if (cls == "DEVICE") return GpsdOther{cls, string_field(o, "path")};
    return GpsdOther{cls, {}};
  }
  GpsdTpv t;
  t.device = string_field(o, "device");
  t.mode = static_cast<int>(number(o, "mode").value_or(0));
  if (const auto time = string_field(o, "time"); !time.empty()) {
    t.time_ms = parse_iso8601_ms(time);
    if (!t.time_ms) return GpsdBad{"TPV with a bad time \"" + time + "\""};
  }
  t.lat = number(o, "lat");
  t.lon = number(o, "lon");
  if ((t.lat && (*t.lat < -90 || *t.lat > 90)) || (t.lon && (*t.lon < -180 || *t.lon > 180)))
    return GpsdBad{"TPV position out of range"};
  if (const auto speed = number(o, "speed")) t.speed_kmh = *speed * 3.6;
  t.track = number(o, "track");
  return t;
}

bool DeviceMap::add(std::string_view spec) {
  const auto eq = spec.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size()) return false;
  by_path_[std::string(spec.substr(0, eq))] = std::string(spec.substr(eq + 1));
  return true;
}

std::optional<std::string> DeviceMap::unit_for(const std::string& device) const {
  if (const auto it = by_path_.find(device); it != by_path_.end()) return it->second;
  return default_;
}

}  // namespace dispatch::gateways
