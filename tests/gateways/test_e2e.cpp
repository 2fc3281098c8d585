// End to end: the real dispatchd, the real dispatch-avl and dispatch-pager programs,
// Debian's gpsd fed by gpsfake, plain NMEA over TCP, and Debian's Net::SNPP::Server;
// the server and the terminal are restarted mid-stream.
#include <doctest/doctest.h>

#include "tests/shared_data.hpp"

#include <atomic>
#include <cmath>
#include <map>

#include <sqlite3.h>

#include "geo/nmea.hpp"
#include "gateways/gpsd.hpp"
#include "support.hpp"
#include "tests/e2e/harness.hpp"

using namespace dispatch::test;
namespace fs = std::filesystem;
namespace json = boost::json;
using std::chrono::milliseconds;

namespace {

const fs::path gpsd_dir = fs::path(DISPATCH_SHARED_DIR) / "data/nmea/gpsd";

const char* tokens = R"({"tokens": [
  {"token": "c-secret", "role": "console"},
  {"token": "r-secret", "role": "reporter"},
  {"token": "g-secret", "role": "gateway", "units": ["*"]},
  {"token": "p-secret", "role": "pager"}
]})";

const char* fleet = R"({"units": [
  {"id": "M017", "kind": "moto", "callsign": "渝警保17", "capcode": "1200017"},
  {"id": "M018", "kind": "moto", "callsign": "渝警保18", "capcode": "1200018"},
  {"id": "M019", "kind": "moto", "callsign": "渝警保19", "capcode": "1200019"},
  {"id": "H1", "kind": "heli", "callsign": "渝救援1", "base": {"lat": 29.72, "lon": 106.64}}
]})";

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

// dispatchd on a fixed port, so that it can be restarted where the gateways expect it.
struct Dispatchd {
  fs::path dir;
  std::uint16_t port = free_port();
  std::unique_ptr<Child> child;
  int runs = 0;

