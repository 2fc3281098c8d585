// The gateways' pieces without a network: back-off, the bounded backlog, the wire
// form of positions, gpsd's JSON (checked on gpsd's own output), NMEA connections
// fed with real receiver logs, SNPP replies, pages and the delivered-page file.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <boost/json.hpp>

#include "gateways/backoff.hpp"
#include "gateways/endpoint.hpp"
#include "gateways/gpsd.hpp"
#include "gateways/nmea_session.hpp"
#include "gateways/pager.hpp"
#include "gateways/position.hpp"
#include "gateways/snpp.hpp"
#include "support.hpp"

using namespace dispatch::gateways;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

namespace {
const fs::path gpsd_dir = fs::path(DISPATCH_SHARED_DIR) / "data/nmea/gpsd";

Position pos(std::string unit, std::int64_t ts) { return Position{std::move(unit), 29.5, 106.5, ts, {}, {}}; }
}  // namespace

TEST_CASE("back-off doubles up to its cap and starts over after a success") {
  Backoff b(milliseconds(100), milliseconds(1000));
  std::vector<long> waits;
  for (int i = 0; i < 7; ++i) waits.push_back(b.next().count());
  CHECK(waits == std::vector<long>{100, 200, 400, 800, 1000, 1000, 1000});
  CHECK(b.attempts() == 7);
  b.reset();
  CHECK(b.next().count() == 100);
}

TEST_CASE("endpoints") {
  CHECK(parse_endpoint("127.0.0.1:2947")->port == 2947);
  CHECK(parse_endpoint("[::1]:8080")->host == "::1");
  CHECK(parse_endpoint("[::1]:8080")->str() == "[::1]:8080");
  CHECK(parse_endpoint("localhost:0")->port == 0);
  CHECK(!parse_endpoint("localhost"));
  CHECK(!parse_endpoint(":80"));
  CHECK(!parse_endpoint("host:65536"));
  CHECK(!parse_endpoint("host:8o"));
}

TEST_CASE("several servers: parsed in order; the next at once after a failure, a back-off after a whole round") {
  const auto list = parse_endpoints("a:1,[::1]:2,c:3");
  REQUIRE(list);
  REQUIRE(list->size() == 3);
  CHECK(list->at(1).host == "::1");
  CHECK(!parse_endpoints("a:1,,c:3"));
  CHECK(!parse_endpoints("a:1,b"));
  CHECK(parse_endpoints("a:1")->size() == 1);

  ServerRing ring(*list);
  CHECK(ring.current().host == "a");
  CHECK(ring.failed());   // a refused (a standby): b at once
  CHECK(ring.current().port == 2);
  CHECK(ring.failed());   // b gone: c at once
  CHECK(ring.current().host == "c");
  CHECK(!ring.failed());  // all three failed in a row: back off, then a again
  CHECK(ring.current().host == "a");
  CHECK(ring.failed());
  ring.connected();       // b took it: it stays b (after a disconnect, b is tried first)
  CHECK(ring.current().port == 2);
  CHECK(ring.failed());
  CHECK(ring.failed());
  CHECK(!ring.failed());
  ServerRing one(std::vector<Endpoint>{{"x", 9}});
  CHECK(!one.failed());   // a single server: back off every time, as before
  CHECK(one.current().host == "x");
}

TEST_CASE("a batch is a JSON array of position messages with the contract's fields") {
  const std::vector<Position> batch{{"M017", 29.563, 106.551, 1764300000000, 32.5, 270.0},
                                    {"H1", 29.72, 106.64, 1764300000500, {}, {}}};
  const auto v = boost::json::parse(to_json_batch(batch));
  REQUIRE(v.is_array());
  REQUIRE(v.as_array().size() == 2);
  const auto& a = v.as_array()[0].as_object();
  CHECK(a.at("type").as_string() == "position");
  CHECK(a.at("unit").as_string() == "M017");
  CHECK(a.at("lat").to_number<double>() == 29.563);
  CHECK(a.at("lon").to_number<double>() == 106.551);
  CHECK(a.at("ts").to_number<std::int64_t>() == 1764300000000);
  CHECK(a.at("speed_kmh").to_number<double>() == 32.5);
  CHECK(a.at("heading").to_number<double>() == 270.0);
  const auto& b = v.as_array()[1].as_object();
  CHECK(!b.contains("speed_kmh"));
  CHECK(!b.contains("heading"));
  CHECK(to_json_batch({}) == "[]");
}

