// End to end, rural stations (wire contract v2 section 10) through the real dispatchd: a
// station's sightings, hazards and reports; each fraud signal raised when it should and
// not when it should not, seen by the console and the insurer; the vehicle history; the
// windows restored after a restart; sightings pruned by retention.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

constexpr double XLAT = 29.560, XLON = 106.550;
constexpr double KM_LAT = 1 / 111.195;
const double KM_LON = 1 / (111.195 * std::cos(XLAT * 3.14159265358979 / 180));
constexpr std::int64_t MIN = 60'000;

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "渝警保01"},
  {"id": "M2", "kind": "moto", "callsign": "渝警保02"}
]})";

std::string places() {
  auto point = [](const char* id, const char* name, double lat, double lon) {
    return json::serialize(json::object{
        {"type", "Feature"},
        {"properties", json::object{{"id", id}, {"name", name}, {"kind", "station"}}},
        {"geometry", json::object{{"type", "Point"}, {"coordinates", json::array{lon, lat}}}}});
  };
  return std::string(R"({"type":"FeatureCollection","features":[)") +
         point("ST-001", "石柱县 xx 劝导站", XLAT + 2 * KM_LAT, XLON) + "," +
         point("ST-NEAR", "30 km north", XLAT + 30 * KM_LAT, XLON) + "," +
         point("ST-FAR", "300 km east", XLAT, XLON + 300 * KM_LON) + "]}";
}

std::string tokens() {
  std::string t = default_tokens;
  const std::string extra = R"(,
  {"token": "s-st1", "role": "station", "station": "ST-001", "name": "st1"},
  {"token": "s-near", "role": "station", "station": "ST-NEAR", "name": "near"},
  {"token": "s-far", "role": "station", "station": "ST-FAR", "name": "far"}
]})";
  t.replace(t.rfind("\n]}"), 3, extra);
  return t;
}

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens_file = dir.file("tokens.json", tokens());
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::string places_file = dir.file("places.geojson", places());
  std::optional<Server> server;

  explicit Fixture(std::vector<std::string> extra = {}) { start(std::move(extra)); }
  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--db", db, "--tokens", tokens_file, "--fleet", fleet_file,
                                  "--places", places_file, "--zones", ""};
    args.insert(args.end(), extra.begin(), extra.end());
    server.emplace(args);
  }
  void restart(std::vector<std::string> extra = {}) {
    CHECK(server->stop() == 0);
    server.reset();
    start(std::move(extra));
  }
  unsigned short port() const { return server->port(); }
};

std::string msg(json::object o) { return json::serialize(o); }

// Percent-encodes every byte outside [A-Za-z0-9-_.~] (a plate in a path).
std::string pct(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string sighting(const std::string& id, const std::string& plate, std::int64_t ts) {
  json::object o{{"type", "sighting"}, {"plate", plate}, {"ts", ts}, {"direction", "东向"}, {"note", "白色轿车"}};
  if (!id.empty()) o["id"] = id;
  return msg(o);
}

std::string report_with(const std::string& id, const std::vector<std::pair<std::string, std::string>>& vehicles,
                        bool remote = true, double lat = XLAT, double lon = XLON) {
  json::array vs;
  for (const auto& [plate, insurer] : vehicles) vs.push_back(json::object{{"plate", plate}, {"insurer", insurer}});
  return msg({{"type", "report"}, {"id", id}, {"lat", lat}, {"lon", lon}, {"ts", now_ms()},
              {"severity", "minor"}, {"drivable", remote}, {"parties_agree", remote}, {"vehicles", vs}});
}

// Sends a report on `ws` and returns the incident id.
std::string report_on(Ws& ws, const std::string& text) {
  ws.send(text);
  auto acc = ws.recv_type("accepted");
  REQUIRE(acc);
  return str(*acc, "incident");
}

// The console's next incident object for `id` (its first change after the report).
json::object incident_on(Ws& console, const std::string& id) {
  auto inc = console.recv_until([&](const json::object& o) { return str(o, "type") == "incident" && str(o, "id") == id; });
  REQUIRE(inc);
  return *inc;
}

std::vector<std::string> kinds(const json::object& inc) {
  std::vector<std::string> out;
  for (const auto& s : inc.at("signals").as_array()) out.push_back(str(s.as_object(), "kind"));
  return out;
}

}  // namespace

