// The pure rooms of net/ on their own: the Role table, the error catalog, the rate limiter,
// the release gate, the console feed, connection slots, the REST route table, the JSON
// writer's strings and the parser's per-role checks. No sockets, no sleeps: where time
// matters it is an argument.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/types.hpp"
#include "net/connection_slots.hpp"
#include "net/console_feed.hpp"
#include "net/error_catalog.hpp"
#include "net/json_writer.hpp"
#include "net/protocol.hpp"
#include "net/rate_limiter.hpp"
#include "net/release_gate.hpp"
#include "net/role.hpp"
#include "net/routes.hpp"

using namespace dispatch;
using namespace dispatch::net;
namespace json = boost::json;

namespace {

constexpr std::array<Role, role_count> all_roles{Role::console, Role::reporter, Role::unit,
                                                 Role::gateway, Role::pager,    Role::insurer};

// Every message type a client may send (wire contract section 5).
constexpr std::array<std::string_view, 15> all_types{
    "position", "status", "ack",       "decline", "arrived",  "cleared", "report",    "assign",
    "cancel",   "liability", "close",  "delivered", "escalate", "rescue", "claim_paid"};

// What each role may send, written out independently of role.hpp's table.
const std::map<Role, std::vector<std::string_view>>& allowed_by_role() {
  static const std::map<Role, std::vector<std::string_view>> m{
      {Role::console, {"report", "assign", "cancel", "liability", "close", "escalate"}},
      {Role::reporter, {"report"}},
      {Role::unit, {"position", "status", "ack", "decline", "arrived", "cleared", "rescue"}},
      {Role::gateway, {"position", "status", "ack", "decline", "arrived", "cleared", "rescue"}},
      {Role::pager, {"ack", "delivered"}},
      {Role::insurer, {"claim_paid"}},
  };
  return m;
}

bool listed(const std::vector<std::string_view>& v, std::string_view t) {
  for (auto x : v)
    if (x == t) return true;
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// net/role.hpp

// The table is constexpr: check it at compile time too (undefined behaviour in a constant
// expression does not compile).
static_assert(may_send(Role::console, "report"));
static_assert(!may_send(Role::console, "position"));
static_assert(!may_send(Role::reporter, "repo"));
static_assert(!may_send(Role::reporter, " report "));
static_assert(!may_send(Role::console, "report assign"));
static_assert(role_for_path(Role::gateway, "/ws/unit") == Role::gateway);
static_assert(is_ws_path("/ws/pager") && !is_ws_path("/ws/"));

TEST_CASE("role: parse_role and to_string round trip; unknown names are refused") {
  for (Role r : all_roles) {
    const auto parsed = parse_role(to_string(r));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == r);
    CHECK(info(r).role == r);
  }
  CHECK(to_string(Role::console) == "console");
  CHECK(to_string(Role::reporter) == "reporter");
  CHECK(to_string(Role::unit) == "unit");
  CHECK(to_string(Role::gateway) == "gateway");
  CHECK(to_string(Role::pager) == "pager");
  CHECK(to_string(Role::insurer) == "insurer");
  for (std::string_view bad : {"", "Console", "consol", "consoles", " console", "admin", "report"})
    CHECK_FALSE(parse_role(bad).has_value());
}

TEST_CASE("role: may_send for every role and every message type") {
  for (Role r : all_roles) {
    const auto& allowed = allowed_by_role().at(r);
    for (auto t : all_types) {
      INFO("role ", to_string(r), " type ", t);
      CHECK(may_send(r, t) == listed(allowed, t));
    }
  }
  // The brief's examples, spelled out.
  for (auto t : {"report", "assign", "cancel", "liability", "close", "escalate"})
    CHECK(may_send(Role::console, t));
  CHECK_FALSE(may_send(Role::console, "position"));
  CHECK_FALSE(may_send(Role::console, "ack"));
  CHECK(may_send(Role::reporter, "report"));
  CHECK_FALSE(may_send(Role::reporter, "assign"));
  CHECK_FALSE(may_send(Role::reporter, "position"));
  CHECK(may_send(Role::pager, "ack"));
  CHECK(may_send(Role::pager, "delivered"));
  CHECK_FALSE(may_send(Role::pager, "position"));
  CHECK(may_send(Role::insurer, "claim_paid"));
  CHECK_FALSE(may_send(Role::insurer, "report"));
  CHECK_FALSE(may_send(Role::unit, "delivered"));
  CHECK_FALSE(may_send(Role::gateway, "report"));
}

TEST_CASE("role: may_send matches whole words only") {
  for (Role r : all_roles) {
    INFO("role ", to_string(r));
    // Substrings and extensions of allowed names, empty, spaces, unknown.
    for (std::string_view t :
         {"", " ", "  ", "repo", "eport", "report ", " report", " report ", "reports", "port",
          "a", "s", "e", "ac", "ck", "acks", "delivere", "claim", "paid", "_paid", "claim_paid_",
          "position status", "report assign", "status ack", "fly"})
      CHECK_FALSE(may_send(r, t));
  }
}

TEST_CASE("role: role_for_path for every token role and every path") {
  const std::vector<std::string_view> paths{"/ws/console", "/ws/report", "/ws/unit", "/ws/pager",
                                            "/ws/insurer", "/ws/gateway", "/ws/reporter", "/ws/",
                                            "/ws/unit/", "/api/units", ""};
  const std::map<Role, std::string_view> opens{
      {Role::console, "/ws/console"}, {Role::reporter, "/ws/report"}, {Role::unit, "/ws/unit"},
      {Role::gateway, "/ws/unit"},    {Role::pager, "/ws/pager"},     {Role::insurer, "/ws/insurer"}};
  for (Role r : all_roles) {
    CHECK(info(r).ws_path == opens.at(r));
    for (auto p : paths) {
      INFO("token ", to_string(r), " path ", p);
      const auto got = role_for_path(r, p);
      if (p == opens.at(r)) {
        REQUIRE(got.has_value());
        CHECK(*got == r);  // a gateway token stays a gateway on /ws/unit
      } else {
        CHECK_FALSE(got.has_value());
      }
    }
  }
}

TEST_CASE("role: is_ws_path") {
  for (std::string_view p : {"/ws/console", "/ws/report", "/ws/unit", "/ws/pager", "/ws/insurer"})
    CHECK(is_ws_path(p));
  for (std::string_view p : {"", "/", "/ws", "/ws/", "/ws/gateway", "/ws/reporter", "/ws/repo",
                             "/ws/unit/", "/ws/units", "ws/unit", "/WS/unit", "/api/units"})
    CHECK_FALSE(is_ws_path(p));
}

TEST_CASE("role: gateways are bulk senders, others are not; consoles get the largest queue") {
  for (Role r : all_roles) CHECK(info(r).bulk == (r == Role::gateway));
  for (Role r : all_roles) {
    CHECK(info(r).max_queued_bytes > 0);
    CHECK(info(Role::console).max_queued_bytes >= info(r).max_queued_bytes);
  }
}

// ---------------------------------------------------------------------------------------
// net/error_catalog.hpp

TEST_CASE("error catalog: every ErrorCode, its wire name, HTTP status and metric label") {
  const std::map<std::string_view, unsigned> status{
      {"bad_json", 400},         {"bad_message", 400},        {"unknown_type", 400},
      {"unknown_unit", 404},     {"unknown_incident", 404},   {"unknown_assignment", 404},
      {"forbidden", 403},        {"conflict", 409},           {"rate_limited", 429},
      {"unavailable", 503}};
  REQUIRE(error_catalog.size() == status.size());
  std::vector<std::string_view> seen;
  for (std::size_t i = 0; i < error_count; ++i) {
    const auto code = static_cast<engine::ErrorCode>(i);
    const ErrorInfo& e = info(code);
    INFO("code ", i, " wire ", e.wire);
    CHECK(e.code == code);
    CHECK(index(code) == i);
    CHECK(e.wire == engine::to_string(code));
    CHECK(e.metric == e.wire);
    REQUIRE(status.count(e.wire) == 1);
    CHECK(e.http_status == status.at(e.wire));
    CHECK_FALSE(listed(seen, e.wire));
    seen.push_back(e.wire);
  }
  CHECK(info(engine::ErrorCode::bad_json).http_status == 400);
  CHECK(info(engine::ErrorCode::unknown_incident).http_status == 404);
  CHECK(info(engine::ErrorCode::forbidden).http_status == 403);
  CHECK(info(engine::ErrorCode::conflict).http_status == 409);
  CHECK(info(engine::ErrorCode::rate_limited).http_status == 429);
  CHECK(info(engine::ErrorCode::unavailable).http_status == 503);
}

// ---------------------------------------------------------------------------------------
// net/rate_limiter.hpp

TEST_CASE("rate limiter: a full burst, then refill over fake microseconds") {
  const std::int64_t t0 = 7'000'000'000;  // any monotonic clock value
  RateLimiter rl(10, 20);
  CHECK(rl.burst() == 20);
  for (int i = 0; i < 20; ++i) CHECK(rl.take(1, t0));
  CHECK_FALSE(rl.take(1, t0));
  CHECK(rl.empty(t0));
  // 10 per second: 99 ms is not yet one message, 100 ms is.
  CHECK_FALSE(rl.take(1, t0 + 99'000));
  CHECK(rl.take(1, t0 + 100'000));
  CHECK(rl.empty(t0 + 100'000));
  // Half a second later: five.
  CHECK(rl.take(5, t0 + 600'000));
  CHECK(rl.empty(t0 + 600'000));
  // A long idle refills only up to the burst.
  const std::int64_t later = t0 + 3600'000'000LL;
  CHECK_FALSE(rl.take(21, later));
  CHECK(rl.take(20, later));
  CHECK(rl.empty(later));
}

TEST_CASE("rate limiter: take(n) is all or nothing") {
  const std::int64_t t0 = 1'000'000;
  RateLimiter rl(100, 10);
  CHECK(rl.take(4, t0));        // 6 left
  CHECK_FALSE(rl.take(7, t0));  // refused, nothing taken
  CHECK_FALSE(rl.take(7, t0));
  CHECK(rl.take(6, t0));        // the 6 are still there
  CHECK(rl.empty(t0));
  CHECK_FALSE(rl.take(1, t0));
  // A batch larger than the burst never passes, however long one waits.
  RateLimiter small(1000, 50);
  CHECK_FALSE(small.take(51, t0));
  CHECK_FALSE(small.take(51, t0 + 10'000'000));
  CHECK(small.take(50, t0 + 10'000'000));
  // take(0) always passes and takes nothing.
  CHECK(small.take(0, t0 + 10'000'000));
}

TEST_CASE("rate limiter: a clock that starts at zero") {
  // Time is an input; zero is a time like any other.
  RateLimiter rl(10, 10);
  CHECK(rl.take(10, 0));
  CHECK(rl.empty(0));
  CHECK_FALSE(rl.empty(1'000'000));  // a second later the bucket has refilled
  CHECK(rl.take(10, 1'000'000));
  CHECK(rl.may_tell(0));
  CHECK_FALSE(rl.may_tell(500'000));
  CHECK(rl.may_tell(1'000'000));
}

TEST_CASE("rate limiter: time going backwards refills nothing") {
  const std::int64_t t0 = 50'000'000;
  RateLimiter rl(10, 10);
  CHECK(rl.take(10, t0));
  CHECK(rl.empty(t0 - 5'000'000));
  CHECK(rl.empty(t0));
  CHECK_FALSE(rl.empty(t0 + 100'000));
}

TEST_CASE("rate limiter: empty() tells without taking") {
  const std::int64_t t0 = 2'000'000;
  RateLimiter rl(1, 3);
  CHECK_FALSE(rl.empty(t0));
  CHECK_FALSE(rl.empty(t0));
  CHECK(rl.take(3, t0));
  CHECK(rl.empty(t0));
  CHECK(rl.empty(t0 + 999'999));
  CHECK_FALSE(rl.empty(t0 + 1'000'000));
  // The burst is at least one message.
  RateLimiter none(5, 0);
  CHECK(none.burst() == 1);
  CHECK(none.take(1, t0));
  CHECK_FALSE(none.take(1, t0));
}

TEST_CASE("rate limiter: rate_limited is told at most once a second") {
  const std::int64_t t0 = 123'456'789;
  RateLimiter rl(1, 1);
  CHECK(rl.may_tell(t0));
  CHECK_FALSE(rl.may_tell(t0));
  CHECK_FALSE(rl.may_tell(t0 + 1));
  CHECK_FALSE(rl.may_tell(t0 + 999'999));
  CHECK(rl.may_tell(t0 + 1'000'000));
  CHECK_FALSE(rl.may_tell(t0 + 1'500'000));
  CHECK(rl.may_tell(t0 + 5'000'000));
  // Telling does not touch the bucket.
  CHECK(rl.take(1, t0 + 5'000'000));
}

// ---------------------------------------------------------------------------------------
// net/release_gate.hpp

TEST_CASE("release gate: released at once when nothing is pending") {
  ReleaseGate<int> g;
  std::vector<int> sent;
  auto send = [&](const int& v) { sent.push_back(v); };
  CHECK_FALSE(g.behind());
  g.release(1, send);
  g.release(2, send);
  CHECK(sent == std::vector<int>{1, 2});
  CHECK(g.held() == 0);
  // A submission that has committed holds nothing back.
  const auto s = g.submitted();
  CHECK(g.behind());
  g.committed(s, send);
  CHECK_FALSE(g.behind());
  g.release(3, send);
  CHECK(sent == std::vector<int>{1, 2, 3});
}

TEST_CASE("release gate: held behind submissions, released in order as they commit") {
  ReleaseGate<std::string> g;
  std::vector<std::string> sent;
  auto send = [&](const std::string& v) { sent.push_back(v); };
  const auto s1 = g.submitted();
  CHECK(s1 == 1);
  g.release("a", send);
  g.release("b", send);
  const auto s2 = g.submitted();
  CHECK(s2 == 2);
  g.release("c", send);
  const auto s3 = g.submitted();
  g.release("d", send);
  CHECK(sent.empty());
  CHECK(g.held() == 4);
  CHECK(g.behind());
  CHECK(g.last_submitted() == 3);
  CHECK(g.last_committed() == 0);

  // Commit 1 releases only what was made after submission 1 and before submission 2.
  g.committed(s1, send);
  CHECK(sent == std::vector<std::string>{"a", "b"});
  CHECK(g.held() == 2);
  CHECK(g.behind());
  // A commit repeated or older changes nothing.
  g.committed(s1, send);
  CHECK(g.held() == 2);

  // Something made now waits for submission 3 (the newest), even after commit 2.
  g.committed(s2, send);
  CHECK(sent == std::vector<std::string>{"a", "b", "c"});
  g.release("e", send);
  CHECK(g.held() == 2);
  CHECK(sent.size() == 3);

  g.committed(s3, send);
  CHECK(sent == std::vector<std::string>{"a", "b", "c", "d", "e"});
  CHECK(g.held() == 0);
  CHECK_FALSE(g.behind());
  CHECK(g.last_committed() == 3);
  g.release("f", send);
  CHECK(sent.back() == "f");
}

TEST_CASE("release gate: a later commit covers every earlier submission") {
  ReleaseGate<int> g;
  std::vector<int> sent;
  auto send = [&](const int& v) { sent.push_back(v); };
  const auto s1 = g.submitted();
  g.release(1, send);
  const auto s2 = g.submitted();
  g.release(2, send);
  g.committed(s2, send);
  CHECK(sent == std::vector<int>{1, 2});
  CHECK_FALSE(g.behind());
  // A late report of commit 1 does not move the gate back.
  g.committed(s1, send);
  CHECK(g.last_committed() == s2);
  CHECK_FALSE(g.behind());
  g.release(3, send);
  CHECK(sent == std::vector<int>{1, 2, 3});
}

TEST_CASE("release gate: nothing overtakes what is held, even with no write pending") {
  // Items are released in the order they were made: while one is held, the next waits too.
  ReleaseGate<int> g;
  std::vector<int> sent;
  auto send = [&](const int& v) { sent.push_back(v); };
  const auto s1 = g.submitted();
  for (int i = 0; i < 100; ++i) g.release(i, send);
  CHECK(g.held() == 100);
  g.committed(s1, send);
  REQUIRE(sent.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(sent[static_cast<std::size_t>(i)] == i);
}

// ---------------------------------------------------------------------------------------
// net/console_feed.hpp

namespace {

// A fake fleet: render(slot) counts its calls and renders the slot's current version.
struct Fleet {
  std::map<std::uint32_t, int> version;
  std::map<std::uint32_t, int> renders;
  std::size_t pad = 0;  // extra bytes per object
  std::set<std::uint32_t> gone;
  ConsoleFeed::Text render(std::uint32_t slot) {
    ++renders[slot];
    if (gone.count(slot)) return nullptr;
    return std::make_shared<const std::string>(
        "{\"type\":\"unit\",\"slot\":" + std::to_string(slot) + ",\"v\":" +
        std::to_string(version[slot]) + ",\"pad\":\"" + std::string(pad, 'x') + "\"}");
  }
  int total_renders() const {
    int n = 0;
    for (auto& [s, c] : renders) n += c;
    return n;
  }
};

struct Delivered {
  std::map<ConsoleFeed::ConnId, std::vector<std::vector<ConsoleFeed::Text>>> frames;
  std::vector<ConsoleFeed::ConnId> dropped;
};

void flush(ConsoleFeed& feed, Fleet& fleet, Delivered& d,
           const std::map<ConsoleFeed::ConnId, std::size_t>& queued = {}) {
  feed.flush(
      [&](ConsoleFeed::ConnId id) -> std::size_t {
        auto it = queued.find(id);
        return it == queued.end() ? 0 : it->second;
      },
      [&](std::uint32_t slot) { return fleet.render(slot); },
      [&](ConsoleFeed::ConnId id, std::vector<ConsoleFeed::Text> frames) {
        d.frames[id].push_back(std::move(frames));
      },
      [&](ConsoleFeed::ConnId id) { d.dropped.push_back(id); });
}

void move_units(ConsoleFeed& feed, Fleet& fleet, std::vector<std::uint32_t> slots) {
  for (auto s : slots) ++fleet.version[s];
  feed.moved(slots);
}

json::value parse_ok(std::string_view s) {
  boost::system::error_code ec;
  json::value v = json::parse(s, ec);
  INFO("text: ", s);
  REQUIRE_FALSE(ec);
  return v;
}

}  // namespace

TEST_CASE("console feed: a unit that moved five times is rendered once and sent once, newest") {
  ConsoleFeed feed({});
  Fleet fleet;
  Delivered d;
  feed.add(1, false);
  for (int i = 0; i < 5; ++i) move_units(feed, fleet, {7});
  CHECK(feed.pending(1) == 1);
  flush(feed, fleet, d);
  CHECK(fleet.renders[7] == 1);
  REQUIRE(d.frames[1].size() == 1);
  REQUIRE(d.frames[1][0].size() == 1);
  const auto v = parse_ok(*d.frames[1][0][0]);
  CHECK(v.at("slot").as_int64() == 7);
  CHECK(v.at("v").as_int64() == 5);  // the newest position
  CHECK(feed.pending(1) == 0);

  // Nothing moved: the next flush renders and sends nothing.
  flush(feed, fleet, d);
  CHECK(fleet.renders[7] == 1);
  CHECK(d.frames[1].size() == 1);

  // It moves again: rendered again (nothing is cached between flushes).
  move_units(feed, fleet, {7});
  flush(feed, fleet, d);
  CHECK(fleet.renders[7] == 2);
  REQUIRE(d.frames[1].size() == 2);
  CHECK(parse_ok(*d.frames[1][1][0]).at("v").as_int64() == 6);
}

TEST_CASE("console feed: each console has its own pending set; render once per slot per flush") {
  ConsoleFeed feed({});
  Fleet fleet;
  Delivered d;
  feed.add(1, false);
  move_units(feed, fleet, {1, 2});
  feed.add(2, false);  // joins later (its snapshot covered 1 and 2)
  move_units(feed, fleet, {3, 2});
  feed.add(3, false);  // nothing pending for it yet
  CHECK(feed.size() == 3);
  CHECK(feed.pending(1) == 3);
  CHECK(feed.pending(2) == 2);
  CHECK(feed.pending(3) == 0);
  CHECK(feed.pending(99) == 0);

  flush(feed, fleet, d);
  // Slots 2 and 3 were wanted by two consoles but rendered once each.
  CHECK(fleet.renders[1] == 1);
  CHECK(fleet.renders[2] == 1);
  CHECK(fleet.renders[3] == 1);
  CHECK(fleet.total_renders() == 3);

  auto slots_of = [&](ConsoleFeed::ConnId id) {
    std::vector<std::int64_t> s;
    for (const auto& call : d.frames[id])
      for (const auto& t : call) s.push_back(parse_ok(*t).at("slot").as_int64());
    return s;
  };
  CHECK(slots_of(1) == std::vector<std::int64_t>{1, 2, 3});
  CHECK(slots_of(2) == std::vector<std::int64_t>{3, 2});
  CHECK(d.frames.count(3) == 0);  // deliver is not called with nothing to send
  // Consoles share the rendered text.
  CHECK(d.frames[1][0][2].get() == d.frames[2][0][0].get());

  feed.remove(2);
  CHECK_FALSE(feed.contains(2));
  CHECK(feed.size() == 2);
}

TEST_CASE("console feed: above the soft limit positions wait, coalesced and bounded by the fleet") {
  ConsoleFeed::Limits lim;
  lim.soft_bytes = 1000;
  lim.hard_bytes = 100'000;
  ConsoleFeed feed(lim);
  Fleet fleet;
  Delivered d;
  feed.add(1, false);  // slow
  feed.add(2, false);  // fast
  std::vector<std::uint32_t> fleet_slots;
  for (std::uint32_t s = 0; s < 10; ++s) fleet_slots.push_back(s);

  for (int round = 0; round < 50; ++round) {
    move_units(feed, fleet, fleet_slots);
    flush(feed, fleet, d, {{1, 1001}});  // 1 is over soft, under hard
    CHECK(feed.pending(1) == 10);        // never more than the fleet
    CHECK(feed.pending(2) == 0);
  }
  CHECK(d.frames.count(1) == 0);
  CHECK(d.frames[2].size() == 50);
  CHECK(d.dropped.empty());
  CHECK(feed.contains(1));
  // Each slot was rendered once per flush (for console 2 only).
  for (auto s : fleet_slots) CHECK(fleet.renders[s] == 50);

  // At exactly the soft limit the console is served again: one frame per unit, newest.
  flush(feed, fleet, d, {{1, 1000}});
  REQUIRE(d.frames[1].size() == 1);
  REQUIRE(d.frames[1][0].size() == 10);
  for (const auto& t : d.frames[1][0]) CHECK(parse_ok(*t).at("v").as_int64() == 50);
  CHECK(feed.pending(1) == 0);
}

TEST_CASE("console feed: above the hard limit the console is dropped") {
  ConsoleFeed::Limits lim;
  lim.soft_bytes = 1000;
  lim.hard_bytes = 5000;
  ConsoleFeed feed(lim);
  Fleet fleet;
  Delivered d;
  feed.add(1, false);
  feed.add(2, false);
  feed.add(3, false);
  move_units(feed, fleet, {4, 5});
  flush(feed, fleet, d, {{1, 5000}, {2, 5001}, {3, 0}});
  CHECK(d.dropped == std::vector<ConsoleFeed::ConnId>{2});
  CHECK_FALSE(feed.contains(2));
  CHECK(feed.pending(2) == 0);
  CHECK(feed.size() == 2);
  CHECK(d.frames.count(2) == 0);
  // Console 1 is at the hard limit (not above it) but above the soft one: it waits.
  CHECK(d.frames.count(1) == 0);
  CHECK(feed.contains(1));
  CHECK(feed.pending(1) == 2);
  REQUIRE(d.frames[3].size() == 1);
  CHECK(d.frames[3][0].size() == 2);
  // Still too slow at the next flush with more pending: dropped then.
  move_units(feed, fleet, {6});
  flush(feed, fleet, d, {{1, 6000}, {3, 0}});
  CHECK(d.dropped == std::vector<ConsoleFeed::ConnId>{2, 1});
  CHECK_FALSE(feed.contains(1));
  CHECK(feed.size() == 1);
  CHECK(feed.ids() == std::vector<ConsoleFeed::ConnId>{3});
}

TEST_CASE("console feed: batch consoles get JSON arrays split at batch_frame_bytes") {
  ConsoleFeed::Limits lim;
  lim.batch_frame_bytes = 400;
  ConsoleFeed feed(lim);
  Fleet fleet;
  fleet.pad = 20;
  Delivered d;
  feed.add(1, true);
  feed.add(2, false);
  std::vector<std::uint32_t> slots;
  for (std::uint32_t s = 0; s < 60; ++s) slots.push_back(s);
  move_units(feed, fleet, slots);
  flush(feed, fleet, d);
  CHECK(fleet.total_renders() == 60);

  REQUIRE(d.frames[1].size() == 1);
  const auto& frames = d.frames[1][0];
  CHECK(frames.size() > 1);
  std::vector<std::int64_t> got;
  for (const auto& f : frames) {
    INFO("frame of ", f->size(), " bytes");
    CHECK(f->size() <= lim.batch_frame_bytes);
    const auto v = parse_ok(*f);
    REQUIRE(v.is_array());
    CHECK_FALSE(v.as_array().empty());
    for (const auto& o : v.as_array()) got.push_back(o.at("slot").as_int64());
  }
  REQUIRE(got.size() == 60);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == static_cast<std::int64_t>(i));
  // Frames are filled: no two neighbours would have fitted in one.
  for (std::size_t i = 0; i + 1 < frames.size(); ++i)
    CHECK(frames[i]->size() + frames[i + 1]->size() - 1 > lim.batch_frame_bytes);

  // The plain console got one object per frame, the same texts.
  REQUIRE(d.frames[2].size() == 1);
  CHECK(d.frames[2][0].size() == 60);
  CHECK(parse_ok(*d.frames[2][0][0]).is_object());
}

TEST_CASE("console feed: an object larger than a batch frame still goes, alone") {
  ConsoleFeed::Limits lim;
  lim.batch_frame_bytes = 50;
  ConsoleFeed feed(lim);
  Fleet fleet;
  fleet.pad = 100;
  Delivered d;
  feed.add(1, true);
  move_units(feed, fleet, {1, 2, 3});
  flush(feed, fleet, d);
  REQUIRE(d.frames[1].size() == 1);
  std::size_t objects = 0;
  for (const auto& f : d.frames[1][0]) {
    const auto v = parse_ok(*f);
    REQUIRE(v.is_array());
    objects += v.as_array().size();
  }
  CHECK(objects == 3);
}

TEST_CASE("console feed: a unit that cannot be rendered (gone) is skipped") {
  ConsoleFeed feed({});
  Fleet fleet;
  Delivered d;
  feed.add(1, false);
  feed.add(2, true);
  move_units(feed, fleet, {1, 2});
  fleet.gone.insert(1);
  flush(feed, fleet, d);
  REQUIRE(d.frames[1].size() == 1);
  REQUIRE(d.frames[1][0].size() == 1);
  CHECK(parse_ok(*d.frames[1][0][0]).at("slot").as_int64() == 2);
  REQUIRE(d.frames[2].size() == 1);
  REQUIRE(d.frames[2][0].size() == 1);
  CHECK(parse_ok(*d.frames[2][0][0]).as_array().size() == 1);
  // Only gone units: nothing is delivered at all.
  move_units(feed, fleet, {1});
  flush(feed, fleet, d);
  CHECK(d.frames[1].size() == 1);
  CHECK(d.frames[2].size() == 1);
  CHECK(feed.pending(1) == 0);
}

TEST_CASE("console feed: a run holds the same messages as frames(), out of one buffer") {
  // Objects of varied sizes, one empty (a unit that could not be rendered), rendered back
  // to back as run_console_flush does.
  std::mt19937 rng(7);
  std::vector<ConsoleFeed::Text> texts;
  RenderedUnits units;
  std::string all;
  for (int i = 0; i < 300; ++i) {
    units.begin.push_back(static_cast<std::uint32_t>(all.size()));
    if (i == 17) {
      texts.push_back(nullptr);
      continue;
    }
    const std::size_t pad = i == 40 ? 3000 : rng() % 200;  // one larger than a batch frame
    texts.push_back(std::make_shared<const std::string>("{\"type\":\"unit\",\"i\":" + std::to_string(i) +
                                                        ",\"pad\":\"" + std::string(pad, 'x') + "\"}"));
    all += *texts.back();
  }
  units.begin.push_back(static_cast<std::uint32_t>(all.size()));
  units.text = std::make_shared<const std::string>(all);
  std::vector<std::uint32_t> index;  // a console's order: any subset, any order
  for (std::uint32_t i = 0; i < 300; i += 1 + rng() % 3) index.push_back(i);
  std::shuffle(index.begin(), index.end(), rng);
  index.push_back(17);
  index.push_back(40);
  for (bool batch : {false, true}) {
    INFO("batch: ", batch);
    std::vector<const ConsoleFeed::Text*> list;
    for (auto i : index) list.push_back(&texts[i]);
    const auto frames = ConsoleFeed::frames(list, batch, 2048);
    const FrameRun run = ConsoleFeed::run(units, index, batch, 2048);
    REQUIRE(run.size() == frames.size());
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      CHECK(run.at(i) == *frames[i]);
      bytes += frames[i]->size();
    }
    CHECK(run.bytes == bytes);
    if (!batch) CHECK(run.text.get() == units.text.get());  // spans of the shared text
    if (batch) {
      CHECK(frames.size() > 3);  // split into several arrays
      for (std::size_t i = 0; i < run.size(); ++i) CHECK(parse_ok(run.at(i)).is_array());
    }
  }
}

TEST_CASE("console feed: a flush sends at most max_flush_units, oldest first; the rest wait coalesced") {
  ConsoleFeed::Limits lim;
  lim.max_flush_units = 3;
  ConsoleFeed feed(lim);
  Fleet fleet;
  Delivered d;
  feed.add(1, false);
  move_units(feed, fleet, {10, 11, 12, 13, 14, 15, 16});
  auto sent = [&](std::size_t call) {
    std::vector<std::int64_t> s;
    for (const auto& t : d.frames[1].at(call)) s.push_back(parse_ok(*t).at("slot").as_int64());
    return s;
  };
  flush(feed, fleet, d);
  CHECK(sent(0) == std::vector<std::int64_t>{10, 11, 12});
  CHECK(feed.pending(1) == 4);
  // 10 moves again (pending anew, behind the others); 14 moves again (still pending once).
  move_units(feed, fleet, {10, 14});
  CHECK(feed.pending(1) == 5);
  flush(feed, fleet, d);
  CHECK(sent(1) == std::vector<std::int64_t>{13, 14, 15});
  CHECK(parse_ok(*d.frames[1][1][1]).at("v").as_int64() == 2);  // 14's newest position
  flush(feed, fleet, d);
  CHECK(sent(2) == std::vector<std::int64_t>{16, 10});
  CHECK(feed.pending(1) == 0);
}

TEST_CASE("console feed: a console not ready (a flush on its way) keeps its positions pending") {
  ConsoleFeed feed({});
  Fleet fleet;
  feed.add(1, false);
  feed.add(2, false);
  move_units(feed, fleet, {1, 2, 3});
  ConsoleFeed::Plan p;
  auto none = [](ConsoleFeed::ConnId) -> std::size_t { return 0; };
  feed.plan(none, [](ConsoleFeed::ConnId id) { return id != 1; }, p);
  REQUIRE(p.sends.size() == 1);
  CHECK(p.sends[0].console == 2);
  CHECK(p.dropped.empty());
  CHECK(feed.pending(1) == 3);
  move_units(feed, fleet, {2, 4});
  CHECK(feed.pending(1) == 4);  // coalesced: 2 is there once
  feed.plan(none, [](ConsoleFeed::ConnId) { return true; }, p);
  REQUIRE(p.sends.size() == 2);
  for (const auto& send : p.sends)
    CHECK(send.slots.size() == (send.console == 1 ? 4u : 2u));
  CHECK(feed.pending(1) == 0);
}

// ---------------------------------------------------------------------------------------
// net/connection_slots.hpp

using Ticket = ConnectionSlots::Ticket;
using Verdict = ConnectionSlots::Verdict;

TEST_CASE("connection slots: the global cap evicts the oldest unauthenticated connection") {
  auto slots = ConnectionSlots::make({3, 100});
  std::vector<std::string> closed;
  std::shared_ptr<Ticket> a, b, c, d, e;
  REQUIRE(slots->admit("10.0.0.1", a) == Verdict::admitted);
  REQUIRE(slots->admit("10.0.0.2", b) == Verdict::admitted);
  REQUIRE(slots->admit("10.0.0.3", c) == Verdict::admitted);
  a->on_evict([&] { closed.push_back("a"); });
  b->on_evict([&] { closed.push_back("b"); });
  c->on_evict([&] { closed.push_back("c"); });
  CHECK(slots->open() == 3);
  CHECK(slots->unauthenticated() == 3);

  // a is the oldest, but it authenticated: b goes.
  a->authenticated();
  CHECK(slots->unauthenticated() == 2);
  CHECK(slots->admit("10.0.0.4", d) == Verdict::admitted);
  CHECK(closed == std::vector<std::string>{"b"});
  CHECK(slots->evicted() == 1);
  REQUIRE(d);
  // The evicted connection holds its slot until it is gone.
  CHECK(slots->open() == 4);
  b.reset();
  CHECK(slots->open() == 3);

  // Next in line: c.
  d->on_evict([&] { closed.push_back("d"); });
  CHECK(slots->admit("10.0.0.5", e) == Verdict::admitted);
  CHECK(closed == std::vector<std::string>{"b", "c"});
  CHECK(slots->evicted() == 2);
  // A closer is called once: an evicted connection is not evicted again.
  c.reset();
  d->authenticated();
  e->authenticated();
  CHECK(slots->unauthenticated() == 0);
  std::shared_ptr<Ticket> f;
  CHECK(slots->admit("10.0.0.6", f) == Verdict::refused_total);
  CHECK_FALSE(f);
  CHECK(closed == std::vector<std::string>{"b", "c"});
  CHECK(slots->evicted() == 2);
  CHECK(slots->open() == 3);
}

TEST_CASE("connection slots: authenticated connections are never evicted") {
  auto slots = ConnectionSlots::make({4, 100});
  std::vector<std::shared_ptr<Ticket>> held(4);
  int closers = 0;
  for (auto& t : held) {
    REQUIRE(slots->admit("192.0.2.1", t) == Verdict::admitted);
    t->on_evict([&] { ++closers; });
    t->authenticated();
  }
  for (int i = 0; i < 10; ++i) {
    std::shared_ptr<Ticket> t;
    CHECK(slots->admit("192.0.2." + std::to_string(10 + i), t) == Verdict::refused_total);
    CHECK_FALSE(t);
  }
  CHECK(closers == 0);
  CHECK(slots->evicted() == 0);
  CHECK(slots->open() == 4);
  // One leaves: one comes in.
  held[2].reset();
  std::shared_ptr<Ticket> t;
  CHECK(slots->admit("192.0.2.99", t) == Verdict::admitted);
  CHECK(slots->open() == 4);
}

TEST_CASE("connection slots: eviction without a closer still makes room") {
  auto slots = ConnectionSlots::make({1, 10});
  std::shared_ptr<Ticket> a, b;
  REQUIRE(slots->admit("p", a) == Verdict::admitted);
  CHECK(slots->admit("q", b) == Verdict::admitted);
  CHECK(slots->evicted() == 1);
  // The evicted one can no longer mark itself authenticated into the queue.
  a->authenticated();
  a->on_evict([] { FAIL("closer set after eviction must not be called"); });
  std::shared_ptr<Ticket> c;
  CHECK(slots->admit("r", c) == Verdict::admitted);  // b (unauthenticated) goes, not a
  CHECK(slots->evicted() == 2);
}

TEST_CASE("connection slots: the per-peer cap") {
  auto slots = ConnectionSlots::make({100, 2});
  std::shared_ptr<Ticket> a1, a2, a3, b1;
  CHECK(slots->admit("203.0.113.7", a1) == Verdict::admitted);
  CHECK(slots->admit("203.0.113.7", a2) == Verdict::admitted);
  CHECK(slots->admit("203.0.113.7", a3) == Verdict::refused_peer);
  CHECK_FALSE(a3);
  CHECK(slots->admit("203.0.113.8", b1) == Verdict::admitted);
  CHECK(slots->open() == 3);
  CHECK(slots->evicted() == 0);  // the per-peer cap never evicts
  // Authenticated or not, the cap is per peer.
  a1->authenticated();
  CHECK(slots->admit("203.0.113.7", a3) == Verdict::refused_peer);
  a1.reset();
  CHECK(slots->admit("203.0.113.7", a3) == Verdict::admitted);
  CHECK(slots->admit("203.0.113.7", a1) == Verdict::refused_peer);
}

TEST_CASE("connection slots: tickets release their slot when destroyed") {
  auto slots = ConnectionSlots::make({2, 2});
  {
    std::shared_ptr<Ticket> a, b;
    REQUIRE(slots->admit("x", a) == Verdict::admitted);
    REQUIRE(slots->admit("x", b) == Verdict::admitted);
    b->authenticated();
    CHECK(slots->open() == 2);
    CHECK(slots->unauthenticated() == 1);
    auto copy = a;  // the last copy releases
    a.reset();
    CHECK(slots->open() == 2);
    copy.reset();
    CHECK(slots->open() == 1);
    CHECK(slots->unauthenticated() == 0);
  }
  CHECK(slots->open() == 0);
  CHECK(slots->unauthenticated() == 0);
  // The peer's count went with them.
  std::shared_ptr<Ticket> c, d;
  CHECK(slots->admit("x", c) == Verdict::admitted);
  CHECK(slots->admit("x", d) == Verdict::admitted);
  CHECK(slots->evicted() == 0);
}

TEST_CASE("connection slots: a ticket outliving its slots is harmless") {
  std::shared_ptr<Ticket> t;
  {
    auto slots = ConnectionSlots::make({2, 2});
    REQUIRE(slots->admit("x", t) == Verdict::admitted);
  }
  t->authenticated();
  t->on_evict([] {});
  t.reset();  // no crash, no use after free (under sanitizers)
  CHECK_FALSE(t);
}

TEST_CASE("connection slots: four threads admitting and releasing 10k times each") {
  auto slots = ConnectionSlots::make({64, 1000});
  std::atomic<int> admitted{0}, refused{0}, closed{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      const std::string peer = "198.51.100." + std::to_string(k);
      std::vector<std::shared_ptr<Ticket>> mine;
      for (int i = 0; i < 10'000; ++i) {
        std::shared_ptr<Ticket> t;
        const auto v = slots->admit(peer, t);
        if (v == Verdict::admitted) {
          ++admitted;
          t->on_evict([&] { ++closed; });
          if (i % 3 == 0) t->authenticated();
          mine.push_back(std::move(t));
        } else {
          ++refused;
        }
        // Hold up to 20, then let some go (oldest first or newest first).
        if (mine.size() > 20) {
          if (i % 2) mine.erase(mine.begin(), mine.begin() + 10);
          else mine.resize(10);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(admitted + refused == 40'000);
  CHECK(admitted > 0);
  CHECK(slots->open() == 0);
  CHECK(slots->unauthenticated() == 0);
  // A closer may have been set after its connection was already evicted, never the reverse.
  CHECK(static_cast<std::uint64_t>(closed.load()) <= slots->evicted());
  // Everything is free again: the full cap from one peer... of 64, per peer 1000.
  std::vector<std::shared_ptr<Ticket>> all(64);
  for (auto& t : all) CHECK(slots->admit("new", t) == Verdict::admitted);
  CHECK(slots->open() == 64);
}

// ---------------------------------------------------------------------------------------
// net/routes.hpp

namespace {

RouteMatch route(Method m, std::vector<std::string> segs) { return match_route(m, segs); }

}  // namespace

TEST_CASE("routes: exact paths") {
  const std::vector<std::pair<std::vector<std::string>, RouteId>> gets{
      {{"healthz"}, RouteId::healthz},
      {{"metrics"}, RouteId::metrics},
      {{"geo", "districts.geojson"}, RouteId::geo_districts},
      {{"geo", "places.geojson"}, RouteId::geo_places},
      {{"api", "units"}, RouteId::api_units},
      {{"api", "stats"}, RouteId::api_stats},
      {{"api", "incidents"}, RouteId::api_incidents},
  };
  for (const auto& [segs, id] : gets) {
    for (Method m : {Method::get, Method::head}) {
      const auto r = route(m, segs);
      REQUIRE(r.kind == RouteMatch::Kind::found);
      CHECK(r.route->id == id);
      CHECK(r.captures.empty());
    }
  }
  const auto p = route(Method::post, {"api", "incidents"});
  REQUIRE(p.kind == RouteMatch::Kind::found);
  CHECK(p.route->id == RouteId::post_incident);
  CHECK(p.route->method == Method::post);
  CHECK((p.route->roles & mask(Role::console)) != 0);
  CHECK((p.route->roles & mask(Role::reporter)) != 0);
  CHECK((p.route->roles & mask(Role::unit)) == 0);
  // Public routes need no token; the API is the console's.
  CHECK(route(Method::get, {"healthz"}).route->roles == 0);
  CHECK(route(Method::get, {"api", "units"}).route->roles == mask(Role::console));
}

TEST_CASE("routes: {} captures one non-empty segment") {
  auto r = route(Method::get, {"api", "incidents", "I-000042"});
  REQUIRE(r.kind == RouteMatch::Kind::found);
  CHECK(r.route->id == RouteId::api_incident);
  CHECK(r.captures == std::vector<std::string>{"I-000042"});

  r = route(Method::head, {"api", "units", "渝警保17", "track"});
  REQUIRE(r.kind == RouteMatch::Kind::found);
  CHECK(r.route->id == RouteId::api_unit_track);
  CHECK(r.captures == std::vector<std::string>{"渝警保17"});

  // A decoded segment may hold a slash; it is still one segment.
  r = route(Method::get, {"api", "units", "a/b", "track"});
  REQUIRE(r.kind == RouteMatch::Kind::found);
  CHECK(r.captures == std::vector<std::string>{"a/b"});

  CHECK(route(Method::get, {"api", "units", "", "track"}).kind == RouteMatch::Kind::not_found);
  CHECK(route(Method::get, {"api", "units", "M1"}).kind == RouteMatch::Kind::not_found);
  CHECK(route(Method::get, {"api", "units", "M1", "tracks"}).kind == RouteMatch::Kind::not_found);
}

TEST_CASE("routes: HEAD matches GET routes only") {
  const auto r = route(Method::head, {"metrics"});
  REQUIRE(r.kind == RouteMatch::Kind::found);
  CHECK(r.route->method == Method::get);
  // HEAD on the incidents list is the GET route, not the POST one.
  const auto l = route(Method::head, {"api", "incidents"});
  REQUIRE(l.kind == RouteMatch::Kind::found);
  CHECK(l.route->id == RouteId::api_incidents);
}

TEST_CASE("routes: a known path with the wrong method is 405 with Allow") {
  auto r = route(Method::post, {"healthz"});
  CHECK(r.kind == RouteMatch::Kind::method_not_allowed);
  CHECK(r.allow == "GET, HEAD");
  CHECK(r.route == nullptr);

  r = route(Method::post, {"api", "incidents", "I-1"});
  CHECK(r.kind == RouteMatch::Kind::method_not_allowed);
  CHECK(r.allow == "GET, HEAD");

  r = route(Method::other, {"api", "incidents"});
  CHECK(r.kind == RouteMatch::Kind::method_not_allowed);
  CHECK(r.allow == "GET, HEAD, POST");

  r = route(Method::post, {"api", "units"});
  CHECK(r.kind == RouteMatch::Kind::method_not_allowed);
  CHECK(r.allow == "GET, HEAD");

  r = route(Method::other, {"api", "units", "M1", "track"});
  CHECK(r.kind == RouteMatch::Kind::method_not_allowed);
  CHECK(r.allow == "GET, HEAD");
}

TEST_CASE("routes: unknown paths, trailing slashes and extra segments are 404") {
  const std::vector<std::vector<std::string>> unknown{
      {},
      {""},
      {"healthz", ""},        // /healthz/
      {"api", "units", ""},   // /api/units/
      {"api", "incidents", ""},
      {"api"},
      {"api", ""},
      {"api", "unit"},
      {"api", "units", "M1", "track", ""},
      {"api", "units", "M1", "track", "x"},
      {"api", "incidents", "I-1", "x"},
      {"healthz", "x"},
      {"HEALTHZ"},
      {"geo", "districts.json"},
      {"x", "healthz"},
  };
  for (const auto& segs : unknown) {
    for (Method m : {Method::get, Method::head, Method::post, Method::other}) {
      const auto r = route(m, segs);
      INFO("segments ", segs.size(), " first ", segs.empty() ? std::string("-") : segs[0]);
      CHECK(r.kind == RouteMatch::Kind::not_found);
      CHECK(r.route == nullptr);
      CHECK(r.allow.empty());
    }
  }
}

// ---------------------------------------------------------------------------------------
// net/json_writer.hpp

namespace {

// An independent UTF-8 validator (RFC 3629): decode, then check the value's range.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1Fu; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0Fu; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07u; }
    else return false;
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    const std::uint32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::string encode(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD

std::string written(std::string_view s) {
  std::string out;
  JsonWriter w(out);
  w.value(s);
  return out;
}

// Writes `s` as a string, requires the output to be valid UTF-8 JSON (Boost.JSON rejects
// invalid UTF-8), and returns what it decodes to.
std::string through_json(std::string_view s) {
  const std::string out = written(s);
  CHECK(valid_utf8(out));
  boost::system::error_code ec;
  json::value v = json::parse(out, ec);
  INFO("output: ", out);
  REQUIRE_FALSE(ec);
  REQUIRE(v.is_string());
  const auto& js = v.get_string();
  return std::string(js.data(), js.size());
}

// Only U+FFFD between the markers.
bool only_replacements(std::string_view s) {
  if (s.empty() || s.size() % 3) return false;
  for (std::size_t i = 0; i < s.size(); i += 3)
    if (s.substr(i, 3) != replacement) return false;
  return true;
}

}  // namespace

TEST_CASE("json writer: the oracle (Boost.JSON) rejects invalid UTF-8 itself") {
  boost::system::error_code ec;
  (void)json::parse("\"\xFF\"", ec);
  CHECK(ec);
  ec = {};
  (void)json::parse("\"\xED\xA0\x80\"", ec);
  CHECK(ec);
  ec = {};
  (void)json::parse("\"\xE6\xB8\"", ec);
  CHECK(ec);
  CHECK_FALSE(valid_utf8("\xC0\xAF"));
  CHECK(valid_utf8("渝警保17"));
}

TEST_CASE("json writer: valid text passes unchanged") {
  for (std::string_view s :
       {"", "M1", "渝警保17", "重庆市渝中区解放碑", "a\xC2\x80z", "\xDF\xBF", "\xE0\xA0\x80",
        "\xED\x9F\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF",
        "🚑 rescue 🚁", "Ünïcödé ÀÉÎ"}) {
    INFO("input: ", s);
    CHECK(through_json(s) == s);
    // The bytes themselves are copied, not escaped.
    CHECK(written(s) == "\"" + std::string(s) + "\"");
  }
}

TEST_CASE("json writer: invalid sequences become U+FFFD and never reach the output") {
  const std::vector<std::string> bad{
      "\x80",              // lone continuation
      "\xBF",
      "\xFF", "\xFE",      // never in UTF-8
      "\xC0\xAF",          // overlong '/'
      "\xC1\xBF",          // overlong
      "\xE0\x80\xAF",      // overlong 3-byte
      "\xE0\x9F\xBF",      // overlong (U+07FF in 3 bytes)
      "\xF0\x82\x82\xAC",  // overlong 4-byte (euro sign)
      "\xF0\x8F\xBF\xBF",  // overlong (U+FFFF in 4 bytes)
      "\xED\xA0\x80",      // U+D800, a surrogate
      "\xED\xBF\xBF",      // U+DFFF
      "\xED\xA0\x80\xED\xB0\x80",  // a surrogate pair in CESU-8
      "\xF4\x90\x80\x80",  // U+110000
      "\xF5\x80\x80\x80",  // lead above F4
      "\xF8\x88\x80\x80\x80",  // 5-byte form
      "\xE6\xB8",          // 渝 cut after two bytes
      "\xE6",              // ...after one
      "\xF0\x9F\x9A",      // 🚑 cut
      "\xC3",              // a 2-byte lead at the end
      "\xC3\x28",          // a 2-byte lead before ASCII
      "\xE6\xB8\x28",      // a 3-byte sequence broken by ASCII
  };
  for (const auto& b : bad) {
    INFO("bytes: ", json::serialize(json::string(b.c_str())));
    CHECK_FALSE(valid_utf8(b));
    const std::string got = through_json("<" + b + ">");
    REQUIRE(got.size() >= 2);
    CHECK(got.front() == '<');
    CHECK(got.back() == '>');
    const std::string mid = got.substr(1, got.size() - 2);
    // Whatever ASCII was inside stays; every other byte became U+FFFD.
    std::string without_ascii;
    for (std::size_t i = 0; i < mid.size(); ++i)
      if (static_cast<unsigned char>(mid[i]) >= 0x80) without_ascii += mid[i];
    CHECK(only_replacements(without_ascii));
    if (b.find('(') != std::string::npos) CHECK(mid.find('(') != std::string::npos);
  }
  // Exact forms for the simplest cases.
  CHECK(through_json("\xFF") == replacement);
  CHECK(through_json("a\xED\xA0\x80z").find("\xED\xA0\x80") == std::string::npos);
  CHECK(through_json("\xF4\x90\x80\x80") == replacement + replacement + replacement + replacement);
  // Valid text around an invalid byte is kept.
  CHECK(through_json("渝\xFF警") == "渝" + replacement + "警");
  CHECK(through_json("渝警保\xE4\xBF") .rfind("渝警保", 0) == 0);
}

TEST_CASE("json writer: control characters, quotes and backslashes are escaped") {
  for (int c = 0; c < 0x20; ++c) {
    const std::string s(1, static_cast<char>(c));
    const std::string out = written(s);
    INFO("char ", c, " -> ", out);
    CHECK(out.size() > 3);  // escaped, not raw
    CHECK(out.find(static_cast<char>(c)) == std::string::npos);
    CHECK(through_json(s) == s);
  }
  CHECK(written("\n") == "\"\\n\"");
  CHECK(written("\r") == "\"\\r\"");
  CHECK(written("\t") == "\"\\t\"");
  CHECK(written(std::string_view("\0", 1)) == "\"\\u0000\"");
  CHECK(written("\x1f") == "\"\\u001f\"");
  CHECK(written("\x7f") == "\"\\u007f\"");
  CHECK(written("\"") == "\"\\\"\"");
  CHECK(written("\\") == "\"\\\\\"");
  CHECK(written("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(through_json("\x7f") == "\x7f");
  CHECK(through_json("</script>") == "</script>");
}

TEST_CASE("json writer: keys are escaped and made valid the same way") {
  std::string out;
  JsonWriter w(out);
  w.begin_object().field("n\xFFote\n", "渝警保17\xE6\xB8").field("k", 1).end_object();
  boost::system::error_code ec;
  const auto v = json::parse(out, ec);
  INFO(out);
  REQUIRE_FALSE(ec);
  REQUIRE(v.is_object());
  CHECK(v.as_object().size() == 2);
  CHECK(v.as_object().contains("n" + replacement + "ote\n"));
  CHECK(v.at("k").as_int64() == 1);
}

TEST_CASE("json writer: random bytes always make valid UTF-8 JSON; valid input is unchanged") {
  std::mt19937 rng(20251128);
  // Bytes biased towards the interesting ones: leads, continuations, the edges.
  const std::vector<unsigned char> pool{0x00, 0x1f, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f, 0x90,
                                        0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe6,
                                        0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
  int valid_inputs = 0;
  for (int n = 0; n < 20000; ++n) {
    std::string s;
    const auto len = rng() % 12;
    for (std::size_t k = 0; k < len; ++k)
      s += static_cast<char>(rng() % 2 ? pool[rng() % pool.size()] : rng() % 256);
    const std::string out = written(s);
    boost::system::error_code ec;
    const auto v = json::parse(out, ec);
    if (ec || !v.is_string() || !valid_utf8(out)) {
      FAIL_CHECK("invalid output for input " << json::serialize(json::value(n)) << ": " << out);
      break;
    }
    if (valid_utf8(s)) {
      ++valid_inputs;
      CHECK(std::string(v.get_string().data(), v.get_string().size()) == s);
    }
  }
  CHECK(valid_inputs > 100);

  // Random valid code points of every width round trip exactly.
  std::uniform_int_distribution<std::uint32_t> cp_dist(0, 0x10FFFF);
  for (int n = 0; n < 2000; ++n) {
    std::string s;
    for (int k = 0; k < 8; ++k) {
      std::uint32_t cp = cp_dist(rng);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
      if (k % 4 == 0) cp %= 0x800;  // more short ones
      s += encode(cp);
    }
    REQUIRE(valid_utf8(s));
    CHECK(through_json(s) == s);
  }
}

TEST_CASE("json writer: utf8_prefix never cuts a sequence and keeps as much as fits") {
  for (std::string_view s : {std::string_view("渝警保17"), std::string_view("a🚑b渝é"),
                             std::string_view("plain ascii"), std::string_view("ééééé"),
                             std::string_view("🚁🚁")}) {
    // Where sequences start (and the end).
    std::vector<std::size_t> bounds;
    for (std::size_t i = 0; i <= s.size(); ++i)
      if (i == s.size() || (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) bounds.push_back(i);
    for (std::size_t max = 0; max <= s.size() + 2; ++max) {
      const auto p = JsonWriter::utf8_prefix(s, max);
      INFO("input ", s, " max ", max, " got ", p.size());
      CHECK(p.data() == s.data());
      CHECK(p.size() <= max);
      CHECK(valid_utf8(p));
      std::size_t best = 0;
      for (auto b : bounds)
        if (b <= max) best = b;
      CHECK(p.size() == best);
    }
  }
  CHECK(JsonWriter::utf8_prefix("渝警保17", 2).empty());
  CHECK(JsonWriter::utf8_prefix("渝警保17", 3) == "渝");
  CHECK(JsonWriter::utf8_prefix("渝警保17", 8) == "渝警");
  CHECK(JsonWriter::utf8_prefix("渝警保17", 10) == "渝警保1");
  CHECK(JsonWriter::utf8_prefix("渝警保17", 100) == "渝警保17");
}

TEST_CASE("json writer: utf8_sequence lengths") {
  using W = JsonWriter;
  CHECK(W::utf8_sequence("\xC2\x80", 0) == 2);
  CHECK(W::utf8_sequence("\xE6\xB8\x9D", 0) == 3);
  CHECK(W::utf8_sequence("\xF0\x9F\x9A\x91", 0) == 4);
  CHECK(W::utf8_sequence("\xC0\x80", 0) == 0);
  CHECK(W::utf8_sequence("\xE6\xB8", 0) == 0);
  CHECK(W::utf8_sequence("\xED\xA0\x80", 0) == 0);
  CHECK(W::utf8_sequence("\xF4\x90\x80\x80", 0) == 0);
  CHECK(W::utf8_sequence("\x80", 0) == 0);
  // A sequence cut by the end of the view, though the bytes follow in memory.
  const std::string_view whole = "\xE6\xB8\x9D";
  CHECK(W::utf8_sequence(whole.substr(0, 2), 0) == 0);
}

// ---------------------------------------------------------------------------------------
// net/protocol.hpp: message counts and the role checks

namespace {

ParsedFrame parsed(std::string_view text, std::optional<Role> role = std::nullopt) {
  ParsedFrame f;
  parse_frame(text, role, f);
  return f;
}

std::string position(int i) {
  return R"({"type":"position","unit":"M)" + std::to_string(i) +
         R"(","lat":29.5,"lon":106.5,"ts":1764300000000})";
}

}  // namespace

TEST_CASE("protocol: ParsedFrame::messages counts each message") {
  CHECK(parsed(position(1)).messages == 1);
  CHECK(parsed(R"({"type":"fly"})").messages == 1);
  CHECK(parsed("42").messages == 1);
  for (int n : {1, 2, 7, 500}) {
    std::string batch = "[";
    for (int i = 0; i < n; ++i) batch += (i ? "," : "") + position(i);
    batch += "]";
    const auto f = parsed(batch, Role::gateway);
    CHECK(f.messages == static_cast<std::size_t>(n));
    CHECK(f.positions.size() == static_cast<std::size_t>(n));
    CHECK(f.errors.empty());
  }
  // Bad members count as well: a batch of 4 is 4 messages, whatever they hold.
  const auto mixed = parsed("[" + position(1) + R"(,42,{"type":"fly"},{"type":"ack"}])", Role::unit);
  CHECK(mixed.messages == 4);
  CHECK(mixed.errors.size() == 3);
  // Invalid JSON is one message (and one bad_json).
  for (std::string_view bad : {"", "{", "[1,2", "not json", "{\"type\":\"position\",}"}) {
    const auto f = parsed(bad);
    CHECK(f.messages == 1);
    REQUIRE(f.errors.size() == 1);
    CHECK(f.errors[0].code == engine::ErrorCode::bad_json);
  }
  // An empty batch is one (bad) message.
  const auto empty = parsed("[]");
  CHECK(empty.messages == 1);
  REQUIRE(empty.errors.size() == 1);
  CHECK(empty.errors[0].code == engine::ErrorCode::bad_message);
  // The counter accumulates until clear().
  ParsedFrame f;
  parse_frame("[" + position(1) + "," + position(2) + "]", std::optional<Role>(Role::unit), f);
  parse_frame(position(3), std::optional<Role>(Role::unit), f);
  CHECK(f.messages == 3);
  f.clear();
  CHECK(f.messages == 0);
  CHECK(f.positions.empty());
}

TEST_CASE("protocol: each role may send only its own types; the rest are forbidden") {
  for (Role r : all_roles) {
    for (auto t : all_types) {
      INFO("role ", to_string(r), " type ", t);
      // A message with only its type: allowed ones fail on fields (bad_message), the others
      // are refused before their fields are read.
      const auto f = parsed(R"({"type":")" + std::string(t) + R"("})", r);
      CHECK(f.messages == 1);
      REQUIRE(f.errors.size() == 1);
      if (may_send(r, t)) CHECK(f.errors[0].code == engine::ErrorCode::bad_message);
      else CHECK(f.errors[0].code == engine::ErrorCode::forbidden);
      CHECK(f.commands.empty());
      CHECK(f.positions.empty());
      // The type is recorded either way (for metrics).
      REQUIRE(f.types.size() == 1);
      CHECK(f.types[0] == t);
    }
  }
  // Full, valid messages on the wrong connection.
  auto code_of = [](std::string_view text, Role r) {
    const auto f = parsed(text, r);
    REQUIRE(f.errors.size() == 1);
    return f.errors[0].code;
  };
  CHECK(code_of(position(1), Role::console) == engine::ErrorCode::forbidden);
  CHECK(code_of(position(1), Role::pager) == engine::ErrorCode::forbidden);
  CHECK(code_of(R"({"type":"assign","incident":"I-1","unit":"M1"})", Role::reporter) ==
        engine::ErrorCode::forbidden);
  CHECK(code_of(R"({"type":"claim_paid","claim":"C-1"})", Role::console) == engine::ErrorCode::forbidden);
  CHECK(code_of(R"({"type":"report","id":"r1","lat":29.5,"lon":106.5,"severity":"minor"})",
                Role::unit) == engine::ErrorCode::forbidden);
  // ... and on the right one.
  CHECK(parsed(position(1), Role::unit).positions.size() == 1);
  CHECK(parsed(position(1), Role::gateway).positions.size() == 1);
  CHECK(parsed(R"({"type":"claim_paid","claim":"C-1","amount":1200})", Role::insurer).commands.size() == 1);
  CHECK(parsed(R"({"type":"ack","assignment":"A-1"})", Role::pager).commands.size() == 1);
  CHECK(parsed(R"({"type":"delivered","page":"P-1"})", Role::pager).commands.size() == 1);
  CHECK(parsed(R"({"type":"report","id":"r1","lat":29.5,"lon":106.5,"severity":"minor"})",
               Role::reporter).commands.size() == 1);
  CHECK(parsed(R"({"type":"assign","incident":"I-1","unit":"M1"})", Role::console).commands.size() == 1);
  // In a batch, the forbidden member is refused and the rest go on.
  const auto f = parsed("[" + position(1) + R"(,{"type":"delivered","page":"P-1"},)" + position(2) + "]",
                        Role::gateway);
  CHECK(f.positions.size() == 2);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].code == engine::ErrorCode::forbidden);
  CHECK(f.errors[0].ref == "P-1");
  // Unknown types stay unknown_type, whatever the role.
  CHECK(code_of(R"({"type":"repo"})", Role::reporter) == engine::ErrorCode::unknown_type);
  CHECK(code_of(R"({"type":"report assign"})", Role::console) == engine::ErrorCode::unknown_type);
}

TEST_CASE("protocol: the role by name") {
  ParsedFrame f;
  parse_frame(position(1), std::string_view("console"), f);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].code == engine::ErrorCode::forbidden);
  f.clear();
  parse_frame(position(1), std::string_view("nobody"), f);
  CHECK(f.messages == 1);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].code == engine::ErrorCode::forbidden);
  CHECK(f.positions.empty());
  f.clear();
  parse_frame(position(1), std::string_view(""), f);  // any role
  CHECK(f.positions.size() == 1);
  CHECK(f.errors.empty());
}

TEST_CASE("protocol: a note is at most 4096 bytes") {
  auto liability = [](const std::string& note) {
    json::object o{{"type", "liability"}, {"incident", "I-000001"}, {"at_fault", "A"}, {"note", note}};
    return json::serialize(o);
  };
  auto report = [](const std::string& note) {
    json::object o{{"type", "report"}, {"id", "r-1"}, {"lat", 29.5}, {"lon", 106.5},
                   {"severity", "minor"}, {"note", note}};
    return json::serialize(o);
  };
  for (std::size_t n : {std::size_t{0}, std::size_t{257}, std::size_t{4095}, std::size_t{4096}}) {
    INFO("note of ", n, " bytes");
    auto f = parsed(liability(std::string(n, 'n')), Role::console);
    CHECK(f.errors.empty());
    CHECK(f.commands.size() == 1);
    f = parsed(report(std::string(n, 'n')), Role::reporter);
    CHECK(f.errors.empty());
    CHECK(f.commands.size() == 1);
  }
  // 1365 Chinese characters are 4095 bytes; one more is 4098.
  std::string zh;
  for (int i = 0; i < 1365; ++i) zh += "渝";
  CHECK(parsed(liability(zh), Role::console).errors.empty());
  for (const std::string& note : {std::string(4097, 'n'), std::string(100'000, 'n'), zh + "渝"}) {
    INFO("note of ", note.size(), " bytes");
    for (const auto& f : {parsed(liability(note), Role::console), parsed(report(note), Role::reporter)}) {
      REQUIRE(f.errors.size() == 1);
      CHECK(f.errors[0].code == engine::ErrorCode::bad_message);
      CHECK(f.errors[0].message.find("note") != std::string::npos);
      CHECK(f.commands.empty());
    }
  }
  // Other free-text fields stay at 256 bytes.
  json::object esc{{"type", "escalate"}, {"incident", "I-1"}, {"reason", std::string(257, 'r')}};
  const auto f = parsed(json::serialize(esc), Role::console);
  REQUIRE(f.errors.size() == 1);
  CHECK(f.errors[0].code == engine::ErrorCode::bad_message);
}
