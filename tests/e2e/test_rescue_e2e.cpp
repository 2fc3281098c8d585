// End to end, air-ground rescue and the clocks (docs/protocol.md, "Air-ground rescue"):
// the real dispatchd over loopback with its real district map, a places file of the
// test's own, a real SQLite file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "渝警保01"},
  {"id": "M2", "kind": "moto", "callsign": "渝警保02"},
  {"id": "M3", "kind": "moto", "callsign": "渝警保03"},
  {"id": "H1", "kind": "heli", "callsign": "渝救援1", "base": {"lat": 31.0, "lon": 109.0}}
]})";

// The scene: 巫溪县, a rural county (31.45 N, 109.55 E).
constexpr double SLAT = 31.45, SLON = 109.55;
constexpr double KM_LAT = 1 / 111.195, KM_LON = 1 / 94.9;  // at 31.45 N

std::string place(const char* id, const char* name, const char* kind, double lat, double lon,
                  const char* extra = "") {
  return std::string(R"({"type":"Feature","properties":{"id":")") + id + R"(","name":")" + name +
         R"(","kind":")" + kind + "\"" + extra + R"(},"geometry":{"type":"Point","coordinates":[)" +
         std::to_string(lon) + "," + std::to_string(lat) + "]}}";
}

// A landing zone 2.2 km north of the scene, and one 100 km off (城口); a trauma centre
// with a helipad at 万州.
const std::string hospital = place("H-SX", "三峡中心医院", "hospital", 30.81, 108.389, R"(,"trauma":true,"helipad":true)");
const std::string lz_near = place("LZ-WX", "巫溪停机坪", "landing_zone", SLAT + 2.2 * KM_LAT, SLON);
const std::string lz_far = place("LZ-CK", "城口停机坪", "landing_zone", 31.948, 108.67);
std::string places(std::initializer_list<std::string> fs) {
  std::string s = R"({"type":"FeatureCollection","features":[)";
  bool first = true;
  for (const auto& f : fs) {
    if (!first) s += ",";
    s += f;
    first = false;
  }
  return s + "]}";
}

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens = dir.file("tokens.json", default_tokens);
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::vector<std::string> extra;
  std::optional<Server> server;

  explicit Fixture(std::vector<std::string> more) : extra(std::move(more)) { start(); }
  void start() {
    std::vector<std::string> args{"--db", db, "--tokens", tokens, "--fleet", fleet_file};
    args.insert(args.end(), extra.begin(), extra.end());
    server.emplace(args);
  }
  unsigned short port() const { return server->port(); }

  // M1 500 m from the scene, M2 2 km north (beside the near landing zone), M3 5 km south;
  // H1 at its base. Waits until the server holds every position (GET /api/units).
  void place_units(Ws& gw) {
    const auto t = now_ms();
    gw.send("[" + position("M1", SLAT + 0.5 * KM_LAT, SLON, t) + "," + position("M2", SLAT + 2 * KM_LAT, SLON, t) +
            "," + position("M3", SLAT - 5 * KM_LAT, SLON, t) + "," + position("H1", 31.0, 109.0, t) + "]");
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = http_request(port(), http::verb::get, "/api/units", {}, "c-secret");
      REQUIRE(r.status == 200);
      const auto units = r.json().as_array();
      if (std::all_of(units.begin(), units.end(), [](const json::value& u) { return !u.at("lat").is_null(); }))
        return;
      std::this_thread::yield();
    }
    FAIL("positions did not arrive");
  }

  // The critical report, and the assigns that follow (n of them).
  std::vector<json::object> critical(Ws& gw, Ws& rep, const std::string& id, std::size_t n) {
    rep.send(report(id, SLAT, SLON, "critical"));
    REQUIRE(rep.recv_type("accepted"));
    std::vector<json::object> as;
    while (as.size() < n) {
      auto a = gw.recv_type("assign");
      if (!a) break;
      as.push_back(*a);
    }
    return as;
  }
};

std::optional<json::object> by(const std::vector<json::object>& as, const char* key, const std::string& value) {
  for (const auto& a : as)
    if (str(a, key) == value) return a;
  return std::nullopt;
}

double num(const json::object& o, const char* k) { return o.at(k).to_number<double>(); }

std::string step_msg(const std::string& assignment, const char* step) {
  return json::serialize(json::object{{"type", "rescue"}, {"assignment", assignment}, {"step", step}});
}

}  // namespace

