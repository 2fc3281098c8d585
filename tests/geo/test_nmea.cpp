// NMEA parsing checked against gpsd: the receiver logs of gpsd's regression suite and
// gpsd's own decoded output for them (the .chk files, JSON lines) are the oracle.
#include <doctest/doctest.h>

#include "tests/shared_data.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "geo/nmea.hpp"

namespace fs = std::filesystem;
using namespace dispatch::geo;

namespace {

const fs::path gpsd_dir = fs::path(DISPATCH_SHARED_DIR) / "data/nmea/gpsd";

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Log lines that are sentences (the logs open with '#' comment lines).
std::vector<std::string> sentences(const fs::path& log) {
  std::vector<std::string> out;
  for (auto& l : read_lines(log))
    if (!l.empty() && l[0] != '#') out.push_back(l);
  return out;
}

std::vector<fs::path> logs() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(gpsd_dir))
    if (e.path().extension() == ".log") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// "2019-04-07T00:02:31.420Z" -> Unix epoch milliseconds.
std::int64_t iso_ms(const std::string& s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  REQUIRE(std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%lfZ", &y, &mo, &d, &h, &mi, &sec) == 6);
  const auto days = days_from_civil({y, mo, d});
  REQUIRE(days);
  return *days * 86400000 + (h * 3600 + mi * 60) * 1000LL + std::llround(sec * 1000);
}

const NmeaFix& as_fix(const std::variant<NmeaFix, NmeaError>& r) {
  if (auto* e = std::get_if<NmeaError>(&r)) FAIL("unexpected error: " << e->reason);
  return std::get<NmeaFix>(r);
}

const NmeaError& as_error(const std::variant<NmeaFix, NmeaError>& r) {
  REQUIRE_MESSAGE(std::holds_alternative<NmeaError>(r), "a fix where an error was expected");
  return std::get<NmeaError>(r);
}

bool near(double a, double b) { return std::abs(a - b) <= 1e-6; }

}  // namespace

TEST_CASE("every gpsd TPV with a position is found among the parser's fixes") {
  DISPATCH_NEEDS_SHARED_DATA(gpsd_dir);
  const auto all = logs();
  REQUIRE(all.size() >= 25);
  int checked = 0, timed = 0;
  int garbled = 0;
  for (const auto& log : all) {
    CAPTURE(log.filename().string());
    NmeaTracker tracker;  // gpsd's rollover rule, as in the .chk files
    std::vector<NmeaPosition> with_time;
    std::vector<LatLon> any;
    for (const auto& line : sentences(log)) {
      const auto r = parse_nmea(line);
      if (const auto* e = std::get_if<NmeaError>(&r)) {
        // Every sentence in these logs is well formed but for the one broken line.
        if (e->code == NmeaErrc::garbled) {
          ++garbled;
          CHECK(log.filename() == "triton400.log");
        } else {
          CHECK_MESSAGE((e->code == NmeaErrc::unsupported || e->code == NmeaErrc::empty),
                        line << ": " << e->reason);
        }
        continue;
      }
      const auto& fix = std::get<NmeaFix>(r);
      if (fix.pos) any.push_back(*fix.pos);
      if (auto p = tracker.update(fix)) with_time.push_back(*p);
    }

    for (const auto& line : read_lines(fs::path(log) += ".chk")) {
      if (line.empty() || line[0] != '{') continue;
      const auto obj = boost::json::parse(line).as_object();
      if (obj.at("class").as_string() != "TPV" || !obj.contains("lat")) continue;
      const double lat = obj.at("lat").to_number<double>();
      const double lon = obj.at("lon").to_number<double>();
      ++checked;
      if (obj.contains("time")) {
        ++timed;
        const auto ts = iso_ms(std::string(obj.at("time").as_string()));
        // gpsd reports once per cycle, from whichever sentence of the cycle came
        // last, so the match is by time and then position.
        const bool found = std::any_of(with_time.begin(), with_time.end(), [&](const auto& p) {
          return p.ts_ms == ts && near(p.pos.lat, lat) && near(p.pos.lon, lon);
        });
        CHECK_MESSAGE(found, "TPV " << obj.at("time").as_string() << " " << lat << "," << lon);
      } else {
        // Before gpsd knows the date it reports positions without time, and it
        // shows coordinates even when the receiver has no fix (myguide-3100.log).
        const bool found = std::any_of(any.begin(), any.end(), [&](const auto& p) {
          return near(p.lat, lat) && near(p.lon, lon);
        });
        CHECK_MESSAGE(found, "TPV without time " << lat << "," << lon);
      }
    }
  }
  CHECK(garbled == 1);
  MESSAGE("gpsd TPVs checked: " << checked << ", with time: " << timed);
  CHECK(checked >= 830);
  CHECK(timed >= 800);
}

