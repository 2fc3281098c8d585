// The gateways on real sockets against real peers: Debian's gpsd fed by gpsfake,
// Debian's Net::SNPP::Server, plain NMEA over TCP, and a WebSocket server standing
// in for dispatchd that records every frame and can be killed and restarted.
#include <doctest/doctest.h>

#include "tests/shared_data.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/json.hpp>

#include "gateways/avl.hpp"
#include "gateways/gpsd.hpp"
#include "gateways/log.hpp"
#include "gateways/nmea_session.hpp"
#include "gateways/pager.hpp"
#include "gateways/snpp.hpp"
#include "support.hpp"

using namespace dispatch::gateways;
using namespace dispatch::test;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

namespace {

const fs::path gpsd_dir = fs::path(DISPATCH_SHARED_DIR) / "data/nmea/gpsd";

struct Seen {
  std::string unit;
  std::int64_t ts;
  double lat, lon;
};

// Positions in the frames a server got; every frame must be an array of them.
std::vector<Seen> positions(const std::vector<WsRecorder::Frame>& frames, std::size_t* largest = nullptr) {
  std::vector<Seen> out;
  for (const auto& f : frames) {
    const auto v = boost::json::parse(f.text);
    REQUIRE(v.is_array());
    if (largest) *largest = std::max(*largest, v.as_array().size());
    for (const auto& m : v.as_array()) {
      const auto& o = m.as_object();
      REQUIRE(o.at("type").as_string() == "position");
      out.push_back({std::string(o.at("unit").as_string()), o.at("ts").to_number<std::int64_t>(),
                     o.at("lat").to_number<double>(), o.at("lon").to_number<double>()});
    }
  }
  return out;
}

std::set<std::int64_t> times(const std::vector<Seen>& v) {
  std::set<std::int64_t> s;
  for (const auto& p : v) s.insert(p.ts);
  return s;
}

AvlOptions avl_options(std::uint16_t server_port) {
  AvlOptions o;
  o.server = {"127.0.0.1", server_port};
  o.token = "g-secret";
  o.batch_max = 10;
  o.flush_interval = milliseconds(50);
  o.backoff_min = milliseconds(20);
  o.backoff_max = milliseconds(200);
  return o;
}

// An AvlGateway on a thread of its own.
struct AvlRun {
  IoThread io;
  std::unique_ptr<AvlGateway> gw;
  explicit AvlRun(AvlOptions o) {
    io.call([&] {
      gw = std::make_unique<AvlGateway>(io.ioc(), std::move(o));
      gw->start();
      return 0;
    });
  }
  ~AvlRun() {
    io.call([&] {
      gw->stop(milliseconds(200));
      return 0;
    });
    io.join();
  }
  void push(std::string unit, std::int64_t ts) {
    io.call([&] {
      gw->push(Position{unit, 29.5 + static_cast<double>(ts % 1000) * 1e-5, 106.5, ts, {}, {}});
      return 0;
    });
  }
  AvlStats stats() {
    return io.call([&] { return gw->stats(); });
  }
  std::uint64_t dropped() {
    return io.call([&] { return gw->backlog().dropped(); });
  }
  bool connected() {
    return io.call([&] { return gw->connected(); });
  }
  std::size_t waiting() {
    return io.call([&] { return gw->backlog().size(); });
  }
};

// A blocking TCP client for the NMEA port.
struct LineClient {
  int fd = -1;
  std::string pending;
  explicit LineClient(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~LineClient() { ::close(fd); }
  void send(const std::string& s) { REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size())); }
  // Next line, or "" at EOF/timeout.
  std::string line() {
    for (;;) {
      if (const auto nl = pending.find('\n'); nl != std::string::npos) {
        auto l = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        return l;
      }
      char buf[512];
      const auto n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return {};
      pending.append(buf, static_cast<std::size_t>(n));
    }
  }
};

SnppOutcome send_page(IoThread& io, std::uint16_t port, std::string capcode, std::string text) {
  std::promise<SnppOutcome> result;
  boost::asio::co_spawn(io.ioc(), snpp_send_page({"127.0.0.1", port}, std::move(capcode), std::move(text), 5s),
                        [&](std::exception_ptr e, SnppOutcome o) {
                          if (e) o = {false, "exception"};
                          result.set_value(std::move(o));
                        });
  return result.get_future().get();
}

std::string page_json(const std::string& id, const std::string& capcode, const std::string& text) {
  return boost::json::serialize(boost::json::object{{"type", "page"},   {"page", id},      {"unit", "M017"},
                                                    {"capcode", capcode}, {"assignment", "A-" + id}, {"text", text}});
}

