// dispatchd: the dispatch server (wire-contract.md section 1).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "geo/share_dir.hpp"
#include "net/check_config.hpp"
#include "net/server.hpp"

int main(int argc, char** argv) {
  using namespace dispatch;
  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout or socket is an error value, not a death
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit is a failing write (retried), not a death
#ifdef __GLIBC__
  // A fixed mmap threshold (docs/performance.md, "Memory per unit"). glibc raises it on
  // its own to the size of every large block freed (up to 32 MiB): once a console's
  // snapshot (about 200 bytes a unit) has been freed, every later flush buffer and batch of
  // writes below that size came from the heap, where it stayed resident, scattered among
  // small blocks, in the arena of each thread that allocated it. Fixed, blocks of 128 KiB
  // and more are mapped and given back when freed: a console flush's copies and text (MBs)
  // and, when every unit sends its first position at once, the engine's batches of track
  // writes (500 of 328 bytes for a gateway frame). Most batches are far smaller and stay
  // on the heap. With 100k units: 445 -> 295 bytes of RSS per unit without a console
  // (256 KiB: 390-445). Setting it also fixes the trim threshold (128 KiB).
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  net::ServerOptions opt;
  std::string listen = "127.0.0.1:8080";
  std::string db = "dispatch.db";
  double ack_timeout_s = 30, stale_after_s = 60, max_future_s = 300, page_retry_s = 60;
  bool sync_normal = false;
  std::size_t batch_max = opt.store.batch_max;
  long batch_delay_us = 0;

  // Defaults from the files shipped beside this program: <prefix>/share/dispatch when
  // installed, <build>/share/dispatch in the build tree (geo/share_dir.hpp); none when absent.
  opt.web_root = geo::shared_file("web");
  opt.zones_path = geo::shared_file("assets/geo/chongqing_districts_gcj02.geojson");
  opt.places_path = geo::shared_file("assets/places/chongqing-demo.geojson");
  opt.insurers_path = geo::shared_file("config/insurers.json");
  bool zones_wgs84 = false;
  bool check_only = false;

  CLI::App app{"dispatchd: real-time dispatch of joint police-insurance patrol teams"};
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--db", db,
                 "SQLite database file (created when missing), or postgresql://USER:PASSWORD@HOST:PORT/DB "
                 "(several dispatchd may share it: one active, the others standby)")
      ->capture_default_str();
  long lease_ms = opt.lease.count();
  app.add_option("--lease-ms", lease_ms, "PostgreSQL: the active server's lease, renewed every third of it")
      ->capture_default_str();
  app.add_option("--node-name", opt.node_name, "PostgreSQL: this server's name in the lease (default host:pid)");
  app.add_option("--tokens", opt.tokens_path, "tokens.json: who may connect")->required();
  app.add_option("--fleet", opt.fleet_path, "fleet.json: the roster of units");
  app.add_option("--web-root", opt.web_root, "folder served at / (the dispatch console)")
      ->capture_default_str();
  app.add_option("--zones", opt.zones_path, "district boundaries (GeoJSON; '' for none)")
      ->capture_default_str();
  app.add_flag("--zones-wgs84", zones_wgs84, "the zones file is WGS84 (default: GCJ-02, converted at load)");
  app.add_option("--places", opt.places_path, "helicopter bases, landing zones, hospitals, rural stations (GeoJSON; '' for none)")
      ->capture_default_str();
  app.add_option("--insurers", opt.insurers_path, "the insurers and their other names (JSON; '' for none)")
      ->capture_default_str();
  app.add_option("--roads", opt.roads_path,
                 "OpenStreetMap extract (.osm or .osm.pbf): moto and car ETAs by road (default: straight line)");
  // 64: on the real core-city network the road-nearest team was 40th by line at worst
  // and outside the first 16 in 12.5% of scenes; 64 costs <= 1 ms (docs/performance.md).
  opt.engine.road_candidates = 64;
  app.add_option("--road-candidates", opt.engine.road_candidates,
                 "with --roads: how many nearest ground units by line are timed by road")
      ->capture_default_str();
  app.add_option("--tiles", opt.tiles,
                 "the console's base map: a tile server's URL template, e.g. https://tiles.example/{z}/{x}/{y}.png "
                 "(default: none; the console draws the districts)");
  app.add_option("--tiles-attribution", opt.tiles_attribution, "the credit shown under that base map");
  app.add_option("--urban", opt.urban, "urban districts by name or adcode (default: the nine central ones)");
  double track_days = 7, track_metres = opt.engine.track_min_distance_m, track_secs = 60;
  app.add_option("--track-retention-days", track_days, "days unit tracks are kept")->capture_default_str();
  app.add_option("--track-min-distance", track_metres, "a track point when a unit moved this many metres")
      ->capture_default_str();
  app.add_option("--track-min-interval", track_secs, "or when this many seconds have passed")->capture_default_str();
  app.add_option("--ack-timeout", ack_timeout_s, "seconds a unit has to ack an assignment")
      ->capture_default_str();
  app.add_option("--stale-after", stale_after_s, "seconds without a position before a unit is stale")
      ->capture_default_str();
  app.add_option("--max-future", max_future_s, "seconds a position's ts may lie ahead of the server")
      ->capture_default_str();
  app.add_option("--page-retry", page_retry_s, "seconds before an undelivered page is sent again")
      ->capture_default_str();
  app.add_flag("--sync-normal", sync_normal,
               "synchronous=NORMAL: faster commits; the last ones may be lost on power failure");
  app.add_option("--commit-batch", batch_max, "commit when this many writes are pending")
      ->capture_default_str();
  app.add_option("--commit-delay-us", batch_delay_us,
                 "or this many microseconds after the first pending write (0: as soon as free)")
      ->capture_default_str();
  app.add_option("--io-threads", opt.io_threads, "network threads")->capture_default_str();
  app.add_option("--trace-reports", opt.trace_reports,
                 "write a line per report and per assign released to this file (monotonic microseconds; "
                 "joined with dispatch-sim --trace by scripts/trace-reports.py)");
  app.add_option("--max-frame", opt.max_frame_bytes, "largest WebSocket frame in bytes (1009 above)")
      ->capture_default_str();
  app.add_option("--max-body", opt.max_body_bytes, "largest HTTP body in bytes (413 above)")
      ->capture_default_str();
  app.add_option("--rate", opt.rate_per_s,
                 "messages per second per connection, a batch counting each (rate_limited above)")
      ->capture_default_str();
  app.add_option("--gateway-rate", opt.bulk_rate_per_s, "messages per second per gateway connection")
      ->capture_default_str();
  app.add_option("--max-connections", opt.max_connections,
                 "connections at once (0: from the file-descriptor limit, at most 10000)")
      ->capture_default_str();
  app.add_option("--max-connections-per-peer", opt.max_connections_per_peer, "connections at once from one address")
      ->capture_default_str();
  long request_timeout_s = opt.request_timeout.count();
  app.add_option("--request-timeout", request_timeout_s,
                 "seconds a new connection has to send its first request whole")
      ->capture_default_str();
  app.add_option("--max-queued-writes", opt.store.max_queued_writes,
                 "writes waiting for the disk before commands are answered unavailable")
      ->capture_default_str();
  app.add_option("--max-open-per-token", opt.engine.max_open_per_source,
                 "open incidents one token may have (rate_limited above; 0: no cap)")
      ->capture_default_str();
  app.add_option("--max-status-changes-per-min", opt.engine.max_status_changes_per_min,
                 "status changes one unit may make in a minute (rate_limited above; 0: no cap)")
      ->capture_default_str();
  // Air-ground rescue and the clocks that raise the alarm (docs/protocol.md, air-ground rescue).
  double remote_liability_s = 300, claim_paid_s = 900, airborne_s = 600, landed_s = 1800, hospital_s = 3600;
  app.add_option("--lz-max-km", opt.engine.lz_max_km,
                 "a landing zone farther from the scene is not used: the helicopter flies to the scene")
      ->capture_default_str();
  app.add_option("--remote-liability", remote_liability_s,
                 "seconds from the accident to the remote liability decision (overdue alert after)")
      ->capture_default_str();
  app.add_option("--claim-paid-within", claim_paid_s, "seconds from the accident to a claim paid (overdue alert after)")
      ->capture_default_str();
  app.add_option("--airborne-within", airborne_s, "seconds from the helicopter's call to airborne (overdue alert after)")
      ->capture_default_str();
  app.add_option("--landed-within", landed_s, "seconds from the helicopter's call to landed (overdue alert after)")
      ->capture_default_str();
  app.add_option("--hospital-within", hospital_s,
                 "seconds from the helicopter's call to the patient handed to the hospital (overdue alert after)")
      ->capture_default_str();
  double unit_event_days = 90;
  app.add_option("--unit-event-retention-days", unit_event_days, "days the units' audit trail is kept")
      ->capture_default_str();
  double sighting_days = 90;
  app.add_option("--sighting-retention-days", sighting_days, "days the rural stations' sightings are kept")
      ->capture_default_str();
  app.add_option("--console-max-queue", opt.console_hard_bytes,
                 "bytes queued to a console before it is dropped as too slow")
      ->capture_default_str();
  app.add_flag("--check-config", check_only,
               "read the tokens, fleet, zones, places and insurers files and the console's folder, "
               "say what is wrong with each, and exit (0: all good)");
  CLI11_PARSE(app, argc, argv);

  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "dispatchd: --listen must be HOST:PORT\n";
    return 2;
  }
  opt.host = listen.substr(0, colon);
  if (opt.host.size() > 2 && opt.host.front() == '[') opt.host = opt.host.substr(1, opt.host.size() - 2);
  try {
    opt.port = static_cast<std::uint16_t>(std::stoi(listen.substr(colon + 1)));
  } catch (...) {
    std::cerr << "dispatchd: bad port in --listen\n";
    return 2;
  }
  opt.zones_gcj02 = !zones_wgs84;
  opt.request_timeout = std::chrono::seconds(std::max(1L, request_timeout_s));
  opt.store.unit_event_retention_ms = static_cast<std::int64_t>(unit_event_days * 86400 * 1000);
  opt.store.sighting_retention_ms = static_cast<std::int64_t>(sighting_days * 86400 * 1000);
  opt.store.path = db;
  opt.lease = std::chrono::milliseconds(std::max(30L, lease_ms));
  opt.store.synchronous_full = !sync_normal;
  opt.store.batch_max = batch_max;
  opt.store.batch_delay = std::chrono::microseconds(batch_delay_us);
  opt.engine.ack_within_ms = static_cast<engine::Millis>(ack_timeout_s * 1000);
  opt.engine.stale_after_ms = static_cast<engine::Millis>(stale_after_s * 1000);
  opt.engine.max_future_ms = static_cast<engine::Millis>(max_future_s * 1000);
  opt.engine.page_retry_ms = static_cast<engine::Millis>(page_retry_s * 1000);
  opt.engine.track_min_distance_m = track_metres;
  opt.engine.remote_liability_ms = static_cast<engine::Millis>(remote_liability_s * 1000);
  opt.engine.claim_paid_within_ms = static_cast<engine::Millis>(claim_paid_s * 1000);
  opt.engine.airborne_within_ms = static_cast<engine::Millis>(airborne_s * 1000);
  opt.engine.landed_within_ms = static_cast<engine::Millis>(landed_s * 1000);
  opt.engine.hospital_within_ms = static_cast<engine::Millis>(hospital_s * 1000);
  opt.engine.track_min_interval_ms = static_cast<engine::Millis>(track_secs * 1000);
  opt.store.track_retention_ms = static_cast<std::int64_t>(track_days * 86400 * 1000);

  if (!opt.tiles.empty()) {
    const std::string& t = opt.tiles;
    const bool scheme = t.starts_with("https://") || t.starts_with("http://") || t.starts_with("/");
    if (!scheme || t.find("{z}") == std::string::npos || t.find("{x}") == std::string::npos ||
        t.find("{y}") == std::string::npos || t.find_first_of("\"<> \t\r\n") != std::string::npos) {
      std::cerr << "dispatchd: --tiles must be an http(s) URL or a /path with {z}, {x} and {y} and no spaces, "
                   "e.g. https://tiles.example/{z}/{x}/{y}.png\n";
      return 2;
    }
  }
  if (check_only) {
    const int problems = net::check_config(opt, db, std::cout, std::cerr);
    if (problems) std::cerr << "dispatchd: --check-config: " << problems << (problems == 1 ? " problem\n" : " problems\n");
    else std::cout << "dispatchd: --check-config: all good\n";
    return problems ? 1 : 0;
  }
  auto shown = [](const std::string& p) { return p.empty() ? std::string("(none)") : p; };
  std::cerr << "dispatchd: web root " << shown(opt.web_root) << "; zones " << shown(opt.zones_path) << "; places "
            << shown(opt.places_path) << "; insurers " << shown(opt.insurers_path) << '\n';
  try {
    net::Server server(opt);
    const std::string where = server.start();
    std::printf("listening on %s\n", where.c_str());
    std::fflush(stdout);
    server.wait();
    server.stop();
    std::fprintf(stderr, "dispatchd: stopped cleanly\n");
  } catch (const std::exception& e) {
    std::cerr << "dispatchd: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
