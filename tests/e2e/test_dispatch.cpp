// End to end: the real dispatchd binary, real WebSockets and HTTP over loopback, a real
// SQLite file.
#include <doctest/doctest.h>

#include <set>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "渝警保01", "capcode": "1200001"},
  {"id": "M2", "kind": "moto", "callsign": "渝警保02"},
  {"id": "M3", "kind": "moto", "callsign": "渝警保03"},
  {"id": "C1", "kind": "car", "callsign": "渝查勘01"},
  {"id": "H1", "kind": "heli", "callsign": "渝救援1", "base": {"lat": 29.72, "lon": 106.64}}
]})";

// The accident at X; M2 1 km west, M1 2 km east, M3 3 km north, C1 200 m away.
constexpr double XLAT = 29.560, XLON = 106.550;
constexpr double KM_LAT = 1 / 111.195, KM_LON = 1 / 96.72;

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens = dir.file("tokens.json", default_tokens);
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::optional<Server> server;

  Fixture() { start(); }
  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--db", db, "--tokens", tokens, "--fleet", fleet_file};
    args.insert(args.end(), extra.begin(), extra.end());
    server.emplace(args);
  }
  unsigned short port() const { return server->port(); }

  void place(Ws& gw) {
    const auto t = now_ms();
    gw.send("[" + position("M1", XLAT, XLON + 2 * KM_LON, t) + "," +
            position("M2", XLAT, XLON - 1 * KM_LON, t) + "," + position("M3", XLAT + 3 * KM_LAT, XLON, t) +
            "," + position("C1", XLAT, XLON + 0.2 * KM_LON, t) + "]");
  }
};

}  // namespace