TEST_CASE("a station token naming an unknown station: dispatchd refuses to start") {
  TempDir dir;
  std::string t = default_tokens;
  t.replace(t.rfind("\n]}"), 3, R"(, {"token": "s-x", "role": "station", "station": "ST-NOWHERE"}]})");
  const auto tok = dir.file("tokens.json", t);
  const auto pl = dir.file("places.geojson", places());
  CHECK_THROWS_WITH(Server({"--db", dir.file("d.db"), "--tokens", tok, "--places", pl, "--zones", ""}),
                    doctest::Contains("dispatchd did not start"));
  // The same tokens with a station that exists start.
  t = default_tokens;
  t.replace(t.rfind("\n]}"), 3, R"(, {"token": "s-x", "role": "station", "station": "ST-FAR"}]})");
  const auto tok2 = dir.file("tokens2.json", t);
  Server ok({"--db", dir.file("d2.db"), "--tokens", tok2, "--places", pl, "--zones", ""});
  CHECK(ok.port() > 0);
}

TEST_CASE("a station logs sightings, reports a hazard (console, snapshot, clear_hazard, REST) and an accident") {
  Fixture f;
  Ws console(f.port(), "/ws/console", "c-secret");
  auto snap = console.recv_type("snapshot");
  REQUIRE(snap);
  REQUIRE(snap->contains("hazards"));
  CHECK(snap->at("hazards").as_array().empty());

  CHECK(Ws::try_upgrade(f.port(), "/ws/station", "r-secret") != 101);  // a reporter token
  Ws st(f.port(), "/ws/station", "s-st1");
  const auto t = now_ms();

  // A sighting without an id is not answered; one with an id is, once durable (and so is
  // everything before it).
  st.send(sighting("", "渝A12345", t - 2 * MIN));
  st.send(sighting("log-2", "渝A·12345", t - MIN));
  auto acc = st.recv_type("accepted");
  REQUIRE(acc);
  CHECK(str(*acc, "id") == "log-2");
  CHECK(str(*acc, "plate") == "渝A·12345");
  CHECK(acc->at("ts").to_number<std::int64_t>() == t - MIN);
  auto v = http_request(f.port(), http::verb::get, "/api/vehicles/" + pct("渝A12345"), {}, "c-secret");
  REQUIRE(v.status == 200);
  auto vj = v.json().as_object();
  CHECK(str(vj, "plate") == "渝A12345");
  auto sightings = vj.at("sightings").as_array();
  REQUIRE(sightings.size() == 2);
  CHECK(str(sightings[0].as_object(), "station") == "ST-001");
  CHECK(sightings[0].at("ts").to_number<std::int64_t>() == t - MIN);  // newest first
  CHECK(sightings[0].at("lat").to_number<double>() == doctest::Approx(XLAT + 2 * KM_LAT));  // at the station
  CHECK(str(sightings[0].as_object(), "direction") == "东向");
  CHECK(str(sightings[0].as_object(), "note") == "白色轿车");
  // Paged: limit and before_ts.
  auto page = http_request(f.port(), http::verb::get,
                           "/api/vehicles/" + pct("渝A12345") + "?limit=1&before_ts=" + std::to_string(t - MIN), {},
                           "c-secret");
  REQUIRE(page.status == 200);
  REQUIRE(page.json().at("sightings").as_array().size() == 1);
  CHECK(page.json().at("sightings").as_array()[0].at("ts").to_number<std::int64_t>() == t - 2 * MIN);
  CHECK(http_request(f.port(), http::verb::get, "/api/vehicles/x?limit=0", {}, "c-secret").status == 400);
  CHECK(http_request(f.port(), http::verb::get, "/api/vehicles/x", {}, "s-st1").status == 403);

  // Bad sightings: errors, the connection stays.
  st.send(msg({{"type", "sighting"}, {"ts", t}}));
  auto err = st.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "bad_message");
  st.send(sighting("log-9", "渝A1", t + 3'600'000));
  err = st.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "bad_message");
  CHECK(str(*err, "ref") == "log-9");
  st.send(msg({{"type", "assign"}, {"incident", "I-000001"}, {"unit", "M1"}}));
  err = st.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "forbidden");
  console.send(sighting("c-1", "渝A1", t));
  err = console.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "forbidden");

  // A hazard: accepted once durable, shown to consoles; the same id again is the same one.
  const auto hazard = msg({{"type", "hazard"}, {"id", "hz-1"}, {"lat", XLAT + 0.01}, {"lon", XLON + 0.02},
                           {"ts", t - 5 * MIN}, {"kind", "landslide"}, {"note", "塌方, one lane"}});
  st.send(hazard);
  acc = st.recv_type("accepted");
  REQUIRE(acc);
  CHECK(str(*acc, "id") == "hz-1");
  const std::string hid = str(*acc, "hazard");
  CHECK(hid == "H-000001");
  auto hz = console.recv_type("hazard");
  REQUIRE(hz);
  CHECK(str(*hz, "hazard") == hid);
  CHECK(str(*hz, "station") == "ST-001");
  CHECK(hz->at("lat").to_number<double>() == doctest::Approx(XLAT + 0.01));
  CHECK(hz->at("lon").to_number<double>() == doctest::Approx(XLON + 0.02));
  CHECK(hz->at("ts").to_number<std::int64_t>() == t - 5 * MIN);
  CHECK(str(*hz, "kind") == "landslide");
  CHECK(str(*hz, "note") == "塌方, one lane");
  CHECK(str(*hz, "state") == "open");
  CHECK(hz->at("cleared_ts").is_null());
  st.send(hazard);
  acc = st.recv_type("accepted");
  REQUIRE(acc);
  CHECK(str(*acc, "hazard") == hid);
  st.send(msg({{"type", "hazard"}, {"id", "hz-2"}, {"lat", 95.0}, {"lon", XLON}, {"ts", t}, {"kind", "flood"}}));
  err = st.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "bad_message");
  CHECK(str(*err, "ref") == "hz-2");

  // A new console has it in its snapshot.
  {
    Ws c2(f.port(), "/ws/console", "c-secret");
    auto s2 = c2.recv_type("snapshot");
    REQUIRE(s2);
    REQUIRE(s2->at("hazards").as_array().size() == 1);
    CHECK(str(s2->at("hazards").as_array()[0].as_object(), "hazard") == hid);
  }
  auto open = http_request(f.port(), http::verb::get, "/api/hazards?state=open", {}, "c-secret");
  REQUIRE(open.status == 200);
  REQUIRE(open.json().as_array().size() == 1);

  // Cleared by a console: every console hears it, the snapshot no longer has it.
  console.send(msg({{"type", "clear_hazard"}, {"hazard", hid}}));
  auto cleared = console.recv_until([&](const json::object& o) {
    return str(o, "type") == "hazard" && str(o, "hazard") == hid && str(o, "state") == "cleared";
  });
  REQUIRE(cleared);
  CHECK(cleared->at("cleared_ts").to_number<std::int64_t>() >= t);
  console.send(msg({{"type", "clear_hazard"}, {"hazard", hid}}));
  err = console.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "conflict");
  CHECK(str(*err, "ref") == hid);
  console.send(msg({{"type", "clear_hazard"}, {"hazard", "H-999999"}}));
  err = console.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "bad_message");
  {
    Ws c3(f.port(), "/ws/console", "c-secret");
    auto s3 = c3.recv_type("snapshot");
    REQUIRE(s3);
    CHECK(s3->at("hazards").as_array().empty());
  }
  CHECK(http_request(f.port(), http::verb::get, "/api/hazards?state=open", {}, "c-secret").json().as_array().empty());
  auto all = http_request(f.port(), http::verb::get, "/api/hazards?state=all", {}, "c-secret");
  REQUIRE(all.status == 200);
  const auto all_json = all.json();
  REQUIRE(all_json.as_array().size() == 1);
  const auto& h = all_json.as_array()[0].as_object();
  CHECK(str(h, "state") == "cleared");
  REQUIRE(h.at("events").as_array().size() == 2);
  CHECK(str(h.at("events").as_array()[0].as_object(), "event") == "reported");
  CHECK(str(h.at("events").as_array()[1].as_object(), "event") == "cleared");
  CHECK(str(h.at("events").as_array()[1].as_object(), "by") == "console:desk1");
  CHECK(http_request(f.port(), http::verb::get, "/api/hazards?state=closed", {}, "c-secret").status == 400);

  // An accident reported by the station: an ordinary one carries "signals":[].
  const std::string iid = report_on(st, report_with("st1-acc-1", {{"渝C55555", "PICC"}}, false));
  auto inc = incident_on(console, iid);
  REQUIRE(inc.contains("signals"));
  CHECK(inc.at("signals").as_array().empty());
  bool by_station = false;
  for (const auto& l : inc.at("timeline").as_array())
    if (str(l.as_object(), "by") == "station:st1") by_station = true;
  CHECK(by_station);
  // Report ids are the station token's own: a reporter's "st1-acc-1" is another accident.
  Ws rep(f.port(), "/ws/report", "r-secret");
  CHECK(report_on(rep, report_with("st1-acc-1", {{"渝C55555", "PICC"}}, false)) != iid);
  auto rest = http_request(f.port(), http::verb::get, "/api/incidents/" + iid, {}, "c-secret");
  REQUIRE(rest.status == 200);
  CHECK(rest.json().at("signals").as_array().empty());
}