// Page ids the server was told are delivered, in order.
std::vector<std::string> delivered(const WsRecorder& server) {
  std::vector<std::string> out;
  for (const auto& f : server.frames()) {
    const auto o = boost::json::parse(f.text).as_object();
    REQUIRE(o.at("type").as_string() == "delivered");
    out.emplace_back(o.at("page").as_string());
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

TEST_CASE("AVL uplink: batched frames with the token, nothing lost across a server restart") {
  set_log_program("test-avl");
  auto server = std::make_unique<WsRecorder>();
  const auto port = server->port();
  AvlRun avl(avl_options(port));

  std::int64_t ts = 1764300000000;
  for (int i = 0; i < 95; ++i) avl.push("M017", ts++);
  REQUIRE(wait_until([&] { return positions(server->frames()).size() >= 95; }, 20s));

  // The server dies with positions under way; more keep coming while it is away.
  for (int i = 0; i < 30; ++i) avl.push("M017", ts++);
  server->stop();
  auto first = server->frames();
  for (int i = 0; i < 70; ++i) avl.push("H1", ts++);
  // The gateway has seen the server go, and what came meanwhile waits in its backlog.
  REQUIRE(wait_until([&] { return !avl.connected() && avl.waiting() >= 70; }, 20s));
  server = std::make_unique<WsRecorder>(port);
  for (int i = 0; i < 25; ++i) avl.push("M017", ts++);

  std::set<std::int64_t> want;
  for (std::int64_t t = 1764300000000; t < ts; ++t) want.insert(t);
  std::size_t largest = 0;
  const auto all = [&] {
    auto a = positions(first, &largest);
    auto b = positions(server->frames(), &largest);
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  CHECK(wait_until([&] { return times(all()) == want; }, 20s));
  const auto got = all();
  CHECK(times(got) == want);
  CHECK(largest <= 10);
  CHECK(server->connections() >= 1);
  for (const auto& a : server->authorizations()) CHECK(a == "Bearer g-secret");
  // Each unit's positions arrive in time order within a connection.
  std::map<std::string, std::int64_t> last;
  for (const auto& p : positions(server->frames())) {
    CHECK(p.ts > last[p.unit]);
    last[p.unit] = p.ts;
  }
  CHECK(wait_until([&] { return avl.stats().confirmed >= want.size(); }, 20s));
  CHECK(avl.dropped() == 0);
}

TEST_CASE("AVL backlog: bounded while the server is away, the oldest dropped and counted") {
  const auto port = free_port();
  auto opt = avl_options(port);
  opt.backlog_capacity = 20;
  AvlRun avl(opt);
  for (std::int64_t t = 1; t <= 50; ++t) avl.push("M017", 1764300000000 + t);
  CHECK(avl.dropped() == 30);
  WsRecorder server(port);
  REQUIRE(wait_until([&] { return positions(server.frames()).size() >= 20; }, 20s));
  std::set<std::int64_t> want;
  for (std::int64_t t = 31; t <= 50; ++t) want.insert(1764300000000 + t);
  CHECK(times(positions(server.frames())) == want);
}

TEST_CASE("AVL over plain NMEA TCP: UNIT line, sentences of a real receiver, bad input") {
  DISPATCH_NEEDS_SHARED_DATA(gpsd_dir / "sirfstarv-nmea.log");
  WsRecorder server;
  auto opt = avl_options(server.port());
  opt.nmea_listen = Endpoint{"127.0.0.1", 0};
  AvlRun avl(opt);
  const auto nmea_port = avl.io.call([&] { return avl.gw->nmea_endpoint()->port; });

  // What the sentences must give, by the gateway's own rules on today's clock.
  const auto log = read_lines(gpsd_dir / "sirfstarv-nmea.log");
  const auto now = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  NmeaSession expected(now);
  expected.feed("UNIT M017");
  std::vector<Position> want;
  for (const auto& l : log)
    if (auto r = expected.feed(l); std::holds_alternative<Position>(r)) want.push_back(std::get<Position>(r));
  REQUIRE(want.size() > 50);

  {
    LineClient c(nmea_port);
    c.send("UNIT M017\r\n");
    CHECK(c.line() == "OK UNIT M017\r");
    for (const auto& l : log)
      if (!l.empty() && l[0] != '#') c.send(l + "\n");
    // A broken sentence does not end the connection.
    c.send("$GPRMC,000232.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59\r\n");
  }
  REQUIRE(wait_until([&] { return positions(server.frames()).size() >= want.size(); }, 20s));
  const auto got = positions(server.frames());
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].unit == "M017");
    CHECK(got[i].ts == want[i].ts);
    // Boost.JSON's default number parsing may be off by an ulp.
    CHECK(got[i].lat == doctest::Approx(want[i].lat).epsilon(1e-12));
    CHECK(got[i].lon == doctest::Approx(want[i].lon).epsilon(1e-12));
  }

  LineClient bad(nmea_port);
  bad.send("$GPGGA,030129.00,2638.1726,N,08011.3892,W,1,06,1.5,00016,M,-0028,M,,*50\r\n");
  CHECK(bad.line().starts_with("ERR the first line must be"));
  CHECK(bad.line().empty());  // closed
}

