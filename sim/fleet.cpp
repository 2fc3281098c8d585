#include "sim/fleet.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <random>

#include "geo/zones.hpp"

namespace json = boost::json;

namespace dispatch::sim {

namespace {
struct Airfield {
  const char* name;
  geo::LatLon pos;
};
// Real airfields (OurAirports, public domain).
constexpr Airfield airfields[] = {{"Jiangbei", {29.712254, 106.651895}},
                                  {"Yongchuan Da'an", {29.356667, 106.010441}},
                                  {"Wanzhou Wuqiao", {30.8017, 108.433}},
                                  {"Qianjiang Wulingshan", {29.5133333333, 108.831111111}}};
}  // namespace

std::vector<SimUnit> make_fleet(const geo::Zones& zones, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Weight: area, times 25 in the urban core (most traffic and most accidents are there).
  std::vector<double> weights;
  for (std::size_t i = 0; i < zones.size(); ++i)
    weights.push_back(zones.zone(i).area_km2 * (zones.zone(i).urban ? 25.0 : 1.0));
  std::discrete_distribution<std::size_t> pick(weights.begin(), weights.end());
  const std::size_t helis = std::min<std::size_t>(4, std::max<std::size_t>(1, n / 200));
  const std::size_t cars = n / 10;
  std::vector<SimUnit> out;
  out.reserve(n);
  std::size_t moto_no = 0, car_no = 0;
  for (std::size_t i = 0; i < n; ++i) {
    SimUnit u;
    if (i < helis) {
      u.kind = "heli";
      u.id = fmt::format("H{}", i + 1);
      u.callsign = fmt::format("渝救援{}", i + 1);
      u.base = airfields[i % std::size(airfields)].pos;
      u.start = *u.base;
      u.zone = zones.locate(u.start).value_or(0);
      out.push_back(std::move(u));
      continue;
    }
    u.zone = pick(rng);
    u.start = zones.random_point(u.zone, rng);
    if (i < helis + cars) {
      u.kind = "car";
      u.id = fmt::format("C{:04}", ++car_no);
      u.callsign = fmt::format("渝查勘{:02}", car_no);
    } else {
      u.kind = "moto";
      u.id = fmt::format("M{:04}", ++moto_no);
      u.callsign = fmt::format("渝警保{:03}", moto_no);
      u.capcode = fmt::format("{}", 1200000 + moto_no);
    }
    out.push_back(std::move(u));
  }
  return out;
}

std::string fleet_json(const std::vector<SimUnit>& units) {
  std::string s = "{\"units\": [\n";
  for (std::size_t i = 0; i < units.size(); ++i) {
    const auto& u = units[i];
    fmt::format_to(std::back_inserter(s), R"(  {{"id": "{}", "kind": "{}", "callsign": "{}")", u.id, u.kind, u.callsign);
    if (!u.capcode.empty()) fmt::format_to(std::back_inserter(s), R"(, "capcode": "{}")", u.capcode);
    if (u.base) fmt::format_to(std::back_inserter(s), R"(, "base": {{"lat": {:.6f}, "lon": {:.6f}}})", u.base->lat, u.base->lon);
    fmt::format_to(std::back_inserter(s), R"(, "start": {{"lat": {:.6f}, "lon": {:.6f}}}}})", u.start.lat, u.start.lon);
    s += i + 1 < units.size() ? ",\n" : "\n";
  }
  return s + "]}\n";
}

std::vector<SimUnit> parse_fleet_json(const std::string& text) {
  std::vector<SimUnit> out;
  json::value v = json::parse(text);
  for (const auto& e : v.at("units").as_array()) {
    const auto& o = e.as_object();
    SimUnit u;
    u.id = std::string(o.at("id").as_string());
    u.kind = std::string(o.at("kind").as_string());
    if (auto* c = o.if_contains("callsign")) u.callsign = std::string(c->as_string());
    if (auto* c = o.if_contains("capcode")) u.capcode = std::string(c->as_string());
    if (auto* b = o.if_contains("base"))
      u.base = geo::LatLon{b->at("lat").to_number<double>(), b->at("lon").to_number<double>()};
    if (auto* s = o.if_contains("start"))
      u.start = {s->at("lat").to_number<double>(), s->at("lon").to_number<double>()};
    else if (u.base)
      u.start = *u.base;
    else
      u.start = {29.5573, 106.5770};
    out.push_back(std::move(u));
  }
  return out;
}

std::string tokens_json() {
  return R"({"tokens": [
  {"token": "sim-console", "role": "console", "name": "sim-console"},
  {"token": "sim-reporter", "role": "reporter", "name": "sim-reporter"},
  {"token": "sim-gateway", "role": "gateway", "units": ["*"], "name": "sim-gateway"},
  {"token": "sim-pager", "role": "pager", "name": "sim-pager"},
  {"token": "sim-picc", "role": "insurer", "insurer": "PICC", "name": "PICC claims"},
  {"token": "sim-pingan", "role": "insurer", "insurer": "平安", "name": "平安 claims"},
  {"token": "sim-cpic", "role": "insurer", "insurer": "太平洋", "name": "太平洋 claims"}
]}
)";
}

std::int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int Histogram::bucket_of(std::int64_t us) {
  if (us < 1) return 0;
  // per_decade buckets a decade from 1 us (2.3% wide at 100).
  const int b = static_cast<int>(std::log10(static_cast<double>(us)) * per_decade) + 1;
  return std::min(b, buckets - 1);
}

std::int64_t Histogram::upper(int b) {
  if (b == 0) return 1;
  return static_cast<std::int64_t>(std::ceil(std::pow(10.0, static_cast<double>(b) / per_decade)));
}

void Histogram::add(std::int64_t us) {
  ++counts_[bucket_of(us)];
  ++count_;
  if (us > max_) max_ = us;
}

std::int64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  const auto want = static_cast<std::uint64_t>(std::ceil(p * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (int b = 0; b < buckets; ++b) {
    seen += counts_[b];
    // The last bucket holds everything past its lower bound: only the max is known there.
    if (seen >= want) return b == buckets - 1 ? max_ : std::min(upper(b), max_);
  }
  return max_;
}

}  // namespace dispatch::sim