TEST_CASE("one RMC from the Triton 400 log, field by field") {
  const auto r = parse_nmea("$GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010413,,*26\r\n");
  const auto& f = as_fix(r);
  CHECK(f.talker == "GP");
  CHECK(f.type == "RMC");
  REQUIRE(f.pos);
  CHECK(f.pos->lat == doctest::Approx(26 + 38.1726 / 60).epsilon(1e-12));
  CHECK(f.pos->lon == doctest::Approx(-(80 + 11.3892 / 60)).epsilon(1e-12));
  CHECK(f.date == NmeaDate{2013, 4, 1});
  CHECK(f.time_of_day_ms == (3 * 3600 + 1 * 60 + 29) * 1000);
  CHECK(f.time_ms() == 1364785289000);
  CHECK(f.speed_kmh == 0.0);
  CHECK(f.heading == 219.6);
  CHECK(f.quality == 1);

  // The receiver's week counter rolled over: gpsd's rule moves it 1024 weeks on,
  // a tracker told that 2013 is plausible keeps it.
  CHECK(NmeaTracker{}.resolve(f) == 1364785289000 + gps_rollover_ms);
  CHECK(NmeaTracker{0}.resolve(f) == 1364785289000);
}

TEST_CASE("GGA, speed in knots, southern and western hemispheres") {
  const auto gga = parse_nmea(
      nmea_sentence("GPGGA,095305.802,2712.6457,S,15303.1180,E,1,05,1.8,6.2,M,39.1,M,,0000"));
  const auto& g = as_fix(gga);
  CHECK(g.type == "GGA");
  CHECK(g.quality == 1);
  CHECK(g.satellites == 5);
  CHECK(!g.date);
  CHECK(!g.time_ms());
  REQUIRE(g.pos);
  CHECK(g.pos->lat == doctest::Approx(-(27 + 12.6457 / 60)));
  CHECK(g.pos->lon == doctest::Approx(153 + 3.1180 / 60));

  const auto rmc = parse_nmea(nmea_sentence("GNRMC,120000.00,A,2933.7800,N,10633.0600,E,10.0,45.5,281125,,,A"));
  const auto& m = as_fix(rmc);
  CHECK(m.speed_kmh == doctest::Approx(18.52));
  CHECK(m.heading == 45.5);
  REQUIRE(m.pos);
  CHECK(m.pos->lat == doctest::Approx(29.563));
  CHECK(m.pos->lon == doctest::Approx(106.551));
  CHECK(m.time_ms() == iso_ms("2025-11-28T12:00:00.000Z"));
}

TEST_CASE("any talker: the same sentence from BeiDou, GLONASS, Galileo, combined") {
  const std::string body = "RMC,074157.799,A,3114.8902,N,12135.2443,E,0.32,4.94,250215,,,A";
  for (std::string talker : {"GP", "GN", "BD", "GB", "GL", "GA"}) {
    const auto r = parse_nmea(nmea_sentence(talker + body));
    const auto& f = as_fix(r);
    CHECK(f.talker == talker);
    REQUIRE(f.pos);
    CHECK(f.pos->lat == doctest::Approx(31.24817));
  }
}