TEST_CASE("report -> the nearest unit gets assign; decline -> the next; ack, arrive, clear") {
  Fixture f;
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  f.place(gw);
  // Positions are taken before the report (same engine queue, gateway frame first).
  std::this_thread::sleep_for(100ms);
  rep.send(report("cc-1", XLAT, XLON));
  auto acc = rep.recv_type("accepted");
  REQUIRE(acc);
  CHECK(str(*acc, "id") == "cc-1");
  const std::string incident = str(*acc, "incident");
  CHECK(!incident.empty());

  auto a1 = gw.recv_type("assign");
  REQUIRE(a1);
  CHECK(str(*a1, "unit") == "M2");
  CHECK(str(*a1, "incident") == incident);
  CHECK(str(*a1, "task") == "scene");
  CHECK(str(*a1, "severity") == "injury");
  CHECK(a1->at("lat").to_number<double>() == doctest::Approx(XLAT));
  CHECK(a1->at("eta_s").to_number<int>() > 100);
  CHECK(a1->at("ack_within_s").to_number<int>() == 30);

  gw.send(json::serialize(json::object{{"type", "decline"}, {"assignment", str(*a1, "assignment")}, {"reason", "busy"}}));
  auto a2 = gw.recv_type("assign");
  REQUIRE(a2);
  CHECK(str(*a2, "unit") == "M1");
  const std::string asg = str(*a2, "assignment");

  for (const char* step : {"ack", "arrived", "cleared"})
    gw.send(json::serialize(json::object{{"type", step}, {"assignment", asg}}));
  // The incident closes once its unit has cleared.
  json::value inc;
  for (int i = 0; i < 50; ++i) {
    auto r = http_request(f.port(), http::verb::get, "/api/incidents/" + incident, {}, "c-secret");
    REQUIRE(r.status == 200);
    inc = r.json();
    if (inc.at("state").as_string() == "closed") break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(inc.at("state").as_string() == "closed");
  auto& asgs = inc.at("assignments").as_array();
  REQUIRE(asgs.size() == 2);
  CHECK(asgs[0].at("state").as_string() == "declined");
  CHECK(asgs[1].at("state").as_string() == "cleared");
  CHECK(asgs[1].at("acked_ts").is_int64());
  CHECK(inc.at("timeline").as_array().size() >= 6);
  CHECK(f.server->stop() == 0);
}

TEST_CASE("the assign goes to the unit's own connection; a unit token speaks only for itself") {
  Fixture f;
  Ws m2(f.port(), "/ws/unit", "u-m2");
  Ws rep(f.port(), "/ws/report", "r-secret");
  m2.send(position("M2", XLAT, XLON - 0.5 * KM_LON));
  m2.send(position("M1", XLAT, XLON));
  auto err = m2.recv_type("error");
  REQUIRE(err);
  CHECK(str(*err, "code") == "forbidden");
  CHECK(str(*err, "ref") == "M1");
  rep.send(report("cc-2", XLAT, XLON));
  auto a = m2.recv_type("assign");
  REQUIRE(a);
  CHECK(str(*a, "unit") == "M2");
}

TEST_CASE("restart on the same database: the incident is still open with its assignment") {
  Fixture f;
  std::string incident, assignment;
  {
    Ws gw(f.port(), "/ws/unit", "g-secret");
    Ws rep(f.port(), "/ws/report", "r-secret");
    f.place(gw);
    std::this_thread::sleep_for(100ms);
    rep.send(report("cc-3", XLAT, XLON));
    auto acc = rep.recv_type("accepted");
    REQUIRE(acc);
    incident = str(*acc, "incident");
    auto a = gw.recv_type("assign");
    REQUIRE(a);
    assignment = str(*a, "assignment");
    gw.send(json::serialize(json::object{{"type", "ack"}, {"assignment", assignment}}));
    std::this_thread::sleep_for(200ms);
  }
  CHECK(f.server->stop() == 0);
  f.start();
  Ws console(f.port(), "/ws/console", "c-secret");
  auto snap = console.recv_type("snapshot");
  REQUIRE(snap);
  const json::object* found = nullptr;
  for (auto& i : snap->at("incidents").as_array())
    if (str(i.as_object(), "id") == incident) found = &i.as_object();
  REQUIRE(found);
  CHECK(str(*found, "state") == "en_route");
  REQUIRE(found->at("assignments").as_array().size() == 1);
  CHECK(str(found->at("assignments").as_array()[0].as_object(), "assignment") == assignment);
  for (auto& u : snap->at("units").as_array())
    if (str(u.as_object(), "id") == "M2") CHECK(str(u.as_object(), "status") == "en_route");
  // The same report id again: the same incident, not a new one.
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(report("cc-3", XLAT, XLON));
  auto again = rep.recv_type("accepted");
  REQUIRE(again);
  CHECK(str(*again, "incident") == incident);
  // The unit can carry on with its assignment after the restart.
  Ws gw(f.port(), "/ws/unit", "g-secret");
  gw.send(json::serialize(json::object{{"type", "arrived"}, {"assignment", assignment}}));
  auto inc = console.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == incident && str(o, "state") == "on_scene";
  });
  CHECK(inc);
}

TEST_CASE("bad frames get an error and the connection still works") {
  Fixture f;
  Ws gw(f.port(), "/ws/unit", "g-secret");
  struct Case {
    std::string frame, code, ref;
  };
  const std::vector<Case> cases{
      {"{not json", "bad_json", ""},
      {R"({"type":"teleport","unit":"M1"})", "unknown_type", "M1"},
      {R"({"unit":"M1"})", "bad_message", "M1"},
      {R"({"type":"position","unit":"M1","lat":91,"lon":106,"ts":1})", "bad_message", "M1"},
      {R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5})", "bad_message", "M1"},
      {R"({"type":"position","unit":"M1","lat":"29.5","lon":106.5,"ts":1})", "bad_message", "M1"},
      {R"({"type":"position","unit":"NOPE","lat":29.5,"lon":106.5,"ts":1})", "unknown_unit", "NOPE"},
      {R"({"type":"ack","assignment":"A-424242"})", "unknown_assignment", "A-424242"},
      {R"({"type":"report","id":"x","lat":29.5,"lon":106.5,"severity":"minor"})", "forbidden", "x"},
      {R"({"type":"status","unit":"M1","status":"asleep"})", "bad_message", "M1"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.frame);
    gw.send(c.frame);
    auto e = gw.recv_type("error");
    REQUIRE(e);
    CHECK(str(*e, "code") == c.code);
    CHECK(!str(*e, "message").empty());
    if (c.ref.empty()) CHECK(e->at("ref").is_null());
    else CHECK(str(*e, "ref") == c.ref);
  }
  // A batch: one bad message does not drop the others.
  gw.send("[" + position("M1", XLAT, XLON) + R"(,{"type":"position","unit":"M9"},)" +
          position("M2", XLAT, XLON + KM_LON) + "]");
  auto e = gw.recv_type("error");
  REQUIRE(e);
  CHECK(str(*e, "code") == "bad_message");
  auto units = http_request(f.port(), http::verb::get, "/api/units", {}, "c-secret").json();
  int placed = 0;
  for (auto& u : units.as_array())
    if (!u.at("lat").is_null()) ++placed;
  CHECK(placed == 2);
  // Still serving on the same connection.
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(report("cc-4", XLAT, XLON));
  CHECK(rep.recv_type("accepted"));
  CHECK(gw.recv_type("assign"));
}

