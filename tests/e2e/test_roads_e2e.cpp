// Roads end to end (contract v2 section 8): the real dispatchd with --roads on the river
// fixture (tests/data/river.osm): the team on the scene's bank goes although the one across
// the water is nearer in a straight line, and eta_s is the road ETA; the road layer and
// the assignment's route over REST.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "geo/roads.hpp"
#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "north bank"},
  {"id": "M2", "kind": "moto", "callsign": "south bank"}
]})";

// The scene on the north bank; M1 1.74 km east on the same bank, M2 1.60 km south over
// the river (the only road bridge is 5 km east).
const dispatch::geo::LatLon scene{29.5672, 106.506}, same_bank{29.5672, 106.524}, across{29.5528, 106.506};

const std::string river = std::string(DISPATCH_SOURCE_DIR) + "/tests/data/river.osm";

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens = dir.file("tokens.json", default_tokens);
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::optional<Server> server;

  std::vector<std::string> args;

  explicit Fixture(bool roads) {
    args = {"--db", db, "--tokens", tokens, "--fleet", fleet_file};
    if (roads) args.insert(args.end(), {"--roads", river});
    server.emplace(args);
  }
  void restart() {
    server.reset();
    server.emplace(args);
  }
  unsigned short port() const { return server->port(); }

  // Both units placed, and seen by the engine (GET /api/units), before any report.
  void place(Ws& gw) {
    const auto t = now_ms();
    gw.send("[" + position("M1", same_bank.lat, same_bank.lon, t) + "," + position("M2", across.lat, across.lon, t) + "]");
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      int placed = 0;
      const json::value units = http_request(port(), http::verb::get, "/api/units", {}, "c-secret").json();
      for (const auto& u : units.as_array())
        if (!u.at("lat").is_null()) ++placed;
      if (placed == 2) return;
    }
    FAIL("the units' positions never reached the engine");
  }
};

double road_eta(dispatch::geo::LatLon from) {
  static const auto net = dispatch::geo::RoadNetwork::load_osm(river);
  double s = 0;
  net->to_target(scene, std::span(&from, 1), std::span(&s, 1));
  return s;
}

}  // namespace

TEST_CASE("with --roads: the team on the same bank is sent, with the road ETA") {
  REQUIRE(dispatch::geo::distance_m(scene, across) < dispatch::geo::distance_m(scene, same_bank));
  Fixture f(true);
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place(gw);
  rep.send(report("cc-road-1", scene.lat, scene.lon));
  auto acc = rep.recv_type("accepted");
  REQUIRE(acc);
  auto a = gw.recv_type("assign");
  REQUIRE(a);
  const std::string assignment = str(*a, "assignment");

  CHECK(str(*a, "unit") == "M1");
  CHECK(std::abs(a->at("eta_s").to_number<double>() - road_eta(same_bank)) <= 1.0);

  // The assignment's route: along the roads from the unit's position to the scene.
  const std::string unit = str(*a, "unit");
  const auto from = unit == "M1" ? same_bank : across;
  const auto r = http_request(f.port(), http::verb::get, "/api/assignments/" + assignment + "/route", {}, "c-secret");
  REQUIRE(r.status == 200);
  const auto route = r.json().as_object();
  CHECK(route.at("type").as_string() == "Feature");
  const auto& props = route.at("properties").as_object();
  CHECK(props.at("road").as_bool());
  CHECK(str(props, "unit") == unit);
  CHECK(str(props, "assignment") == assignment);
  CHECK(std::abs(props.at("eta_s").to_number<double>() - road_eta(from)) <= 1.0);
  const auto& coords = route.at("geometry").at("coordinates").as_array();
  REQUIRE(coords.size() >= 4);
  CHECK(coords.front().as_array()[0].to_number<double>() == doctest::Approx(from.lon));
  CHECK(coords.front().as_array()[1].to_number<double>() == doctest::Approx(from.lat));
  CHECK(coords.back().as_array()[0].to_number<double>() == doctest::Approx(scene.lon));
  CHECK(coords.back().as_array()[1].to_number<double>() == doctest::Approx(scene.lat));
  if (unit == "M2") {  // across the water: by the bridge, about 12 km
    CHECK(props.at("distance_m").to_number<double>() > 11000);
  } else {
    CHECK(props.at("distance_m").to_number<double>() == doctest::Approx(1740 + 45).epsilon(0.02));
  }

  // Errors: no token, unknown assignment.
  CHECK(http_request(f.port(), http::verb::get, "/api/assignments/" + assignment + "/route").status == 401);
  const auto unknown = http_request(f.port(), http::verb::get, "/api/assignments/A-nope/route", {}, "c-secret");
  CHECK(unknown.status == 404);
  CHECK(unknown.body.find("unknown_assignment") != std::string::npos);

  // The road layer: no token needed; the footway is not in it.
  const auto layer = http_request(f.port(), http::verb::get, "/geo/roads.geojson");
  REQUIRE(layer.status == 200);
  const auto gj = layer.json().as_object();
  CHECK(gj.at("type").as_string() == "FeatureCollection");
  CHECK(gj.at("features").as_array().size() == 4);  // two bank roads, the bridge, the lane
  CHECK(layer.body.find("footway") == std::string::npos);
}