TEST_CASE("no fix: status V or quality 0 gives no position to forward") {
  NmeaTracker t{0};
  // tn200-all.log: an unlocked SiRF-II writes 360 degrees of latitude.
  const auto r = parse_nmea("$GPRMC,000452.981,V,36000.0000,N,72000.0000,E,0.000000,,190120,,*32");
  const auto& f = as_fix(r);
  CHECK(!f.pos);
  CHECK(!f.has_fix());
  CHECK(f.quality == 0);
  CHECK(f.time_of_day_ms == 292981);
  CHECK(f.date == NmeaDate{2020, 1, 19});
  CHECK(!t.update(f));
  const auto g = parse_nmea("$GPGGA,000452.981,0000.0000,N,00000.0000,E,0,00,50.0,0.0,M,0.0,M,0.0,0000*75");
  CHECK(as_fix(g).pos == LatLon{0, 0});
  CHECK(!as_fix(g).has_fix());
  CHECK(!t.update(as_fix(g)));
  // myguide-3100.log: no quality at all, and the RMC of the same cycle says V.
  const auto m = parse_nmea("$GPGGA,105027.80,5612.9956,N,00306.6983,W,,3,2.506,160.002,M,,M,,*6D");
  CHECK(as_fix(m).pos);
  CHECK(!as_fix(m).has_fix());
  CHECK(!t.update(as_fix(m)));
  const auto empty = parse_nmea("$GPRMC,,V,,,,,,,,,,N*53");
  CHECK(!as_fix(empty).pos);
  CHECK(!as_fix(empty).time_of_day_ms);
  // RMC mode N (NMEA 2.3) overrides status A.
  CHECK(!as_fix(parse_nmea(nmea_sentence("GPRMC,120000,A,2933.78,N,10633.06,E,0,0,281125,,,N"))).has_fix());
  // The same with a fix is forwarded.
  CHECK(t.update(as_fix(parse_nmea(nmea_sentence("GPRMC,120000,A,2933.78,N,10633.06,E,0,0,281125,,,A")))));
}

TEST_CASE("bad sentences are rejected with a reason") {
  SUBCASE("triton400's two sentences run together") {
    const auto r = parse_nmea("$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41");
    const auto& e = as_error(r);
    CHECK(e.code == NmeaErrc::garbled);
    CHECK(e.reason.find("run together") != std::string::npos);
  }
  SUBCASE("one character flipped anywhere in any position sentence of the logs") {
    DISPATCH_NEEDS_SHARED_DATA(gpsd_dir);
    int flipped = 0;
    for (const auto& log : logs()) {
      for (const auto& raw : sentences(log)) {
        std::string line = raw;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        const auto r = parse_nmea(line);
        if (!std::holds_alternative<NmeaFix>(r) || !std::get<NmeaFix>(r).pos) continue;
        const auto dollar = line.find('$'), star = line.rfind('*');
        for (auto i = dollar + 1; i < star; ++i) {
          std::string bad = line;
          // A digit becomes another digit, a letter another letter, ',' a '.':
          // plausible line noise that only the checksum can catch.
          char& c = bad[i];
          c = (c >= '0' && c <= '8') ? static_cast<char>(c + 1)
              : c == '9'             ? '0'
              : c == ','             ? '.'
              : c == '.'             ? ','
                                     : static_cast<char>(c ^ 0x01);
          const auto br = parse_nmea(bad);
          CHECK_MESSAGE(std::holds_alternative<NmeaError>(br), bad);
          if (auto* e = std::get_if<NmeaError>(&br)) {
            CHECK_MESSAGE(e->code == NmeaErrc::bad_checksum, bad << ": " << e->reason);
          }
          ++flipped;
        }
      }
    }
    MESSAGE("flipped sentences: " << flipped);
    CHECK(flipped > 10000);
  }
  SUBCASE("every truncation of a sentence") {
    const std::string line = "$GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010413,,*26";
    for (std::size_t n = 0; n < line.size(); ++n) {
      const auto r = parse_nmea(line.substr(0, n));
      CHECK_MESSAGE(std::holds_alternative<NmeaError>(r), line.substr(0, n));
    }
    CHECK(as_error(parse_nmea(line.substr(0, 30))).code == NmeaErrc::no_checksum);
    CHECK(as_error(parse_nmea(line.substr(0, line.size() - 1))).code == NmeaErrc::bad_checksum);
    CHECK(as_error(parse_nmea("")).code == NmeaErrc::empty);
  }
  SUBCASE("a valid checksum over invalid content") {
    const auto bad = [](const std::string& body) { return as_error(parse_nmea(nmea_sentence(body))); };
    CHECK(bad("GPRMC,250000,A,2933.78,N,10633.06,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,X,2933.78,N,10633.06,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,9133.78,N,10633.06,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,2963.78,N,10633.06,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,2933.78,Q,10633.06,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,2933.78,N,,E,0,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,2933.78,N,10633.06,E,-3,0,281125,,").code == NmeaErrc::bad_field);
    CHECK(bad("GPRMC,120000,A,2933.78,N,10633.06,E").code == NmeaErrc::bad_field);
    CHECK(bad("GPGGA,120000,2933.78,N,10633.06,E,Z,05").code == NmeaErrc::bad_field);
    CHECK(bad("GPGSV,3,1,11,08,75,303,44").code == NmeaErrc::unsupported);
    CHECK(bad("PSTI,030,213144.000,A").code == NmeaErrc::unsupported);
    CHECK(bad("GPRMCX,120000").code == NmeaErrc::bad_address);
    CHECK(bad("gprmc,120000").code == NmeaErrc::bad_address);
    CHECK(as_error(parse_nmea("GPRMC,120000*26")).code == NmeaErrc::no_start);
    CHECK(as_error(parse_nmea("$GPRMC,120000*2G")).code == NmeaErrc::bad_checksum);
    CHECK(as_error(parse_nmea(std::string("$GPRMC,12\x01" "0000*00"))).code == NmeaErrc::garbled);
  }
  SUBCASE("an unreadable date keeps the position, without a date") {
    // april6_2019.log: a Telit HE910 writes the year as "-1" after the 2019 rollover.
    const auto r = parse_nmea("$GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A*73");
    const auto& f = as_fix(r);
    CHECK(f.pos);
    CHECK(!f.date);
    CHECK(!as_fix(parse_nmea(nmea_sentence("GPRMC,120000,A,2933.78,N,10633.06,E,0,0,310225,,"))).date);
  }
}

