// The wire protocol codec on its own: frames to commands and errors, events to JSON.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "net/config.hpp"
#include "net/position_parser.hpp"
#include "net/protocol.hpp"

using namespace dispatch;
using namespace dispatch::net;
namespace json = boost::json;

TEST_CASE("a batch of positions becomes one list for the hot path") {
  ParsedFrame f;
  parse_frame(R"([{"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1764300000000,"speed_kmh":31.5},
                  {"type":"position","unit":"M2","lat":29.6,"lon":106.6,"ts":1764300000001,"heading":90}])",
              "gateway", f);
  REQUIRE(f.positions.size() == 2);
  CHECK(f.errors.empty());
  CHECK(f.positions[0].unit == "M1");
  CHECK(f.positions[0].ts == 1764300000000);
  CHECK(*f.positions[0].speed_kmh == 31.5);
  CHECK_FALSE(f.positions[0].heading.has_value());
  CHECK(*f.positions[1].heading == 90);
  CHECK(f.types.size() == 2);
}

namespace {
// parse_frame (with its fast path) and the DOM path alone must agree on everything.
void same_as_general(std::string_view text, std::optional<Role> role) {
  CAPTURE(text);
  ParsedFrame a, b;
  parse_frame(text, role, a);
  parse_frame_general(text, role, b);
  CHECK(a.messages == b.messages);
  CHECK(a.types == b.types);
  CHECK(a.commands.size() == b.commands.size());
  REQUIRE(a.positions.size() == b.positions.size());
  for (std::size_t i = 0; i < a.positions.size(); ++i) {
    CHECK(a.positions[i].unit == b.positions[i].unit);
    CHECK(a.positions[i].lat == b.positions[i].lat);
    CHECK(a.positions[i].lon == b.positions[i].lon);
    CHECK(a.positions[i].ts == b.positions[i].ts);
    CHECK(a.positions[i].speed_kmh == b.positions[i].speed_kmh);
    CHECK(a.positions[i].heading == b.positions[i].heading);
  }
  REQUIRE(a.errors.size() == b.errors.size());
  for (std::size_t i = 0; i < a.errors.size(); ++i) {
    CHECK(a.errors[i].code == b.errors[i].code);
    CHECK(a.errors[i].message == b.errors[i].message);
    CHECK(a.errors[i].ref == b.errors[i].ref);
  }
}
bool fast_takes(std::string_view text) {
  std::vector<engine::cmd::Position> out;
  std::size_t n = 0;
  const bool took = parse_positions_fast(text, out, n);
  CHECK(out.size() == (took ? n : 0));  // all or nothing
  return took;
}
}  // namespace

TEST_CASE("positions: the fast path takes only what the general path takes whole, with the same result") {
  // Taken by the fast path.
  const std::vector<std::string> fast = {
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1764300000000})",
      R"( [ {"ts":1764300000000,"lon":106,"lat":-29,"unit":"M\u00e9","type":"position","speed_kmh":null,"heading":359.5} ] )",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1.7643e12,"extra":"x","n":1,"b":true,"z":null})",
      R"([{"type":"position","unit":"M1","lat":90,"lon":-180,"ts":0,"speed_kmh":2000},)"
      R"({"type":"position","unit":"M2","lat":-90,"lon":180,"ts":32503680000000,"heading":0}])",
  };
  for (const auto& t : fast) {
    CHECK(fast_takes(t));
    same_as_general(t, Role::gateway);
    same_as_general(t, std::nullopt);
  }
  // Left to the general path: errors to tell, other types, shapes the fast path does not read.
  const std::vector<std::string> general = {
      R"([])",
      R"([42])",
      R"("position")",
      R"({"type":"position","unit":"","lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position","unit":null,"lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position","unit":7,"lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position","unit":"M1","lat":"29.5","lon":106.5,"ts":1})",
      R"({"type":"position","unit":"M1","lat":95,"lon":106.5,"ts":1})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":-1})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1.5})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":18446744073709551615})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":32503680000001})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1,"speed_kmh":-1})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1,"heading":true})",
      R"({"type":"position","unit":"M1","unit":"M2","lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position","type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1,"extra":{"a":1}})",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1,"extra":[1]})",
      R"({"type":"positions","unit":"M1","lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"position_","unit":"M1","lat":29.5,"lon":106.5,"ts":1})",
      R"({"type":"status","unit":"M1","status":"available"})",
      R"([{"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1},{"type":"ack","assignment":"A-1"}])",
      R"([{"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1}],)",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1} {})",
      R"([[{"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1}]])",
      R"({"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1 /* c */})",
  };
  for (const auto& t : general) {
    CHECK_FALSE(fast_takes(t));
    same_as_general(t, Role::gateway);
    same_as_general(t, Role::unit);
    same_as_general(t, Role::console);  // positions are forbidden there
    same_as_general(t, std::nullopt);
  }
  // A unit id of 256 bytes is taken; of 257, refused.
  const auto with_unit = [](std::size_t n) {
    return R"({"type":"position","unit":")" + std::string(n, 'u') + R"(","lat":1,"lon":2,"ts":3})";
  };
  CHECK(fast_takes(with_unit(256)));
  CHECK_FALSE(fast_takes(with_unit(257)));
  same_as_general(with_unit(257), Role::gateway);
}