TEST_CASE("backlog: oldest dropped first and counted; batches bounded in count and bytes") {
  Backlog q(5);
  for (int i = 0; i < 8; ++i) q.push(pos("M017", i));
  CHECK(q.size() == 5);
  CHECK(q.dropped() == 3);
  auto b = q.take(2, 64 * 1024);
  REQUIRE(b.size() == 2);
  CHECK(b[0].ts == 3);
  CHECK(b[1].ts == 4);

  // Unconfirmed positions go back in front, in order, and a full backlog then
  // drops the oldest of all.
  q.push(pos("M017", 8));
  q.push(pos("M017", 9));
  CHECK(q.size() == 5);
  q.requeue_front(b);
  CHECK(q.size() == 5);
  CHECK(q.dropped() == 5);
  auto all = q.take(100, 64 * 1024);
  std::vector<std::int64_t> ts;
  for (auto& p : all) ts.push_back(p.ts);
  CHECK(ts == std::vector<std::int64_t>{5, 6, 7, 8, 9});

  // Byte bound: each frame stays under the limit but always carries one.
  Backlog big(1000);
  for (int i = 0; i < 100; ++i) big.push(pos("M017", 1764300000000 + i));
  const std::size_t one = to_json(pos("M017", 1764300000000)).size();
  auto small = big.take(100, one * 10);
  CHECK(small.size() >= 8);
  CHECK(small.size() < 10);
  CHECK(to_json_batch(small).size() <= one * 10);
  auto tiny = big.take(100, 1);
  CHECK(tiny.size() == 1);
  CHECK(big.dropped() == 0);
}

TEST_CASE("gpsd JSON: every TPV in gpsd's own output reads back with its time and position") {
  int tpvs = 0, usable = 0;
  for (const auto& e : fs::directory_iterator(gpsd_dir)) {
    if (e.path().extension() != ".chk") continue;
    for (const auto& line : dispatch::test::read_lines(e.path())) {
      if (line.empty() || line[0] != '{') continue;
      const auto r = parse_gpsd_line(line);
      const auto o = boost::json::parse(line).as_object();
      const auto cls = std::string(o.at("class").as_string());
      if (cls != "TPV") {
        REQUIRE(std::holds_alternative<GpsdOther>(r));
        CHECK(std::get<GpsdOther>(r).cls == cls);
        continue;
      }
      ++tpvs;
      REQUIRE_MESSAGE(std::holds_alternative<GpsdTpv>(r), line);
      const auto& t = std::get<GpsdTpv>(r);
      CHECK(t.mode == o.at("mode").to_number<int>());
      CHECK(t.lat.has_value() == o.contains("lat"));
      if (o.contains("lat")) CHECK(*t.lat == o.at("lat").to_number<double>());
      if (o.contains("speed")) CHECK(*t.speed_kmh == doctest::Approx(o.at("speed").to_number<double>() * 3.6));
      if (o.contains("time")) {
        REQUIRE(t.time_ms);
        // Round trip through the system's own calendar.
        const std::time_t secs = static_cast<std::time_t>(*t.time_ms / 1000);
        std::tm tm{};
        gmtime_r(&secs, &tm);
        char buf[96];
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(*t.time_ms % 1000));
        CHECK(std::string(buf) == std::string(o.at("time").as_string()));
      }
      if (t.usable()) ++usable;
    }
  }
  MESSAGE("TPVs: " << tpvs << ", usable: " << usable);
  CHECK(tpvs > 1000);
  CHECK(usable >= 790);

  CHECK(std::holds_alternative<GpsdBad>(parse_gpsd_line("{not json")));
  CHECK(std::holds_alternative<GpsdBad>(parse_gpsd_line("[1,2]")));
  CHECK(std::holds_alternative<GpsdBad>(parse_gpsd_line(R"({"mode":3})")));
  CHECK(std::holds_alternative<GpsdBad>(parse_gpsd_line(R"({"class":"TPV","mode":3,"time":"yesterday"})")));
  CHECK(std::holds_alternative<GpsdBad>(parse_gpsd_line(R"({"class":"TPV","mode":3,"lat":95,"lon":0})")));
  CHECK(std::get<GpsdOther>(parse_gpsd_line(R"({"class":"ERROR","message":"Unrecognized request"})")).detail ==
        "Unrecognized request");
  const auto no_fix = std::get<GpsdTpv>(parse_gpsd_line(R"({"class":"TPV","device":"/dev/ttyS0","mode":1})"));
  CHECK(!no_fix.usable());
  CHECK(no_fix.device == "/dev/ttyS0");
}

TEST_CASE("device map: by path, else the default unit, else none") {
  DeviceMap m;
  CHECK(m.add("/dev/ttyUSB0=M017"));
  CHECK(m.add("tcp://10.0.0.5:4352=H1"));
  CHECK(!m.add("/dev/ttyUSB1"));
  CHECK(!m.add("=M018"));
  CHECK(m.unit_for("/dev/ttyUSB0") == "M017");
  CHECK(m.unit_for("tcp://10.0.0.5:4352") == "H1");
  CHECK(!m.unit_for("/dev/ttyUSB9"));
  m.set_default("C3");
  CHECK(m.unit_for("/dev/ttyUSB9") == "C3");
}