  explicit Dispatchd(fs::path d) : dir(std::move(d)) {
    write_file(dir / "tokens.json", tokens);
    write_file(dir / "fleet.json", fleet);
    start();
  }
  void start() {
    ++runs;
    child = std::make_unique<Child>(
        std::vector<std::string>{DISPATCHD_PATH, "--listen", "127.0.0.1:" + std::to_string(port), "--db",
                                 (dir / "dispatch.db").string(), "--tokens", (dir / "tokens.json").string(),
                                 "--fleet", (dir / "fleet.json").string(), "--ack-timeout", "600"},
        dir / ("dispatchd-" + std::to_string(runs) + ".err"));
    REQUIRE_MESSAGE(child->wait_listening(20s) == port, child->stderr_text());
  }
  // SIGTERM: the contract says it finishes in-flight writes and exits 0.
  int stop() {
    const int st = child->stop(20s);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  json::value get(const std::string& target) {
    const auto r = e2e::http_request(port, e2e::http::verb::get, target, {}, "c-secret");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  std::optional<json::object> unit(const std::string& id) {
    const auto units = get("/api/units");
    for (const auto& u : units.as_array())
      if (u.as_object().at("id").as_string() == id) return u.as_object();
    return std::nullopt;
  }
  double metric(const std::string& name) {
    const auto r = e2e::http_request(port, e2e::http::verb::get, "/metrics");
    std::istringstream in(r.body);
    for (std::string line; std::getline(in, line);)
      if (line.starts_with(name + " ")) return std::stod(line.substr(name.size() + 1));
    return -1;
  }
};

bool unit_at(Dispatchd& d, const std::string& id, std::int64_t ts, double lat, double lon) {
  const auto u = d.unit(id);
  if (!u || !u->at("ts").is_number()) return false;
  // dispatchd writes coordinates to 1e-7 degrees (1 cm).
  return u->at("ts").to_number<std::int64_t>() == ts && std::abs(u->at("lat").to_number<double>() - lat) < 1e-6 &&
         std::abs(u->at("lon").to_number<double>() - lon) < 1e-6;
}

std::string token_file(const fs::path& dir, const std::string& token) {
  const auto p = dir / (token + ".token");
  write_file(p, token + "\n");
  return p.string();
}

// "ddmm.mmmm" for NMEA.
std::string nmea_coord(double v, int deg_digits) {
  const double a = std::abs(v);
  const int deg = static_cast<int>(a);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*d%07.4f", deg_digits, deg, (a - deg) * 60);
  return buf;
}

// RMC and GGA for one fix at UTC ms `ts`.
std::pair<std::string, std::string> nmea_fix(std::int64_t ts, double lat, double lon) {
  const std::time_t secs = static_cast<std::time_t>(ts / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char hms[64], dmy[64];
  std::snprintf(hms, sizeof hms, "%02d%02d%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ts % 1000));
  std::snprintf(dmy, sizeof dmy, "%02d%02d%02d", tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
  const std::string la = nmea_coord(lat, 2) + (lat < 0 ? ",S" : ",N");
  const std::string lo = nmea_coord(lon, 3) + (lon < 0 ? ",W" : ",E");
  return {dispatch::geo::nmea_sentence(std::string("GNRMC,") + hms + ",A," + la + "," + lo + ",9.7,90.0," + dmy + ",,,A"),
          dispatch::geo::nmea_sentence(std::string("GNGGA,") + hms + "," + la + "," + lo + ",1,12,0.8,250.0,M,-30.0,M,,")};
}

// What the coordinates read back as (minutes to 4 decimals).
double nmea_rounded(double v, int deg_digits) {
  const auto s = nmea_coord(v, deg_digits);
  const double deg = std::stod(s.substr(0, static_cast<std::size_t>(deg_digits)));
  const double min = std::stod(s.substr(static_cast<std::size_t>(deg_digits)));
  return (v < 0 ? -1 : 1) * (deg + min / 60);
}

}  // namespace

TEST_CASE("dispatch-avl: gpsd (gpsfake) and NMEA over TCP into dispatchd, restarted mid-stream") {
  DISPATCH_NEEDS_SHARED_DATA(gpsd_dir / "sirfstarv-nmea.log");
  const auto dir = scratch_dir("e2e_avl");
  Dispatchd server(dir);
  const auto gpsd_port = free_port();
  Child avl({DISPATCH_AVL_PATH, "--server", "127.0.0.1:" + std::to_string(server.port), "--token-file",
             token_file(dir, "g-secret"), "--gpsd", "127.0.0.1:" + std::to_string(gpsd_port), "--default-unit",
             "M017", "--nmea-listen", "127.0.0.1:0", "--flush-ms", "100", "--backoff-min-ms", "50",
             "--backoff-max-ms", "400"},
            dir / "avl.err");
  const auto nmea_port = avl.wait_listening(10s, "nmea listening on ");
  REQUIRE_MESSAGE(nmea_port, avl.stderr_text());

  GpsdWatcher reference(gpsd_port);
  auto fake = start_gpsfake(gpsd_dir / "sirfstarv-nmea.log", gpsd_port, dir, 0.005);

  // A radio unit on plain NMEA: fixes 2 s apart in its own clock (sent every 15 ms),
  // 110 m apart, moving east through Chongqing at 198 km/h: under the moto speed
  // limit, and far enough apart that dispatchd keeps every one in its track table.
  std::atomic<bool> server_down{false};
  std::atomic<int> sent_while_down{0}, radio_sent{0};
  std::int64_t last_ts = 0;
  std::vector<std::int64_t> radio_ts;
  double last_lat = 0, last_lon = 0;
  std::thread radio([&] {
    e2e::asio::io_context ioc;
    e2e::tcp::socket s(ioc);
    s.connect({e2e::asio::ip::make_address("127.0.0.1"), *nmea_port});
    e2e::asio::write(s, e2e::asio::buffer(std::string("UNIT M018\r\n")));
    const std::int64_t start = e2e::now_ms() - 420'000;
    for (int i = 0; i < 200; ++i) {
      const std::int64_t ts = start + i * 2000;
      const double lat = 29.5630, lon = 106.5510 + i * 110.0 / 96720.0;
      const auto [rmc, gga] = nmea_fix(ts, lat, lon);
      e2e::asio::write(s, e2e::asio::buffer(gga + "\r\n" + rmc + "\r\n"));
      last_ts = ts;
      radio_ts.push_back(ts);
      last_lat = nmea_rounded(lat, 2);
      last_lon = nmea_rounded(lon, 3);
      if (server_down) ++sent_while_down;
      ++radio_sent;
      // Half way, the radio waits for dispatchd to go down, then goes on while it is away.
      if (i == 99) wait_until([&] { return server_down.load(); }, 30s);
      std::this_thread::sleep_for(15ms);
    }
  });

  // dispatchd stops in the middle of both streams (once both have reached it) and comes
  // back on the same port after the radio has sent fixes into the gap.
  const auto has_position = [&](const std::string& id) {
    const auto u = server.unit(id);
    return u && u->at("ts").is_number();
  };
  CHECK(wait_until([&] { return radio_sent >= 100 && has_position("M017") && has_position("M018"); }, 20s));
  server_down = true;
  CHECK(server.stop() == 0);
  CHECK(wait_until([&] { return sent_while_down >= 20 || radio_sent == 200; }, 20s));
  server.start();
  server_down = false;
  radio.join();
  CHECK(fake->wait_exit(30s).has_value());

  // The last fix gpsd reported, as its plain client saw it (read again at each poll: the
  // client may still be reading gpsd's last lines when gpsfake has exited).
  const auto last_reported = [&] {
    std::optional<dispatch::gateways::GpsdTpv> last_tpv;
    for (const auto& l : reference.lines())
      if (auto r = dispatch::gateways::parse_gpsd_line(l);
          std::holds_alternative<dispatch::gateways::GpsdTpv>(r) && std::get<dispatch::gateways::GpsdTpv>(r).usable())
        if (!last_tpv || *std::get<dispatch::gateways::GpsdTpv>(r).time_ms > *last_tpv->time_ms)
          last_tpv = std::get<dispatch::gateways::GpsdTpv>(r);
    return last_tpv;
  };
  REQUIRE(last_reported());

  CHECK_MESSAGE(wait_until([&] {
                  const auto t = last_reported();
                  return unit_at(server, "M017", *t->time_ms, *t->lat, *t->lon);
                }, 20s),
                "M017: " << json::serialize(server.unit("M017").value_or(json::object{})));
  CHECK_MESSAGE(wait_until([&] { return unit_at(server, "M018", last_ts, last_lat, last_lon); }, 20s),
                "M018: " << json::serialize(server.unit("M018").value_or(json::object{})));
  // What the radio sent while the server was away reached the new server.
  MESSAGE("fixes sent while dispatchd was down: " << sent_while_down.load());
  CHECK(sent_while_down > 10);
  CHECK(server.metric("dispatch_positions_in_total") >= sent_while_down);

  // SIGTERM: the gateway hands over what waits and exits 0 (non-zero if any were left).
  const int st = avl.stop(10s);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  const auto log = avl.stderr_text();
  CHECK(log.find("disconnected from server") != std::string::npos);
  CHECK(log.find("0 dropped from a full backlog, 0 unsent") != std::string::npos);
  CHECK(server.stop() == 0);

  // dispatchd's own record, its SQLite track table: every fix the radio sent is
  // there, those sent while it was down included.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((dir / "dispatch.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT ts FROM tracks WHERE unit = 'M018' ORDER BY ts", -1, &q, nullptr) ==
          SQLITE_OK);
  std::vector<std::int64_t> tracked;
  while (sqlite3_step(q) == SQLITE_ROW) tracked.push_back(sqlite3_column_int64(q, 0));
  sqlite3_finalize(q);
  sqlite3_close(db);
  CHECK(tracked.size() == radio_ts.size());
  CHECK(tracked == radio_ts);
}

TEST_CASE("dispatch-pager: pages reach the SNPP terminal; delivered only after it took them; restarts lose nothing") {
  const auto dir = scratch_dir("e2e_pager");
  Dispatchd server(dir);
  const auto term_port = free_port();
  auto term = std::make_unique<SnppTerminal>(dir, term_port);
  Child pager({DISPATCH_PAGER_PATH, "--server", "127.0.0.1:" + std::to_string(server.port), "--token-file",
               token_file(dir, "p-secret"), "--snpp", "127.0.0.1:" + std::to_string(term_port), "--state",
               (dir / "delivered.txt").string(), "--backoff-min-ms", "50", "--backoff-max-ms", "400",
               "--snpp-timeout-ms", "3000"},
              dir / "pager.err");

  constexpr double lat = 29.5630, lon = 106.5510;
  const auto place = [&](e2e::Ws& gw, const std::string& unit, double dlon) {
    gw.send("[" + e2e::position(unit, lat, lon + dlon, e2e::now_ms()) + "]");
  };
  const auto report = [&](const std::string& id) {
    e2e::Ws rep(server.port, "/ws/report", "r-secret");
    rep.send(e2e::report(id, lat, lon));
    const auto acc = rep.recv_type("accepted");
    REQUIRE(acc);
    return e2e::str(*acc, "incident");
  };
  const auto delivered_to_server = [&](const std::string& incident) {
    const auto inc = server.get("/api/incidents/" + incident).as_object();
    for (const auto& e : inc.at("timeline").as_array()) {
      const auto& o = e.as_object();
      if (o.at("event").as_string() == "paged" &&
          std::string(o.at("detail").as_string()).find("pager delivered") != std::string::npos)
        return true;
    }
    return false;
  };
  const auto paged = [&](const std::string& capcode) {
    const auto p = term->pages();
    return std::count_if(p.begin(), p.end(), [&](const std::string& l) { return l.starts_with(capcode + "\t"); });
  };
  // How often the gateway's log says `what` so far.
  const auto logged = [&](std::string_view what) {
    const auto text = pager.stderr_text();
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
    return n;
  };
  // A report is assigned to the nearest unit with a position: the unit's must be in first.
  const auto placed = [&](const std::string& id) {
    return wait_until([&] {
      const auto u = server.unit(id);
      return u && u->at("ts").is_number();
    }, 20s);
  };

  {
    e2e::Ws gw(server.port, "/ws/unit", "g-secret");
    place(gw, "M017", 0.001);
    REQUIRE(placed("M017"));
    const auto i1 = report("cc-1");
    REQUIRE_MESSAGE(wait_until([&] { return delivered_to_server(i1); }, 20s), pager.stderr_text());
    CHECK(paged("1200017") == 1);

    // The terminal is down: the page waits at the gateway, the server hears nothing.
    term->stop();
    place(gw, "M018", 0.002);
    REQUIRE(placed("M018"));
    const auto failed_before = logged(" failed, retry in ");
    const auto i2 = report("cc-2");
    REQUIRE_MESSAGE(wait_until([&] { return logged(" failed, retry in ") > failed_before; }, 20s),
                    pager.stderr_text());
    CHECK(!delivered_to_server(i2));
    CHECK(paged("1200018") == 0);
    term = std::make_unique<SnppTerminal>(dir, term_port);
    REQUIRE(wait_until([&] { return delivered_to_server(i2); }, 20s));
    CHECK(paged("1200018") == 1);

    // Terminal down again, a page under way, and dispatchd restarts: after it the
    // gateway delivers, and the page dispatchd sends again is not paged twice.
    term->stop();
    place(gw, "M019", 0.003);
    REQUIRE(placed("M019"));
    const auto i3 = report("cc-3");
    REQUIRE(wait_until([&] { return pager.stderr_text().find("queued") != std::string::npos &&
                                    pager.stderr_text().find("attempt 1 failed") != std::string::npos; }, 20s));
    CHECK(server.stop() == 0);
    term = std::make_unique<SnppTerminal>(dir, term_port);
    REQUIRE(wait_until([&] { return paged("1200019") == 1; }, 20s));
    // The gateway has recorded it as delivered (the terminal logs a page before its 250).
    REQUIRE_MESSAGE(wait_until([&] { return logged(": delivered to terminal ") >= 3; }, 20s), pager.stderr_text());
    const auto again_before = logged("already delivered; acknowledging again");
    server.start();
    REQUIRE_MESSAGE(wait_until([&] { return delivered_to_server(i3); }, 20s), pager.stderr_text());
    // On connect dispatchd sends the page it has no `delivered` for again; once the
    // gateway has answered that one, nothing more can be paged.
    CHECK_MESSAGE(wait_until([&] { return logged("already delivered; acknowledging again") > again_before; }, 20s),
                  pager.stderr_text());
    CHECK(paged("1200019") == 1);
    CHECK(paged("1200017") == 1);
    CHECK(paged("1200018") == 1);
  }
  const int st = pager.stop(10s);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(server.stop() == 0);
}