TEST_CASE("each bad message in a batch is its own error; the good ones stay") {
  ParsedFrame f;
  parse_frame(R"([{"type":"position","unit":"M1","lat":29.5,"lon":106.5,"ts":1},
                  {"type":"position","unit":"M2","lat":95,"lon":106.5,"ts":1},
                  42,
                  {"type":"ack","assignment":"A-000001"},
                  {"type":"fly","unit":"M3"}])",
              "unit", f);
  CHECK(f.positions.size() == 1);
  CHECK(f.commands.size() == 1);
  REQUIRE(f.errors.size() == 3);
  CHECK(f.errors[0].code == engine::ErrorCode::bad_message);
  CHECK(f.errors[0].ref == "M2");
  CHECK(f.errors[0].message.find("lat") != std::string::npos);
  CHECK(f.errors[1].code == engine::ErrorCode::bad_message);
  CHECK(f.errors[2].code == engine::ErrorCode::unknown_type);
  CHECK(f.errors[2].ref == "M3");
}

TEST_CASE("roles: a message type outside the connection's role is forbidden") {
  ParsedFrame f;
  parse_frame(R"({"type":"assign","incident":"I-1","unit":"M1"})", "unit", f);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].code == engine::ErrorCode::forbidden);
  f.clear();
  parse_frame(R"({"type":"assign","incident":"I-1","unit":"M1"})", "console", f);
  CHECK(f.errors.empty());
  CHECK(std::holds_alternative<engine::cmd::Assign>(f.commands.at(0)));
  f.clear();
  parse_frame(R"({"type":"ack","assignment":"A-1"})", "pager", f);
  CHECK(f.errors.empty());
  f.clear();
  parse_frame(R"({"type":"report","id":"x","lat":1,"lon":2,"severity":"minor"})", "pager", f);
  CHECK(f.errors.at(0).code == engine::ErrorCode::forbidden);
}

TEST_CASE("reports: required fields, defaults and types") {
  engine::cmd::Report r;
  engine::ev::Error e;
  REQUIRE(parse_report(R"({"id":"cc-1","lat":29.563,"lon":106.551,"severity":"injury"})", r, e));
  CHECK(r.id == "cc-1");
  CHECK_FALSE(r.ts.has_value());
  CHECK(r.injured == 0);
  CHECK_FALSE(r.drivable);
  CHECK(r.vehicles.empty());
  CHECK(parse_report(R"({"type":"report","id":"cc-2","lat":29.5,"lon":106.5,"severity":"minor","ts":1764300000000,
      "injured":2,"drivable":true,"parties_agree":true,"vehicles":[{"plate":"渝A12345","insurer":"PICC"},{"plate":"渝B1"}],
      "note":"追尾"})", r, e));
  CHECK(r.vehicles.size() == 2);
  CHECK(r.vehicles[1].insurer.empty());
  CHECK(*r.ts == 1764300000000);
  struct Bad {
    const char* body;
    engine::ErrorCode code;
    const char* field;
  };
  for (const Bad& b : {Bad{"{", engine::ErrorCode::bad_json, ""},
                       Bad{"[]", engine::ErrorCode::bad_message, ""},
                       Bad{R"({"lat":1,"lon":2,"severity":"minor"})", engine::ErrorCode::bad_message, "id"},
                       Bad{R"({"id":"a","lat":1,"lon":2,"severity":"fatal"})", engine::ErrorCode::bad_message, "severity"},
                       Bad{R"({"id":"a","lat":1,"lon":200,"severity":"minor"})", engine::ErrorCode::bad_message, "lon"},
                       Bad{R"({"id":"a","lat":1,"lon":2,"severity":"minor","ts":1.5})", engine::ErrorCode::bad_message, "ts"},
                       Bad{R"({"id":"a","lat":1,"lon":2,"severity":"minor","injured":-1})", engine::ErrorCode::bad_message, "injured"},
                       Bad{R"({"id":"a","lat":1,"lon":2,"severity":"minor","drivable":"yes"})", engine::ErrorCode::bad_message, "drivable"},
                       Bad{R"({"id":"a","lat":1,"lon":2,"severity":"minor","vehicles":[{"insurer":"x"}]})", engine::ErrorCode::bad_message, "vehicles"}}) {
    CAPTURE(b.body);
    engine::cmd::Report rr;
    CHECK_FALSE(parse_report(b.body, rr, e));
    CHECK(e.code == b.code);
    CHECK(e.message.find(b.field) != std::string::npos);
  }
}