TEST_CASE("tokens: 401 without a valid one, 403 on another role's path; health needs none") {
  Fixture f;
  CHECK(Ws::try_upgrade(f.port(), "/ws/unit", "") == 401);
  CHECK(Ws::try_upgrade(f.port(), "/ws/unit", "wrong") == 401);
  CHECK(Ws::try_upgrade(f.port(), "/ws/console", "r-secret") == 403);
  CHECK(Ws::try_upgrade(f.port(), "/ws/pager", "p-secret") == 101);
  CHECK(http_request(f.port(), http::verb::get, "/healthz").status == 200);
  CHECK(http_request(f.port(), http::verb::get, "/healthz").body == "ok\n");
  CHECK(http_request(f.port(), http::verb::get, "/api/units").status == 401);
  CHECK(http_request(f.port(), http::verb::get, "/api/units", {}, "r-secret").status == 403);
  CHECK(http_request(f.port(), http::verb::get, "/api/units?token=c-secret").status == 200);
  const auto m = http_request(f.port(), http::verb::get, "/metrics");
  CHECK(m.status == 200);
  CHECK(m.body.find("dispatch_connections_total{role=\"pager\"} 1") != std::string::npos);
}

TEST_CASE("POST /api/incidents answers 201 once durable, and is idempotent") {
  Fixture f;
  Ws gw(f.port(), "/ws/unit", "g-secret");
  f.place(gw);
  std::this_thread::sleep_for(100ms);
  const std::string body = R"({"id":"web-1","lat":29.56,"lon":106.55,"severity":"minor",
    "vehicles":[{"plate":"渝A12345","insurer":"PICC"}],"note":"追尾"})";
  auto r = http_request(f.port(), http::verb::post, "/api/incidents", body, "r-secret");
  CHECK(r.status == 201);
  const std::string incident = std::string(r.json().at("incident").as_string());
  auto again = http_request(f.port(), http::verb::post, "/api/incidents", body, "r-secret");
  CHECK(again.status == 201);
  CHECK(again.json().at("incident").as_string() == incident);
  auto bad = http_request(f.port(), http::verb::post, "/api/incidents", R"({"id":"web-2"})", "r-secret");
  CHECK(bad.status == 400);
  CHECK(bad.json().at("code").as_string() == "bad_message");
  auto rec = http_request(f.port(), http::verb::get, "/api/incidents/" + incident, {}, "c-secret").json();
  CHECK(rec.at("vehicles").as_array()[0].at("plate").as_string() == "渝A12345");
  CHECK(rec.at("note").as_string() == "追尾");
  CHECK(http_request(f.port(), http::verb::get, "/api/incidents/I-999999", {}, "c-secret").status == 404);
  CHECK(gw.recv_type("assign"));
}

