// End to end, the rest of the wire contract: the console feed and commands, slow
// consumers, the pager flow, ack timeouts, REST, limits and metrics.
#include <doctest/doctest.h>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

const char* fleet = R"({"units": [
  {"id": "M1", "kind": "moto", "callsign": "渝警保01", "capcode": "1200001"},
  {"id": "M2", "kind": "moto", "callsign": "渝警保02", "capcode": "1200002"},
  {"id": "M3", "kind": "moto", "callsign": "渝警保03"},
  {"id": "C1", "kind": "car", "callsign": "渝查勘01"}
]})";

constexpr double XLAT = 29.560, XLON = 106.550;
constexpr double KM_LAT = 1 / 111.195, KM_LON = 1 / 96.72;

struct Fixture {
  TempDir dir;
  std::string db = dir.file("dispatch.db");
  std::string tokens = dir.file("tokens.json", default_tokens);
  std::string fleet_file = dir.file("fleet.json", fleet);
  std::optional<Server> server;

  explicit Fixture(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--db", db, "--tokens", tokens, "--fleet", fleet_file};
    args.insert(args.end(), extra.begin(), extra.end());
    server.emplace(args);
  }
  unsigned short port() const { return server->port(); }
  void place(Ws& gw) {
    const auto t = now_ms();
    gw.send("[" + position("M1", XLAT, XLON + 2 * KM_LON, t) + "," +
            position("M2", XLAT, XLON - 1 * KM_LON, t) + "," + position("M3", XLAT + 3 * KM_LAT, XLON, t) + "]");
  }
};

std::string msg(json::object o) { return json::serialize(o); }

}  // namespace

TEST_CASE("console: snapshot, a unit moves, an incident changes state, commands") {
  Fixture f;
  Ws console(f.port(), "/ws/console", "c-secret");
  auto snap = console.recv_type("snapshot");
  REQUIRE(snap);
  CHECK(snap->at("units").as_array().size() == 4);
  CHECK(snap->at("incidents").as_array().empty());
  for (auto& u : snap->at("units").as_array()) CHECK(u.at("lat").is_null());

  Ws gw(f.port(), "/ws/unit", "g-secret");
  f.place(gw);
  auto moved = console.recv_until([](const json::object& o) {
    return str(o, "type") == "unit" && str(o, "id") == "M2" && !o.at("lat").is_null();
  });
  REQUIRE(moved);
  CHECK(moved->at("lon").to_number<double>() == doctest::Approx(XLON - KM_LON).epsilon(1e-9));
  CHECK(str(*moved, "status") == "available");
  CHECK(str(*moved, "kind") == "moto");
  CHECK(str(*moved, "callsign") == "渝警保02");

  // A report from the console itself.
  console.send(report("desk-1", XLAT, XLON));
  auto acc = console.recv_type("accepted");
  REQUIRE(acc);
  const std::string incident = str(*acc, "incident");
  std::optional<json::object> assigned, m2_status;
  console.recv_until([&](const json::object& o) {
    if (str(o, "type") == "incident" && str(o, "id") == incident && str(o, "state") == "assigned") assigned = o;
    if (str(o, "type") == "unit" && str(o, "id") == "M2" && str(o, "status") == "assigned") m2_status = o;
    return assigned && m2_status;
  });
  REQUIRE(assigned);
  CHECK(assigned->at("assignments").as_array().size() == 1);
  REQUIRE(m2_status);
  CHECK(str(*m2_status, "incident") == incident);
  auto a1 = gw.recv_type("assign");
  REQUIRE(a1);
  CHECK(str(*a1, "unit") == "M2");

  // Manual assign of M3: it replaces M2, who is told with cancel.
  console.send(msg({{"type", "assign"}, {"incident", incident}, {"unit", "M3"}}));
  auto cancel = gw.recv_type("cancel");
  REQUIRE(cancel);
  CHECK(str(*cancel, "assignment") == str(*a1, "assignment"));
  CHECK(str(*cancel, "unit") == "M2");
  auto a3 = gw.recv_type("assign");
  REQUIRE(a3);
  CHECK(str(*a3, "unit") == "M3");

  // Cancel from the console: M3 is freed; M2 was taken off by hand, so the next is M1.
  console.send(msg({{"type", "cancel"}, {"assignment", str(*a3, "assignment")}}));
  auto c3 = gw.recv_type("cancel");
  REQUIRE(c3);
  CHECK(str(*c3, "unit") == "M3");
  auto a4 = gw.recv_type("assign");
  REQUIRE(a4);
  CHECK(str(*a4, "unit") == "M1");

  // Close: the last unit is told, the incident is closed.
  console.send(msg({{"type", "close"}, {"incident", incident}}));
  auto c4 = gw.recv_type("cancel");
  REQUIRE(c4);
  CHECK(str(*c4, "reason") == "incident closed");
  CHECK(console.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == incident && str(o, "state") == "closed";
  }));
  // Closing again is a conflict; an unknown incident is unknown.
  console.send(msg({{"type", "close"}, {"incident", incident}}));
  auto e1 = console.recv_type("error");
  REQUIRE(e1);
  CHECK(str(*e1, "code") == "conflict");
  console.send(msg({{"type", "close"}, {"incident", "I-999999"}}));
  auto e2 = console.recv_type("error");
  REQUIRE(e2);
  CHECK(str(*e2, "code") == "unknown_incident");
  CHECK(str(*e2, "ref") == "I-999999");
}