// The unit's candidates (protocol.md "Roads (v2)", "Candidates") in GET /api/incidents/{id}.
json::object candidates_of(unsigned short port, const std::string& incident, const std::string& assignment) {
  const auto r = http_request(port, http::verb::get, "/api/incidents/" + incident, {}, "c-secret");
  REQUIRE(r.status == 200);
  json::object out;
  const json::value body = r.json();
  for (const auto& a : body.at("assignments").as_array()) {
    if (a.at("assignment").as_string() != assignment) continue;
    for (const auto& c : a.at("candidates").as_array()) out[c.at("unit").as_string()] = c;
  }
  return out;
}

TEST_CASE("with --roads: the assignment keeps its candidates, the unit across the river farther; kept over a restart") {
  Fixture f(true);
  std::string incident, assignment;
  {
    Ws gw(f.port(), "/ws/unit", "g-secret");
    Ws rep(f.port(), "/ws/report", "r-secret");
    f.place(gw);
    rep.send(report("cc-road-why", scene.lat, scene.lon));
    REQUIRE(rep.recv_type("accepted"));
    auto a = gw.recv_type("assign");
    REQUIRE(a);
    REQUIRE(str(*a, "unit") == "M1");
    incident = str(*a, "incident");
    assignment = str(*a, "assignment");
  }
  auto check = [&](const json::object& c) {
    REQUIRE(c.contains("M1"));
    CHECK(c.at("M1").at("why").as_string() == "chosen");
    CHECK(std::abs(c.at("M1").at("eta_s").to_number<double>() - road_eta(same_bank)) <= 1.0);
    REQUIRE(c.contains("M2"));
    CHECK(c.at("M2").at("why").as_string() == "farther");
    CHECK(std::abs(c.at("M2").at("eta_s").to_number<double>() - road_eta(across)) <= 1.0);
    CHECK(c.at("M2").at("distance_m").to_number<double>() ==
          doctest::Approx(dispatch::geo::distance_m(scene, across)).epsilon(0.01));
    CHECK(c.at("M2").at("distance_m").to_number<double>() < c.at("M1").at("distance_m").to_number<double>());
  };
  check(candidates_of(f.port(), incident, assignment));
  // The open incident is restored from the database with the same candidates.
  f.restart();
  check(candidates_of(f.port(), incident, assignment));
}

TEST_CASE("without --roads: today's straight-line model, no road layer, a straight route") {
  Fixture f(false);
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place(gw);
  rep.send(report("cc-straight-1", scene.lat, scene.lon));
  REQUIRE(rep.recv_type("accepted"));
  auto a = gw.recv_type("assign");
  REQUIRE(a);
  CHECK(str(*a, "unit") == "M2");  // nearest in a straight line, across the water
  const double d = dispatch::geo::distance_m(scene, across);
  CHECK(a->at("eta_s").to_number<int>() == static_cast<int>(std::lround(dispatch::geo::ground_eta_s(d))));

  CHECK(http_request(f.port(), http::verb::get, "/geo/roads.geojson").status == 404);
  const auto r = http_request(f.port(), http::verb::get, "/api/assignments/" + str(*a, "assignment") + "/route", {},
                              "c-secret");
  REQUIRE(r.status == 200);
  const auto route = r.json().as_object();
  const auto& props = route.at("properties").as_object();
  CHECK_FALSE(props.at("road").as_bool());
  CHECK(props.at("eta_s").to_number<int>() == static_cast<int>(std::lround(dispatch::geo::ground_eta_s(d))));
  CHECK(props.at("distance_m").to_number<double>() == doctest::Approx(d).epsilon(0.001));
  CHECK(route.at("geometry").at("coordinates").as_array().size() == 2);
}

TEST_CASE("a bad --roads file stops dispatchd at start with a clear message") {
  TempDir dir;
  const auto bad = dir.file("bad.osm", "<osm version='0.6'><node id='1' lat='29.5' lon='106.5'/><node id='2' lat='29.51' "
                                       "lon='106.5'/><way id='1'><nd ref='1'/><nd ref='2'/><tag k='highway' v='footway'/>"
                                       "</way></osm>");
  const auto tokens = dir.file("tokens.json", default_tokens);
  const std::string cmd = std::string(DISPATCHD_PATH) + " --listen 127.0.0.1:0 --db " + dir.file("d.db") +
                          " --tokens " + tokens + " --roads " + bad + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(out.find("roads " + bad) != std::string::npos);
  CHECK(out.find("no drivable") != std::string::npos);
  CHECK(out.find("listening") == std::string::npos);
}