TEST_CASE("rendered messages are valid JSON with the contract's fields") {
  auto err = json::parse(render_error({engine::ErrorCode::unknown_unit, "no \"such\" unit\n", "M9"})).as_object();
  CHECK(err.at("type").as_string() == "error");
  CHECK(err.at("code").as_string() == "unknown_unit");
  CHECK(err.at("message").as_string() == "no \"such\" unit\n");
  CHECK(err.at("ref").as_string() == "M9");
  CHECK(json::parse(render_error({engine::ErrorCode::bad_json, "x", ""})).at("ref").is_null());
  auto a = json::parse(render_assign({"A-000001", "M1", "I-000001", engine::Task::landing_zone, 29.5630001,
                                      106.551, engine::Severity::critical, 187, 30}))
               .as_object();
  for (const char* k : {"assignment", "unit", "incident", "task", "lat", "lon", "severity", "eta_s", "ack_within_s"})
    CHECK(a.contains(k));
  CHECK(a.at("task").as_string() == "landing_zone");
  CHECK(a.at("lat").to_number<double>() == doctest::Approx(29.5630001).epsilon(1e-9));
  auto p = json::parse(render_page({"P-1", "M1", "1200001", "A-1", "渝警保01 ..."})).as_object();
  CHECK(p.at("type").as_string() == "page");
  CHECK(p.at("text").as_string() == "渝警保01 ...");
}

TEST_CASE("tokens and fleet files: good ones load, bad ones say what is wrong") {
  auto t = parse_tokens(R"({"tokens":[{"token":"a","role":"console"},{"token":"b","role":"gateway","units":["*"]},
      {"token":"c","role":"unit","units":["M1","M2"]}]})", "t");
  CHECK(t.find("a")->role == "console");
  CHECK(t.find("b")->all_units);
  CHECK(t.find("c")->may_speak_for("M2"));
  CHECK_FALSE(t.find("c")->may_speak_for("M3"));
  CHECK(t.find("zzz") == nullptr);
  CHECK_THROWS_WITH_AS(parse_tokens(R"({"tokens":[{"token":"a","role":"king"}]})", "t.json"),
                       doctest::Contains("unknown role"), std::runtime_error);
  CHECK_THROWS_AS(parse_tokens(R"({"tokens":[{"token":"a","role":"unit"}]})", "t.json"), std::runtime_error);
  auto f = parse_fleet(R"({"units":[{"id":"H1","kind":"heli","callsign":"渝救援1","base":{"lat":29.72,"lon":106.64}},
      {"id":"M1","kind":"moto","capcode":"1200001"}]})", "f");
  REQUIRE(f.size() == 2);
  CHECK(f[0].base->lat == 29.72);
  CHECK(f[1].callsign == "M1");
  CHECK(f[1].capcode == "1200001");
  CHECK_THROWS_WITH_AS(parse_fleet(R"({"units":[{"id":"X","kind":"boat"}]})", "f.json"),
                       doctest::Contains("unknown kind"), std::runtime_error);
  CHECK_THROWS_WITH_AS(parse_fleet(R"({"units":[{"id":"X","kind":"moto"},{"id":"X","kind":"moto"}]})", "f.json"),
                       doctest::Contains("twice"), std::runtime_error);
}