TEST_CASE("tracker: GGA gets the date of the RMC or ZDA before it, across midnight too") {
  NmeaTracker t{0};
  const auto feed = [&](const std::string& body) { return t.update(as_fix(parse_nmea(nmea_sentence(body)))); };
  // No date known yet: no position can be timed.
  CHECK(!feed("GPGGA,235958,2933.78,N,10633.06,E,1,08,1.0,250,M,-30,M,,"));
  CHECK(!feed("GPZDA,235958.50,,,,,"));  // a ZDA without date does not help
  auto p = feed("GPRMC,235959,A,2933.78,N,10633.06,E,0,0,311225,,");
  REQUIRE(p);
  CHECK(p->ts_ms == iso_ms("2025-12-31T23:59:59.000Z"));
  CHECK(p->type == "RMC");
  p = feed("GPGGA,000001.5,2933.79,N,10633.06,E,1,08,1.0,250,M,-30,M,,");
  REQUIRE(p);
  CHECK(p->ts_ms == iso_ms("2026-01-01T00:00:01.500Z"));
  // A GGA that belongs to the previous cycle, just before midnight.
  p = feed("GPGGA,235959.9,2933.79,N,10633.06,E,1,08,1.0,250,M,-30,M,,");
  REQUIRE(p);
  CHECK(p->ts_ms == iso_ms("2025-12-31T23:59:59.900Z"));
  // Hours of GGA only, the day still follows.
  for (const char* hhmmss : {"060000", "120000", "180000", "235959", "060000"})
    p = feed(std::string("GPGGA,") + hhmmss + ",2933.79,N,10633.06,E,1,08,1.0,250,M,-30,M,,");
  REQUIRE(p);
  CHECK(p->ts_ms == iso_ms("2026-01-02T06:00:00.000Z"));
  // ZDA sets the date (hemi.log has no RMC at all).
  feed("GPZDA,193913.00,07,09,2018,00,00");
  p = feed("GPGGA,194057.50,4221.82371,N,07101.94393,W,2,08,1.0,7.6,M,-33.1,M,,");
  REQUIRE(p);
  CHECK(p->ts_ms == iso_ms("2018-09-07T19:40:57.500Z"));
}

TEST_CASE("tracker: week rollover, with gpsd's rule and with a live clock") {
  // april6_2019.log: a day after the 2019 rollover the Telit says 22 Aug 1999.
  const auto r = parse_nmea("$GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59");
  const auto& f = as_fix(r);
  CHECK(f.date == NmeaDate{1999, 8, 22});
  CHECK(NmeaTracker{}.resolve(f) == iso_ms("2019-04-07T00:02:31.420Z"));
  // A gateway running on 2019-04-10 would say "not before a week ago".
  const auto now = iso_ms("2019-04-10T00:00:00.000Z");
  CHECK(NmeaTracker{now - 7 * 86400000LL}.resolve(f) == iso_ms("2019-04-07T00:02:31.420Z"));
  // A correct recent time is left alone.
  const auto r2 = parse_nmea(nmea_sentence("GPRMC,235000,A,2933.78,N,10633.06,E,0,0,090419,,"));
  const auto& ok = as_fix(r2);
  CHECK(NmeaTracker{now - 7 * 86400000LL}.resolve(ok) == iso_ms("2019-04-09T23:50:00.000Z"));
}