TEST_CASE("air rescue with a landing zone near: heli to it, a team secures it, a team to the scene; the chain") {
  TempDir pd;
  Fixture f({"--places", pd.file("places.geojson", places({hospital, lz_near, lz_far}))});
  Ws con(f.port(), "/ws/console", "c-secret");
  REQUIRE(con.recv_type("snapshot"));
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place_units(gw);
  auto as = f.critical(gw, rep, "wx-1", 3);
  REQUIRE(as.size() == 3);
  auto heli = by(as, "unit", "H1");
  REQUIRE(heli);
  CHECK(str(*heli, "task") == "landing_zone");
  CHECK(num(*heli, "lat") == doctest::Approx(SLAT + 2.2 * KM_LAT).epsilon(1e-6));
  auto scene = by(as, "task", "scene");
  REQUIRE(scene);
  CHECK(str(*scene, "unit") == "M1");
  auto secure = by(as, "task", "secure_lz");
  REQUIRE(secure);
  CHECK(str(*secure, "unit") == "M2");
  CHECK(num(*secure, "lat") == doctest::Approx(num(*heli, "lat")));
  CHECK(num(*secure, "lon") == doctest::Approx(num(*heli, "lon")));
  const std::string incident = str(*heli, "incident");

  // The crew and the securing team report; the console sees the whole chain.
  const std::string ha = str(*heli, "assignment");
  gw.send(step_msg(ha, "airborne"));
  gw.send(json::serialize(json::object{{"type", "arrived"}, {"assignment", str(*secure, "assignment")}}));
  gw.send(step_msg(ha, "landed"));
  gw.send(step_msg(ha, "patient_loaded"));
  gw.send(step_msg(ha, "transferred"));
  auto done = con.recv_until([&](const json::object& o) {
    if (str(o, "type") != "incident" || str(o, "id") != incident) return false;
    const auto* r = o.if_contains("rescue");
    return r && r->is_object() && r->as_object().at("steps").as_array().size() == 7;
  });
  REQUIRE(done);
  const auto& rescue = done->at("rescue").as_object();
  CHECK(str(rescue, "target") == "landing_zone");
  CHECK(str(rescue.at("landing_zone").as_object(), "id") == "LZ-WX");
  CHECK(str(rescue.at("landing_zone").as_object(), "name") == "巫溪停机坪");
  CHECK(str(rescue.at("hospital").as_object(), "id") == "H-SX");
  std::vector<std::string> steps;
  std::int64_t last_ts = 0;
  for (const auto& s : rescue.at("steps").as_array()) {
    const auto& o = s.as_object();
    steps.push_back(str(o, "step"));
    CHECK(o.at("ts").as_int64() >= last_ts);
    last_ts = o.at("ts").as_int64();
    CHECK(!str(o, "actor").empty());
  }
  CHECK(steps == std::vector<std::string>{"hospital_notified", "heli_called", "airborne", "lz_secured", "landed",
                                          "patient_loaded", "transferred"});
  CHECK(str(rescue.at("steps").as_array()[3].as_object(), "actor") == "gateway:avl");
  // The air clocks, met.
  int met = 0;
  for (const auto& c : done->at("clocks").as_array()) {
    const auto& o = c.as_object();
    const std::string name = str(o, "clock");
    if (name == "airborne" || name == "landed" || name == "hospital") {
      CHECK(!o.at("done_ts").is_null());
      CHECK(o.at("overdue").as_bool() == false);
      ++met;
    }
  }
  CHECK(met == 3);
}

TEST_CASE("air rescue with no landing zone within --lz-max-km: the helicopter flies to the scene") {
  TempDir pd;
  Fixture f({"--places", pd.file("places.geojson", places({hospital, lz_far})), "--lz-max-km", "10"});
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place_units(gw);
  auto as = f.critical(gw, rep, "wx-2", 2);
  REQUIRE(as.size() == 2);
  auto heli = by(as, "unit", "H1");
  REQUIRE(heli);
  CHECK(str(*heli, "task") == "scene");
  CHECK(num(*heli, "lat") == doctest::Approx(SLAT));
  CHECK(num(*heli, "lon") == doctest::Approx(SLON));
  CHECK_FALSE(by(as, "task", "secure_lz"));
  CHECK_FALSE(gw.recv_type("assign", 300ms));  // nobody else
  auto r = http_request(f.port(), http::verb::get, "/api/incidents/" + str(*heli, "incident"), {}, "c-secret");
  REQUIRE(r.status == 200);
}

TEST_CASE("air rescue with no places loaded: the helicopter still goes, to the scene") {
  Fixture f({"--places", ""});
  Ws con(f.port(), "/ws/console", "c-secret");
  auto snap = con.recv_type("snapshot");
  REQUIRE(snap);
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place_units(gw);
  auto as = f.critical(gw, rep, "wx-3", 2);
  auto heli = by(as, "unit", "H1");
  REQUIRE(heli);
  CHECK(str(*heli, "task") == "scene");
  CHECK(num(*heli, "lat") == doctest::Approx(SLAT));
  auto inc = con.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == str(*heli, "incident") && o.at("rescue").is_object();
  });
  REQUIRE(inc);
  CHECK(str(inc->at("rescue").as_object(), "target") == "scene");
  CHECK(inc->at("rescue").as_object().at("landing_zone").is_null());
}