TEST_CASE("AVL from Debian's gpsd fed by gpsfake, the server restarted mid-stream") {
  DISPATCH_NEEDS_SHARED_DATA(gpsd_dir / "sirfstarv-nmea.log");
  const auto dir = scratch_dir("avl_gpsd");
  auto server = std::make_unique<WsRecorder>();
  const auto port = server->port();
  const auto gpsd_port = free_port();
  auto opt = avl_options(port);
  opt.gpsd = Endpoint{"127.0.0.1", gpsd_port};
  opt.devices.set_default("M017");
  AvlRun avl(opt);
  // A second, plain client of the same gpsd is the reference for what gpsd reported.
  GpsdWatcher reference(gpsd_port);
  auto fake = start_gpsfake(gpsd_dir / "sirfstarv-nmea.log", gpsd_port, dir, 0.005);

  REQUIRE_MESSAGE(wait_until([&] { return positions(server->frames()).size() >= 10; }, 20s),
                  "gpsfake: " << fake->stderr_text());
  server->stop();
  const auto first = server->frames();
  // Restarted once the gateway has seen it go (gpsfake keeps playing meanwhile).
  REQUIRE(wait_until([&] { return !avl.connected(); }, 20s));
  server = std::make_unique<WsRecorder>(port);
  CHECK(fake->wait_exit(30s).has_value());

  // Every usable TPV gpsd reported, once per instant: read again at each poll, as the
  // reference client may still be reading gpsd's last lines when gpsfake has exited.
  std::map<std::int64_t, GpsdTpv> reported;
  const auto read_reported = [&] {
    reported.clear();
    for (const auto& l : reference.lines())
      if (auto r = parse_gpsd_line(l); std::holds_alternative<GpsdTpv>(r) && std::get<GpsdTpv>(r).usable())
        reported.try_emplace(*std::get<GpsdTpv>(r).time_ms, std::get<GpsdTpv>(r));
  };
  const auto all = [&] {
    auto a = positions(first);
    auto b = positions(server->frames());
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  // From the first fix both the gateway and the reference client saw (either may have
  // connected to gpsd first).
  std::int64_t from = 0;
  std::set<std::int64_t> want;
  const auto from_on = [&](std::set<std::int64_t> s) {
    std::erase_if(s, [&](std::int64_t t) { return t < from; });
    return s;
  };
  const auto settled = [&] {
    read_reported();
    const auto got_times = times(all());
    if (reported.empty() || got_times.empty()) return false;
    from = std::max(reported.begin()->first, *got_times.begin());
    want.clear();
    for (const auto& [t, tpv] : reported)
      if (t >= from) want.insert(t);
    return from_on(got_times) == want;
  };
  CHECK(wait_until(settled, 20s));
  REQUIRE(reported.size() > 20);
  std::vector<Seen> got;
  for (const auto& p : all())
    if (p.ts >= from) got.push_back(p);
  CHECK(times(got) == want);
  for (const auto& p : got) {
    REQUIRE(reported.contains(p.ts));
    CHECK(p.unit == "M017");
    CHECK(p.lat == doctest::Approx(*reported.at(p.ts).lat).epsilon(1e-12));
    CHECK(p.lon == doctest::Approx(*reported.at(p.ts).lon).epsilon(1e-12));
  }
  CHECK(!positions(server->frames()).empty());
  MESSAGE("gpsd reported " << reported.size() << " fixes; forwarded " << want.size() << " from the first one the gateway saw");
}

TEST_CASE("SNPP against Debian's Net::SNPP::Server") {
  const auto dir = scratch_dir("snpp");
  IoThread io;
  SnppTerminal term(dir);
  auto ok = send_page(io, term.port(), "1200017", "accident G75 km 12\r\nrear-end, 1 injured");
  CHECK_MESSAGE(ok.delivered, ok.detail);
  REQUIRE(term.pages().size() == 1);
  CHECK(term.pages()[0] == "1200017\taccident G75 km 12 rear-end, 1 injured");

  // The server's rule: a pager id is at least 7 digits.
  auto bad = send_page(io, term.port(), "12", "x");
  CHECK(!bad.delivered);
  CHECK(bad.detail.starts_with("PAGE: terminal answered 550"));
  CHECK(term.pages().size() == 1);

  const auto dir2 = scratch_dir("snpp_failing");
  SnppTerminal failing(dir2, 0, 1);
  auto first = send_page(io, failing.port(), "1200017", "first try");
  CHECK(!first.delivered);
  CHECK(first.detail.starts_with("SEND: terminal answered 554"));
  auto second = send_page(io, failing.port(), "1200017", "second try");
  CHECK(second.delivered);
  CHECK(failing.pages() == std::vector<std::string>{"1200017\tsecond try"});

  term.stop();
  auto down = send_page(io, term.port(), "1200017", "nobody home");
  CHECK(!down.delivered);
  CHECK(down.detail.find("connect") != std::string::npos);
}

TEST_CASE("pager: delivered only after 250 to SEND; nothing lost or paged twice across restarts") {
  set_log_program("test-pager");
  const auto dir = scratch_dir("pager");
  auto term = std::make_unique<SnppTerminal>(dir);
  const auto term_port = term->port();
  auto server = std::make_unique<WsRecorder>();
  const auto port = server->port();

  PagerOptions opt;
  opt.server = {"127.0.0.1", port};
  opt.token = "p-secret";
  opt.terminal = {"127.0.0.1", term_port};
  opt.state_path = (dir / "delivered.txt").string();
  opt.backoff_min = milliseconds(20);
  opt.backoff_max = milliseconds(200);
  opt.snpp_step_timeout = milliseconds(3000);

  auto io = std::make_unique<IoThread>();
  std::unique_ptr<PagerGateway> gw;
  const auto start_gateway = [&] {
    io = std::make_unique<IoThread>();
    io->call([&] {
      gw = std::make_unique<PagerGateway>(io->ioc(), opt);
      gw->start();
      return 0;
    });
  };
  const auto stop_gateway = [&] {
    io->call([&] {
      gw->stop(milliseconds(500));
      return 0;
    });
    io->join();
    gw.reset();
  };
  const auto paged = [&](const std::string& text) {
    const auto p = term->pages();
    return std::count(p.begin(), p.end(), "1200017\t" + text);
  };
  start_gateway();
  REQUIRE(wait_until([&] { return server->connections() == 1; }, 20s));
  CHECK(server->authorizations()[0] == "Bearer p-secret");

  REQUIRE(server->send_all("/ws/pager", page_json("P1", "1200017", "incident 1")) == 1);
  REQUIRE(wait_until([&] { return has(delivered(*server), "P1"); }, 20s));
  CHECK(paged("incident 1") == 1);

  // The terminal goes down: pages wait, nothing is reported delivered.
  term->stop();
  server->send_all("/ws/pager", page_json("P2", "1200017", "incident 2"));
  server->send_all("/ws/pager", page_json("P3", "1200017", "incident 3"));
  // Both pages reached the gateway and it has tried the terminal and failed.
  REQUIRE(wait_until([&] {
    return io->call([&] { return gw->stats().received >= 3 && gw->stats().failures >= 2; });
  }, 20s));
  CHECK(!has(delivered(*server), "P2"));
  CHECK(!has(delivered(*server), "P3"));
  term = std::make_unique<SnppTerminal>(dir, term_port);
  REQUIRE(wait_until([&] { return has(delivered(*server), "P2") && has(delivered(*server), "P3"); }, 20s));
  CHECK(paged("incident 2") == 1);
  CHECK(paged("incident 3") == 1);

  // The server restarts and, as dispatchd does, sends the pages it has no
  // `delivered` for: here all of them, as if the acknowledgements had been lost.
  server->stop();
  server = std::make_unique<WsRecorder>(port);
  REQUIRE(wait_until([&] { return server->connections() == 1; }, 20s));
  for (const char* id : {"P1", "P2", "P3"}) server->send_all("/ws/pager", page_json(id, "1200017", "again"));
  server->send_all("/ws/pager", page_json("P4", "1200017", "incident 4"));
  REQUIRE(wait_until([&] { return delivered(*server).size() == 4; }, 20s));
  CHECK(paged("again") == 0);
  CHECK(paged("incident 4") == 1);

  // The gateway restarts: what it delivered before is remembered in its state file.
  stop_gateway();
  server->stop();
  server = std::make_unique<WsRecorder>(port);
  start_gateway();
  REQUIRE(wait_until([&] { return server->connections() == 1; }, 20s));
  for (const char* id : {"P1", "P2", "P3", "P4"}) server->send_all("/ws/pager", page_json(id, "1200017", "again"));
  server->send_all("/ws/pager", page_json("P5", "1200017", "incident 5"));
  REQUIRE(wait_until([&] { return delivered(*server).size() == 5; }, 20s));
  CHECK(paged("again") == 0);
  CHECK(paged("incident 5") == 1);
  CHECK(term->pages().size() == 5);
  stop_gateway();
}