TEST_CASE("a unit's track, downsampled, as GeoJSON") {
  Fixture f;
  Ws gw(f.port(), "/ws/unit", "g-secret");
  const auto t0 = now_ms() - 250'000;
  // A point every 10 s for 4 minutes, moving 150 m each time: downsampled by distance.
  for (int i = 0; i < 24; ++i)
    gw.send(position("M1", XLAT + i * 0.00135, XLON, t0 + i * 10'000));
  std::this_thread::sleep_for(300ms);
  json::value track;
  for (int i = 0; i < 20; ++i) {
    auto r = http_request(f.port(), http::verb::get, "/api/units/M1/track?since=0", {}, "c-secret");
    REQUIRE(r.status == 200);
    track = r.json();
    if (track.at("geometry").at("coordinates").as_array().size() == 24) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(track.at("type").as_string() == "Feature");
  CHECK(track.at("geometry").at("type").as_string() == "LineString");
  const auto& coords = track.at("geometry").at("coordinates").as_array();
  REQUIRE(coords.size() == 24);
  CHECK(coords[0].as_array()[0].to_number<double>() == doctest::Approx(XLON));  // lon first
  CHECK(coords[0].as_array()[1].to_number<double>() == doctest::Approx(XLAT));
  auto part = http_request(f.port(), http::verb::get,
                           "/api/units/M1/track?since=" + std::to_string(t0 + 100'000) + "&until=" +
                               std::to_string(t0 + 150'000), {}, "c-secret").json();
  CHECK(part.at("geometry").at("coordinates").as_array().size() == 6);
  // Standing still: one point a minute, not one per fix.
  for (int i = 0; i < 10; ++i) gw.send(position("M2", XLAT, XLON, t0 + i * 10'000));
  std::this_thread::sleep_for(300ms);
  auto still = http_request(f.port(), http::verb::get, "/api/units/M2/track", {}, "c-secret").json();
  CHECK(still.at("geometry").at("coordinates").as_array().size() == 2);
  CHECK(http_request(f.port(), http::verb::get, "/api/units/NOPE/track", {}, "c-secret").status == 404);
}

TEST_CASE("a console's snapshot and a flush of every unit above its queue bound: it is kept and gets every unit") {
  // 400 units and a bound of 32 KB: the snapshot (about 200 bytes a unit with positions)
  // is above it, and so would be one flush of every unit; the snapshot is not held against
  // the bound and a flush takes at most bound/512 units (the rest wait, coalesced).
  constexpr int n = 400;
  auto id = [](int i) { return "B" + std::to_string(1000 + i); };
  TempDir dir;
  std::string units = R"({"units": [)";
  for (int i = 0; i < n; ++i)
    units += (i ? "," : "") + json::serialize(json::object{{"id", id(i)}, {"kind", "moto"}, {"callsign", "渝警保" + id(i)}});
  units += "]}";
  Server server({"--db", dir.file("d.db"), "--tokens", dir.file("tokens.json", default_tokens), "--fleet",
                 dir.file("fleet.json", units), "--console-max-queue", "32768"});
  auto move_all = [&](Ws& gw, std::int64_t ts) {
    std::string frame = "[";
    for (int i = 0; i < n; ++i)
      frame += (i ? "," : "") + position(id(i), XLAT + i * 1e-4, XLON, ts);
    gw.send(frame + "]");
  };
  // Every unit seen at `ts` (or later) on console c: its unit messages or its snapshot.
  auto sees_all = [&](Ws& c, std::int64_t ts) {
    std::set<std::string> seen;
    c.recv_until(
        [&](const json::object& o) {
          if (str(o, "type") == "unit" && o.at("ts").is_int64() && o.at("ts").as_int64() >= ts)
            seen.insert(str(o, "id"));
          return seen.size() == static_cast<std::size_t>(n);
        },
        15s);
    return seen.size();
  };
  Ws first(server.port(), "/ws/console", "c-secret");
  REQUIRE(first.recv_type("snapshot"));
  Ws gw(server.port(), "/ws/unit", "g-secret");
  const auto t1 = now_ms();
  move_all(gw, t1);
  CHECK(sees_all(first, t1) == n);  // the engine has every position now

  Ws second(server.port(), "/ws/console", "c-secret");
  auto snap = second.recv_type("snapshot", 10s);
  REQUIRE(snap);
  const auto& snap_units = snap->at("units").as_array();
  CHECK(snap_units.size() == static_cast<std::size_t>(n));
  CHECK(json::serialize(*snap).size() > 32768);
  for (const auto& u : snap_units) CHECK(u.at("ts").as_int64() == t1);

  const auto t2 = t1 + 1000;
  move_all(gw, t2);
  CHECK(sees_all(first, t2) == n);
  CHECK(sees_all(second, t2) == n);
  CHECK_FALSE(first.closed());
  CHECK_FALSE(second.closed());
  const auto m = http_request(server.port(), http::verb::get, "/metrics").body;
  CHECK(m.find("dispatch_consoles_dropped_total 0") != std::string::npos);
}