TEST_CASE("an overdue liability clock raises the alert; the snapshot carries the config; the metric counts it") {
  Fixture f({"--remote-liability", "1", "--ack-timeout", "45", "--lz-max-km", "7.5"});
  Ws con(f.port(), "/ws/console", "c-secret");
  auto snap = con.recv_type("snapshot");
  REQUIRE(snap);
  const auto& cfg = snap->at("config").as_object();
  CHECK(num(cfg, "remote_liability_s") == doctest::Approx(1));
  CHECK(num(cfg, "ack_within_s") == doctest::Approx(45));
  CHECK(num(cfg, "lz_max_km") == doctest::Approx(7.5));
  CHECK(num(cfg, "claim_paid_within_s") == doctest::Approx(900));
  CHECK(num(cfg, "stale_after_s") == doctest::Approx(60));
  for (const char* k : {"airborne_s", "landed_s", "hospital_s"}) CHECK(num(cfg, k) > 0);

  Ws rep(f.port(), "/ws/report", "r-secret");
  const auto ts = now_ms();
  rep.send(json::serialize(json::object{{"type", "report"}, {"id", "minor-1"}, {"lat", 29.56}, {"lon", 106.55},
                                        {"ts", ts}, {"severity", "minor"}, {"drivable", true},
                                        {"parties_agree", true}}));
  auto acc = rep.recv_type("accepted");
  REQUIRE(acc);
  const std::string incident = str(*acc, "incident");
  auto alert = con.recv_type("alert", 10s);
  REQUIRE(alert);
  CHECK(str(*alert, "alert") == "overdue");
  CHECK(str(*alert, "incident") == incident);
  CHECK(str(*alert, "clock") == "liability");
  CHECK(alert->at("due_ts").as_int64() == ts + 1000);
  CHECK(alert->at("ts").as_int64() >= ts + 1000);
  auto inc = http_request(f.port(), http::verb::get, "/api/incidents/" + incident, {}, "c-secret");
  REQUIRE(inc.status == 200);
  const auto tl = inc.json().at("timeline").as_array();
  CHECK(std::any_of(tl.begin(), tl.end(), [](const json::value& t) {
    return t.at("event").as_string() == "overdue" && t.at("detail").as_string() == "liability";
  }));
  CHECK(inc.json().at("remote_deadline_ts").as_int64() == ts + 1000);
  auto metrics = http_request(f.port(), http::verb::get, "/metrics", {}, "c-secret");
  CHECK(metrics.body.find("dispatch_overdue_total{clock=\"liability\"} 1") != std::string::npos);
  CHECK(metrics.body.find("dispatch_overdue_total{clock=\"claim\"} 0") != std::string::npos);
}

TEST_CASE("service levels survive a restart") {
  TempDir pd;
  Fixture f({"--places", pd.file("places.geojson", places({hospital, lz_near}))});
  std::string before;
  {
    Ws gw(f.port(), "/ws/unit", "g-secret");
    Ws rep(f.port(), "/ws/report", "r-secret");
    f.place_units(gw);
    auto as = f.critical(gw, rep, "sl-1", 3);
    REQUIRE(as.size() == 3);
    for (const auto& a : as) {
      const std::string id = str(a, "assignment");
      if (str(a, "unit") == "H1") {
        for (const char* s : {"airborne", "landed", "patient_loaded", "transferred"}) gw.send(step_msg(id, s));
      } else {
        gw.send(json::serialize(json::object{{"type", "arrived"}, {"assignment", id}}));
      }
    }
    // Wait until every stage has a figure.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = http_request(f.port(), http::verb::get, "/api/stats", {}, "c-secret");
      REQUIRE(r.status == 200);
      const json::value body = r.json();
      const auto& rows = body.at("service_levels").as_array();
      if (!rows.empty() && rows[0].at("call_to_hospital").at("count").as_int64() == 1 &&
          rows[0].at("to_scene").at("count").as_int64() == 1) {
        before = r.body;
        break;
      }
      std::this_thread::yield();
    }
    REQUIRE(!before.empty());
  }
  CHECK(f.server->stop() == 0);
  f.start();
  auto after = http_request(f.port(), http::verb::get, "/api/stats", {}, "c-secret");
  REQUIRE(after.status == 200);
  const auto b = json::parse(before).at("service_levels").as_array();
  const auto a = after.json().at("service_levels").as_array();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    for (const char* stage : {"to_assign", "to_scene", "to_liability", "to_claim_paid", "call_to_airborne",
                              "call_to_landed", "call_to_hospital"}) {
      CAPTURE(stage);
      const auto& x = a[i].at(stage).as_object();
      const auto& y = b[i].at(stage).as_object();
      CHECK(x.at("count").as_int64() == y.at("count").as_int64());
      CHECK(x.at("mean_s").to_number<double>() == doctest::Approx(y.at("mean_s").to_number<double>()).epsilon(1e-3));
      CHECK(x.at("max_s").to_number<double>() == doctest::Approx(y.at("max_s").to_number<double>()).epsilon(1e-3));
    }
}