TEST_CASE("NMEA connection: UNIT line first, then one position per instant") {
  // The gateway's clock on the day of the capture: dates are taken as they are.
  const std::int64_t capture_day = 1549332000000;  // 2019-02-05T02:00:00Z, sirfstarv-nmea.log
  NmeaSession s(capture_day);
  CHECK(std::get<NmeaSession::Rejected>(s.feed("$GPGGA,000452.981,,,,,0,00,50.0,,M,,M,,*7A")).fatal);

  NmeaSession t(capture_day);
  CHECK(std::holds_alternative<NmeaSession::Skipped>(t.feed("\r\n")));
  CHECK(std::get<NmeaSession::Rejected>(t.feed("UNIT M 017")).fatal);
  NmeaSession u(capture_day);
  CHECK(std::get<NmeaSession::Identified>(u.feed("UNIT M017\r\n")).unit == "M017");

  std::vector<Position> out;
  std::set<std::int64_t> instants;
  dispatch::geo::NmeaTracker tracker(capture_day - rollover_window_ms);
  int rejected = 0;
  for (const auto& line : dispatch::test::read_lines(gpsd_dir / "sirfstarv-nmea.log")) {
    if (line.empty() || line[0] == '#') continue;
    const auto r = u.feed(line);
    if (auto* p = std::get_if<Position>(&r)) out.push_back(*p);
    if (std::holds_alternative<NmeaSession::Rejected>(r)) ++rejected;
    const auto parsed = dispatch::geo::parse_nmea(line);
    if (auto* f = std::get_if<dispatch::geo::NmeaFix>(&parsed))
      if (const auto p = tracker.update(*f)) instants.insert(p->ts_ms);
  }
  CHECK(rejected == 0);
  REQUIRE(!out.empty());
  // Every instant with a fix, in order; a second position for the same instant only
  // when it brings the speed and heading the first lacked (GGA, then RMC).
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < out.size(); ++i) {
    seen.insert(out[i].ts);
    if (i == 0) continue;
    CHECK(out[i].ts >= out[i - 1].ts);
    if (out[i].ts == out[i - 1].ts) {
      CHECK((!out[i - 1].speed_kmh && out[i].speed_kmh));
      if (i >= 2) CHECK(out[i - 2].ts < out[i].ts);
    }
  }
  CHECK(seen == instants);
  CHECK(out.front().unit == "M017");
  CHECK(out.front().ts == *instants.begin());
  CHECK(u.positions() == out.size());

  // A rolled-back receiver on today's clock: the date is moved to this week.
  NmeaSession v(1554854400000);  // 2019-04-10
  v.feed("UNIT M017");
  const auto r = v.feed("$GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59");
  REQUIRE(std::holds_alternative<Position>(r));
  CHECK(std::get<Position>(r).ts == 1554595351420);  // 2019-04-07T00:02:31.420Z
  CHECK(std::get<Position>(r).speed_kmh == doctest::Approx(0.16 * 1.852));
  // A broken sentence is rejected but the connection goes on.
  const auto bad = v.feed("$GPRMC,000232.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59");
  CHECK(!std::get<NmeaSession::Rejected>(bad).fatal);
  CHECK(v.rejected() == 1);
}

TEST_CASE("SNPP replies and message text") {
  CHECK(parse_snpp_reply("250 Message Sent Successfully\r\n")->code == 250);
  CHECK(parse_snpp_reply("250 Message Sent Successfully\r\n")->text == "Message Sent Successfully");
  CHECK(parse_snpp_reply("220")->code == 220);
  CHECK(!parse_snpp_reply("25"));
  CHECK(!parse_snpp_reply("OK 250"));
  CHECK(!parse_snpp_reply("2500 x"));
  CHECK(snpp_message_text("  accident\r\nG75  km 12\t") == "accident G75 km 12");
  CHECK(snpp_message_text("渝警保17 事故") == "渝警保17 事故");
}

TEST_CASE("page messages") {
  const auto p = parse_page(R"({"type":"page","page":"P7","unit":"M017","capcode":"1200017","assignment":"A3","text":"go"})");
  REQUIRE(p);
  CHECK(p->id == "P7");
  CHECK(p->capcode == "1200017");
  CHECK(p->assignment == "A3");
  CHECK(p->text == "go");
  CHECK(!parse_page(R"({"type":"page","page":7,"capcode":"1200017"})"));
  CHECK(!parse_page(R"({"type":"page","page":"P7"})"));
}

TEST_CASE("delivered pages survive a restart of the gateway, bounded") {
  const auto dir = dispatch::test::scratch_dir("delivered_log");
  const auto file = dir / "delivered.txt";
  {
    DeliveredLog log(file.string(), 3);
    log.add("P1");
    log.add("P2");
    CHECK(log.contains("P1"));
    CHECK(!log.contains("P3"));
  }
  {
    DeliveredLog log(file.string(), 3);
    CHECK(log.contains("P1"));
    CHECK(log.contains("P2"));
    for (const char* id : {"P3", "P4", "P5", "P6", "P7"}) log.add(id);
    CHECK(!log.contains("P1"));  // only the last 3 are kept
    CHECK(log.contains("P7"));
  }
  {
    // Reopening a long file compacts it.
    DeliveredLog log(file.string(), 3);
    CHECK(log.size() == 3);
  }
  CHECK(dispatch::test::read_lines(file).size() == 3);
  CHECK_THROWS(DeliveredLog((dir / "no/such/dir/x").string()));
  DeliveredLog memory("");
  memory.add("P1");
  CHECK(memory.contains("P1"));
}