TEST_CASE("remote fast handling: liability, claims to insurers, paid, closed") {
  Fixture f;
  Ws console(f.port(), "/ws/console", "c-secret");
  REQUIRE(console.recv_type("snapshot"));
  Ws picc(f.port(), "/ws/insurer", "i-picc");
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(msg({{"type", "report"}, {"id", "online-1"}, {"lat", XLAT}, {"lon", XLON}, {"severity", "minor"},
                {"drivable", true}, {"parties_agree", true},
                {"vehicles", json::array{json::object{{"plate", "渝A11111"}, {"insurer", "人保财险"}},  // an alias of PICC
                                         json::object{{"plate", "渝B22222"}, {"insurer", "平安"}}}}}));
  auto acc = rep.recv_type("accepted");
  REQUIRE(acc);
  const std::string incident = str(*acc, "incident");
  auto remote = console.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == incident;
  });
  REQUIRE(remote);
  CHECK(str(*remote, "state") == "remote");
  CHECK(remote->at("assignments").as_array().empty());
  CHECK(remote->at("remote_deadline_ts").to_number<std::int64_t>() ==
        remote->at("reported_ts").to_number<std::int64_t>() + 300000);
  console.send(msg({{"type", "liability"}, {"incident", incident}, {"at_fault", "渝B22222"}, {"note", "变道"}}));
  // Each insurer gets its own claim: PICC now, 平安 when it connects.
  auto c1 = picc.recv_type("claim");
  REQUIRE(c1);
  CHECK(str(*c1, "incident") == incident);
  CHECK(str(*c1, "insurer") == "PICC");
  CHECK(c1->at("plates").as_array().at(0).as_string() == "渝A11111");
  CHECK(c1->at("insured_at_fault").as_bool() == false);
  CHECK(c1->at("deadline_ts").to_number<std::int64_t>() - c1->at("created_ts").to_number<std::int64_t>() == 900000);
  Ws pingan(f.port(), "/ws/insurer", "i-pingan");
  auto c2 = pingan.recv_type("claim");
  REQUIRE(c2);
  CHECK(c2->at("insured_at_fault").as_bool() == true);
  // An insurer cannot pay another's claim.
  picc.send(msg({{"type", "claim_paid"}, {"claim", str(*c2, "claim")}, {"amount", 100}}));
  auto forbidden = picc.recv_type("error");
  REQUIRE(forbidden);
  CHECK(str(*forbidden, "code") == "forbidden");
  picc.send(msg({{"type", "claim_paid"}, {"claim", str(*c1, "claim")}, {"amount", 0}}));
  pingan.send(msg({{"type", "claim_paid"}, {"claim", str(*c2, "claim")}, {"amount", 4200.5}}));
  auto closed = console.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == incident && str(o, "state") == "closed";
  });
  REQUIRE(closed);
  CHECK(str(*closed, "at_fault") == "渝B22222");
  REQUIRE(closed->at("claims").as_array().size() == 2);
  for (auto& c : closed->at("claims").as_array()) CHECK(c.at("state").as_string() == "paid");
  auto stats = http_request(f.port(), http::verb::get, "/api/stats", {}, "c-secret").json();
  bool found = false;
  for (auto& row : stats.at("service_levels").as_array())
    if (row.at("severity").as_string() == "minor") {
      found = true;
      CHECK(row.at("to_liability").at("count").to_number<int>() == 1);
      CHECK(row.at("to_claim_paid").at("count").to_number<int>() == 2);
    }
  CHECK(found);
  console.send(msg({{"type", "liability"}, {"incident", incident}}));
  auto e = console.recv_type("error");
  REQUIRE(e);
  CHECK(str(*e, "code") == "bad_message");
}