TEST_CASE("impossible_travel: seen 300 km away 10 minutes earlier, flagged to the console and the insurer") {
  Fixture f;
  Ws console(f.port(), "/ws/console", "c-secret");
  REQUIRE(console.recv_type("snapshot"));
  Ws insurer(f.port(), "/ws/insurer", "i-picc");
  Ws far(f.port(), "/ws/station", "s-far");
  Ws near(f.port(), "/ws/station", "s-near");
  const auto t = now_ms();
  far.send(sighting("far-1", "渝A77777", t - 10 * MIN));
  REQUIRE(far.recv_type("accepted"));
  // A vehicle seen 30 km away 30 minutes earlier could have come: no signal.
  near.send(sighting("near-1", "渝B88888", t - 30 * MIN));
  REQUIRE(near.recv_type("accepted"));

  const std::string ok_id = report_on(console, report_with("desk-ok", {{"渝B88888", "PICC"}}));
  CHECK(incident_on(console, ok_id).at("signals").as_array().empty());

  const std::string iid =
      report_on(console, report_with("desk-1", {{"渝A77777", "PICC"}, {"渝D12121", "平安"}}));
  auto inc = incident_on(console, iid);
  REQUIRE(kinds(inc) == std::vector<std::string>{"impossible_travel"});
  const auto& sig = inc.at("signals").as_array()[0].as_object();
  CHECK(str(sig, "detail").find("ST-FAR") != std::string::npos);
  CHECK(str(sig, "detail").find("10 min before") != std::string::npos);
  CHECK(sig.at("plates").as_array()[0].as_string() == "渝A77777");
  const auto& ev = sig.at("sighting").as_object();
  CHECK(str(ev, "station") == "ST-FAR");
  CHECK(ev.at("ts").to_number<std::int64_t>() == t - 10 * MIN);
  CHECK(ev.at("distance_m").to_number<double>() == doctest::Approx(300'000).epsilon(0.01));
  bool in_timeline = false;
  for (const auto& l : inc.at("timeline").as_array())
    if (str(l.as_object(), "event") == "signal") in_timeline = true;
  CHECK(in_timeline);

  // The liability decision: computed again, and the claim carries the signal.
  console.send(msg({{"type", "liability"}, {"incident", iid}, {"at_fault", "渝D12121"}}));
  auto claim = insurer.recv_type("claim");
  REQUIRE(claim);
  CHECK(str(*claim, "incident") == iid);
  REQUIRE(claim->contains("signals"));
  REQUIRE(claim->at("signals").as_array().size() == 1);
  CHECK(str(claim->at("signals").as_array()[0].as_object(), "kind") == "impossible_travel");
  CHECK(str(claim->at("signals").as_array()[0].as_object().at("sighting").as_object(), "station") == "ST-FAR");
  auto rest = http_request(f.port(), http::verb::get, "/api/incidents/" + iid, {}, "c-secret");
  REQUIRE(rest.status == 200);
  REQUIRE(rest.json().at("signals").as_array().size() == 1);
  // The vehicle's history names the incident.
  auto v = http_request(f.port(), http::verb::get, "/api/vehicles/" + pct("渝A77777"), {}, "c-secret");
  REQUIRE(v.status == 200);
  REQUIRE(v.json().at("incidents").as_array().size() == 1);
  CHECK(str(v.json().at("incidents").as_array()[0].as_object(), "id") == iid);
  CHECK(str(v.json().at("incidents").as_array()[0].as_object(), "severity") == "minor");

  // A sighting after the report, known at the liability decision, counts too.
  far.send(sighting("far-2", "渝B88888", t + 4 * MIN));
  REQUIRE(far.recv_type("accepted"));
  console.send(msg({{"type", "liability"}, {"incident", ok_id}, {"at_fault", "none"}}));
  auto claim2 = insurer.recv_until([&](const json::object& o) { return str(o, "incident") == ok_id; });
  REQUIRE(claim2);
  REQUIRE(claim2->at("signals").as_array().size() == 1);
  CHECK(str(claim2->at("signals").as_array()[0].as_object(), "detail").find("after the report") != std::string::npos);
}

TEST_CASE("repeat_plate and repeat_pair: raised when they should, not before; still after a restart") {
  Fixture f;
  std::optional<Ws> console(std::in_place, f.port(), "/ws/console", "c-secret");
  REQUIRE(console->recv_type("snapshot"));
  // 1: A and B. 2: A and C (A twice, no pair twice). 3: A and B again.
  const auto i1 = report_on(*console, report_with("r-1", {{"渝A11111", "PICC"}, {"渝B22222", "平安"}}));
  CHECK(incident_on(*console, i1).at("signals").as_array().empty());
  const auto i2 = report_on(*console, report_with("r-2", {{"渝A11111", "PICC"}, {"渝C33333", "平安"}}));
  CHECK(incident_on(*console, i2).at("signals").as_array().empty());
  const auto i3 = report_on(*console, report_with("r-3", {{"渝b22222", "平安"}, {"渝A·11111", "PICC"}}));
  auto inc3 = incident_on(*console, i3);
  REQUIRE(kinds(inc3) == std::vector<std::string>{"repeat_plate", "repeat_pair"});
  const auto& rp = inc3.at("signals").as_array()[0].as_object();
  CHECK(rp.at("plates").as_array()[0].as_string() == "渝A·11111");
  REQUIRE(rp.at("incidents").as_array().size() == 2);
  CHECK(rp.at("incidents").as_array()[0].as_string() == i1);
  CHECK(rp.at("incidents").as_array()[1].as_string() == i2);
  CHECK(str(rp, "detail").find(i1) != std::string::npos);
  const auto& pair = inc3.at("signals").as_array()[1].as_object();
  REQUIRE(pair.at("incidents").as_array().size() == 1);
  CHECK(pair.at("incidents").as_array()[0].as_string() == i1);
  CHECK(str(pair, "detail").find("together in 2 incidents") != std::string::npos);

  // After a restart the 30 days' history is there: B's third incident is a repeat.
  console.reset();
  f.restart();
  Ws c2(f.port(), "/ws/console", "c-secret");
  auto snap = c2.recv_type("snapshot");
  REQUIRE(snap);
  bool restored = false;
  for (const auto& i : snap->at("incidents").as_array())
    if (str(i.as_object(), "id") == i3) restored = kinds(i.as_object()).size() == 2;
  CHECK(restored);  // the open incident's signals came back with it
  const auto i4 = report_on(c2, report_with("r-4", {{"渝B22222", "平安"}, {"渝E44444", "PICC"}}));
  auto inc4 = incident_on(c2, i4);
  REQUIRE(kinds(inc4) == std::vector<std::string>{"repeat_plate"});
  CHECK(inc4.at("signals").as_array()[0].at("plates").as_array()[0].as_string() == "渝B22222");
}

TEST_CASE("sightings are kept --sighting-retention-days, and an impossible sighting survives a restart") {
  Fixture f;
  Ws far(f.port(), "/ws/station", "s-far");
  const auto t = now_ms();
  far.send(sighting("old", "渝F00001", t - 3 * 24 * 3600 * 1000LL));
  far.send(sighting("new", "渝F00001", t - 10 * MIN));
  REQUIRE(far.recv_until([](const json::object& o) { return str(o, "id") == "new"; }));
  auto v = http_request(f.port(), http::verb::get, "/api/vehicles/" + pct("渝F00001"), {}, "c-secret");
  REQUIRE(v.json().at("sightings").as_array().size() == 2);

  f.restart({"--sighting-retention-days", "1"});
  v = http_request(f.port(), http::verb::get, "/api/vehicles/" + pct("渝F00001"), {}, "c-secret");
  REQUIRE(v.status == 200);
  REQUIRE(v.json().at("sightings").as_array().size() == 1);
  CHECK(v.json().at("sightings").as_array()[0].at("ts").to_number<std::int64_t>() == t - 10 * MIN);
  // The 5 h window came back from the store: a report here now is impossible travel.
  Ws console(f.port(), "/ws/console", "c-secret");
  REQUIRE(console.recv_type("snapshot"));
  const auto iid = report_on(console, report_with("r-x", {{"渝F00001", "PICC"}}));
  CHECK(kinds(incident_on(console, iid)) == std::vector<std::string>{"impossible_travel"});
}
