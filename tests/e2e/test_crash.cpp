// Crash safety: SIGKILL in the middle of a stream of reports; after the restart every
// report that got `accepted` is there exactly once with its assignment, and sending the
// same ids again returns the same incidents.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {
std::string fmt_unit(int i) {
  return R"({"id": "M)" + std::to_string(i) + R"(", "kind": "moto", "callsign": "渝警保)" + std::to_string(i) + "\"}";
}
}  // namespace

TEST_CASE("SIGKILL mid-stream: nothing confirmed is lost, nothing duplicated") {
  TempDir dir;
  // 80 motorcycle teams around the same square, so that every report finds a unit.
  std::string fleet = R"({"units": [)";
  for (int i = 0; i < 80; ++i) fleet += (i ? "," : "") + fmt_unit(i);
  fleet += "]}";
  const std::string db = dir.file("d.db"), tokens = dir.file("tokens.json", default_tokens),
                    fleet_file = dir.file("fleet.json", fleet);
  std::vector<std::string> args{"--db", db, "--tokens", tokens, "--fleet", fleet_file};
  std::optional<Server> server;
  server.emplace(args);

  std::map<std::string, std::string> accepted;  // report id -> incident
  {
    Ws gw(server->port(), "/ws/unit", "g-secret");
    std::string batch = "[";
    for (int i = 0; i < 80; ++i)
      batch += (i ? "," : "") + position("M" + std::to_string(i), 29.5 + i * 0.001, 106.5, now_ms());
    gw.send(batch + "]");
    std::this_thread::sleep_for(200ms);
    Ws rep(server->port(), "/ws/report", "r-secret");
    for (int i = 0; i < 60; ++i) {
      rep.send(report("crash-" + std::to_string(i), 29.5 + i * 0.001, 106.5005));
      if (i == 35) server->kill9();  // mid-stream, with reports in flight
      while (auto text = rep.recv(2ms)) {
        auto v = json::parse(*text).as_object();
        if (str(v, "type") == "accepted") accepted[str(v, "id")] = str(v, "incident");
      }
      if (!server->running()) break;
    }
    while (auto text = rep.recv(50ms)) {
      auto v = json::parse(*text).as_object();
      if (str(v, "type") == "accepted") accepted[str(v, "id")] = str(v, "incident");
    }
  }
  MESSAGE(accepted.size() << " reports were accepted before the kill");
  REQUIRE(accepted.size() >= 5);

  server.emplace(args);
  // Every unit where it was last seen (its first position was a track point, committed
  // before any accepted report), not without a position until its next fix.
  auto units = http_request(server->port(), http::verb::get, "/api/units", {}, "c-secret").json();
  std::size_t placed = 0;
  for (auto& u : units.as_array())
    placed += !u.as_object().at("lat").is_null() && !u.as_object().at("ts").is_null();
  CHECK(placed == 80);
  auto all = http_request(server->port(), http::verb::get, "/api/incidents?state=all", {}, "c-secret").json();
  std::map<std::string, int> times;
  std::map<std::string, const json::object*> by_report;
  for (auto& i : all.as_array()) {
    ++times[str(i.as_object(), "report_id")];
    by_report[str(i.as_object(), "report_id")] = &i.as_object();
  }
  for (const auto& [id, incident] : accepted) {
    CAPTURE(id);
    REQUIRE(times[id] == 1);
    CHECK(str(*by_report[id], "id") == incident);
    CHECK(by_report[id]->at("assignments").as_array().size() == 1);
  }
  for (const auto& [id, n] : times) CHECK(n == 1);  // nothing twice, confirmed or not

  // The same ids again: the same incidents, no new ones.
  Ws rep(server->port(), "/ws/report", "r-secret");
  for (const auto& [id, incident] : accepted) rep.send(report(id, 29.6, 106.6));
  std::size_t same = 0;
  for (std::size_t k = 0; k < accepted.size(); ++k) {
    auto a = rep.recv_type("accepted");
    REQUIRE(a);
    same += accepted.at(str(*a, "id")) == str(*a, "incident");
  }
  CHECK(same == accepted.size());
  auto after = http_request(server->port(), http::verb::get, "/api/incidents?state=all", {}, "c-secret").json();
  CHECK(after.as_array().size() == all.as_array().size());
  CHECK(server->stop() == 0);
}