TEST_CASE("pager: page on assign, delivered, ack from the pager; undelivered pages come again") {
  Fixture f({"--page-retry", "1"});
  Ws gw(f.port(), "/ws/unit", "g-secret");
  f.place(gw);
  std::this_thread::sleep_for(100ms);
  Ws pager(f.port(), "/ws/pager", "p-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(report("pg-1", XLAT, XLON));
  auto page = pager.recv_type("page");
  REQUIRE(page);
  CHECK(str(*page, "unit") == "M2");
  CHECK(str(*page, "capcode") == "1200002");
  const std::string text = str(*page, "text");
  std::size_t chars = 0;
  for (unsigned char c : text) chars += (c & 0xC0) != 0x80;
  CHECK(chars <= 80);
  CHECK(text.find("渝警保02") != std::string::npos);
  auto assign = gw.recv_type("assign");
  REQUIRE(assign);
  CHECK(str(*page, "assignment") == str(*assign, "assignment"));
  // Not delivered: it comes again after --page-retry.
  auto again = pager.recv_type("page", 4s);
  REQUIRE(again);
  CHECK(str(*again, "page") == str(*page, "page"));
  pager.send(msg({{"type", "delivered"}, {"page", str(*page, "page")}}));
  pager.send(msg({{"type", "ack"}, {"assignment", str(*page, "assignment")}}));
  Ws console(f.port(), "/ws/console", "c-secret");
  auto snap = console.recv_type("snapshot");
  REQUIRE(snap);
  bool en_route = false;
  for (int i = 0; i < 40 && !en_route; ++i) {
    auto units = http_request(f.port(), http::verb::get, "/api/units", {}, "c-secret").json();
    for (auto& u : units.as_array())
      if (u.at("id").as_string() == "M2" && u.at("status").as_string() == "en_route") en_route = true;
    if (!en_route) std::this_thread::sleep_for(50ms);
  }
  CHECK(en_route);
  // Delivered: no more resends of that page.
  CHECK_FALSE(pager.recv_until([&](const json::object& o) { return str(o, "page") == str(*page, "page"); }, 2500ms));
  pager.send(msg({{"type", "delivered"}, {"page", "P-777777"}}));
  auto e = pager.recv_type("error");
  REQUIRE(e);
  CHECK(str(*e, "code") == "bad_message");
}

TEST_CASE("an unacked assignment lapses to the next unit, and the lapsed unit is told") {
  Fixture f({"--ack-timeout", "1"});
  Ws gw(f.port(), "/ws/unit", "g-secret");
  f.place(gw);
  std::this_thread::sleep_for(100ms);
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(report("lapse-1", XLAT, XLON));
  auto a1 = gw.recv_type("assign");
  REQUIRE(a1);
  CHECK(str(*a1, "unit") == "M2");
  CHECK(a1->at("ack_within_s").to_number<int>() == 1);
  auto cancel = gw.recv_type("cancel", 4s);
  REQUIRE(cancel);
  CHECK(str(*cancel, "assignment") == str(*a1, "assignment"));
  CHECK(str(*cancel, "reason").find("no ack") != std::string::npos);
  auto a2 = gw.recv_type("assign");
  REQUIRE(a2);
  CHECK(str(*a2, "unit") == "M1");
  gw.send(msg({{"type", "ack"}, {"assignment", str(*a1, "assignment")}}));
  auto e = gw.recv_type("error");
  REQUIRE(e);
  CHECK(str(*e, "code") == "conflict");
}

TEST_CASE("a console that never reads is dropped while another console and the units carry on") {
  // A small queue limit so that the test needs little traffic.
  Fixture f({"--console-max-queue", "2000000", "--rate", "100000", "--max-open-per-token", "100000"});
  Ws lazy(f.port(), "/ws/console", "c-secret");
  Ws good(f.port(), "/ws/console", "c-secret");
  REQUIRE(good.recv_type("snapshot"));
  Ws gw(f.port(), "/ws/unit", "g-secret");
  Ws rep(f.port(), "/ws/report", "r-secret");
  // Flood with incidents (never dropped) until the lazy console's queue passes its limit.
  // (Incidents are sent once each: enough of them to pass the queue limit and whatever the
  // kernel's socket buffers hold.)
  const std::string big_note(4000, 'x');
  bool dropped = false;
  int good_incidents = 0;
  for (int frame = 0; frame < 2000 && !dropped; ++frame) {
    json::array batch;
    for (int i = 0; i < 10; ++i)
      batch.push_back(json::object{{"type", "report"}, {"id", "flood-" + std::to_string(frame * 10 + i)},
                                   {"lat", XLAT}, {"lon", XLON}, {"severity", "minor"}, {"note", big_note}});
    rep.send(json::serialize(batch));
    // The good console keeps reading.
    while (auto t = good.recv(5ms))
      if (t->find("\"type\":\"incident\"") != std::string::npos) ++good_incidents;
    if (frame % 10 == 9) {
      auto m = http_request(f.port(), http::verb::get, "/metrics").body;
      dropped = m.find("dispatch_consoles_dropped_total 1") != std::string::npos;
    }
  }
  CHECK(good_incidents > 100);
  CHECK(dropped);
  // The units and the good console are still served.
  gw.send(position("M1", XLAT, XLON));
  CHECK(good.recv_until([](const json::object& o) {
    return str(o, "type") == "unit" && str(o, "id") == "M1";
  }, 10s));
  // Its incidents were all sent, in order, to the good console; nothing else was slowed.
  CHECK(http_request(f.port(), http::verb::get, "/healthz").status == 200);
  // The lazy console now reads: its stream ends with a close (or was cut).
  CHECK(lazy.wait_closed(15s));
}

TEST_CASE("limits: frame size, body size, rate, methods") {
  Fixture f({"--max-frame", "4096", "--max-body", "2048", "--rate", "5", "--gateway-rate", "5"});
  {
    Ws gw(f.port(), "/ws/unit", "g-secret");
    gw.send(std::string(5000, ' ') + "{}");
    CHECK(gw.wait_closed());
    CHECK(gw.close_code() == 1009);
  }
  const std::string body = R"({"id":"b","lat":29.5,"lon":106.5,"severity":"minor","note":")" +
                           std::string(3000, 'n') + "\"}";
  CHECK(http_request(f.port(), http::verb::post, "/api/incidents", body, "r-secret").status == 413);
  CHECK(http_request(f.port(), http::verb::delete_, "/api/units", {}, "c-secret").status == 405);
  CHECK(http_request(f.port(), http::verb::get, "/api/nothing", {}, "c-secret").status == 404);
  CHECK(http_request(f.port(), http::verb::get, "/api/incidents?state=all", {}, "c-secret").status == 200);
  CHECK(http_request(f.port(), http::verb::get, "/api/incidents?state=weird", {}, "c-secret").status == 400);
  Ws gw(f.port(), "/ws/unit", "g-secret");
  for (int i = 0; i < 30; ++i) gw.send(position("M1", XLAT, XLON, now_ms() - 30000 + i));
  auto e = gw.recv_type("error");
  REQUIRE(e);
  CHECK(str(*e, "code") == "rate_limited");
  const auto m = http_request(f.port(), http::verb::get, "/metrics").body;
  CHECK(m.find("dispatch_errors_total{code=\"rate_limited\"}") != std::string::npos);
  CHECK(m.find("dispatch_report_to_assign_seconds_bucket") != std::string::npos);
  CHECK(m.find("dispatch_store_commit_seconds_count") != std::string::npos);
}

TEST_CASE("metrics count messages by type, errors by code, assignments by outcome") {
  Fixture f;
  Ws gw(f.port(), "/ws/unit", "g-secret");
  f.place(gw);
  gw.send(std::string("{oops"));
  REQUIRE(gw.recv_type("error"));
  Ws rep(f.port(), "/ws/report", "r-secret");
  rep.send(report("m-1", XLAT, XLON));
  REQUIRE(rep.recv_type("accepted"));
  auto a = gw.recv_type("assign");
  REQUIRE(a);
  gw.send(msg({{"type", "decline"}, {"assignment", str(*a, "assignment")}}));
  REQUIRE(gw.recv_type("assign"));
  const auto m = http_request(f.port(), http::verb::get, "/metrics").body;
  CHECK(m.find("dispatch_messages_in_total{type=\"position\"} 3") != std::string::npos);
  CHECK(m.find("dispatch_messages_in_total{type=\"report\"} 1") != std::string::npos);
  CHECK(m.find("dispatch_errors_total{code=\"bad_json\"} 1") != std::string::npos);
  CHECK(m.find("dispatch_assignments_total{outcome=\"declined\"} 1") != std::string::npos);
  CHECK(m.find("dispatch_assignments_total{outcome=\"made\"} 2") != std::string::npos);
  CHECK(m.find("dispatch_connections_open{role=\"gateway\"} 1") != std::string::npos);
  CHECK(m.find("dispatch_report_to_assign_seconds_count 1") != std::string::npos);
}
