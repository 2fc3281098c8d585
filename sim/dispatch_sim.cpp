// dispatch-sim: drives a running dispatchd over real WebSockets, as a fleet of units
// behind gateways, a report source, insurers and a dispatcher, and measures it.
//
//   dispatch-sim make-fleet --units N --seed S --out fleet.json [--tokens-out tokens.json]
//   dispatch-sim run --url ws://HOST:PORT --tokens tokens.json --fleet fleet.json [...]
#include <CLI/CLI.hpp>

#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>

#include "geo/share_dir.hpp"
#include "sim/fleet.hpp"
#include "sim/sim_run.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

using dispatch::sim_run::Options;
using dispatch::sim_run::Sim;
namespace json = boost::json;
namespace sim = dispatch::sim;
namespace geo = dispatch::geo;

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"dispatch-sim: load, demo and correctness harness for dispatchd"};
  app.require_subcommand(1);

  auto* mk = app.add_subcommand("make-fleet", "write a fleet file (and a tokens file) for dispatchd --fleet");
  std::size_t n = 300;
  std::uint64_t seed = 1;
  std::string out = "fleet.json", tokens_out;
  // The shipped districts, from <prefix>/share/dispatch (geo/share_dir.hpp).
  std::string zones = geo::shared_file("assets/geo/chongqing_districts_gcj02.geojson");
  mk->add_option("--units", n, "how many units")->capture_default_str();
  mk->add_option("--seed", seed, "random seed")->capture_default_str();
  mk->add_option("--out", out, "fleet file to write")->capture_default_str();
  mk->add_option("--tokens-out", tokens_out, "also write a tokens file with every role");
  mk->add_option("--zones", zones, "district boundaries (GCJ-02 GeoJSON)")->capture_default_str();

  auto* run = app.add_subcommand("run", "drive a running dispatchd");
  Options o;
  run->add_option("--url", o.url, "ws://HOST:PORT of dispatchd (several comma-separated: the active one)")->required();
  run->add_option("--tokens", o.tokens, "tokens file (gateway \"*\", reporter, console; insurers optional)")->required();
  run->add_option("--fleet", o.fleet, "fleet file the server was started with")->required();
  run->add_option("--units", o.units, "use only the first N units (0: all)");
  run->add_option("--roads", o.roads,
                  "OpenStreetMap extract the server got as --roads: units drive along it, the oracle judges by road ETA");
  run->add_option("--rate", o.rate, "positions per unit per second")->capture_default_str();
  run->add_option("--reports-per-s", o.reports_per_s, "accident reports per second (Poisson)")->capture_default_str();
  run->add_option("--duration", o.duration, "seconds to run (0: until stopped)")->capture_default_str();
  run->add_option("--seed", o.seed, "random seed")->capture_default_str();
  run->add_option("--gateways", o.gateways, "gateway connections the units are spread over")->capture_default_str();
  run->add_option("--batch", o.batch, "positions per frame")->capture_default_str();
  run->add_option("--console-batch", o.console_batch,
                  "consoles ask for positions as arrays (?batch=1), as the shipped console does; "
                  "0: a message per unit")
      ->capture_default_str();
  auto* slices = run->add_option("--slices", o.slices,
                                 "send the fleet's positions in this many slices per period, each unit at its own "
                                 "phase (1: every unit at once)")
                      ->capture_default_str();
  run->add_option("--reporters", o.reporters, "reporter connections (on the report thread), used in turn")
      ->capture_default_str();
  run->add_option("--consoles", o.consoles, "console connections open through the run, taking the whole feed (0: none)")
      ->capture_default_str();
  run->add_option("--max-queue-mib", o.max_queue_mib,
                  "a gateway with more than this queued skips a round of positions (held, counted)")
      ->capture_default_str();
  // Flood frames are rendered once per gateway and sent whole each period: no slices.
  run->add_flag("--flood", o.flood,
                "position intake benchmark: frames rendered once, only ts and a jitter patched (units do not patrol)")
      ->excludes(slices);
  run->add_option("--realtime-priority", o.realtime_priority,
                  "SCHED_FIFO priority for the threads that time the answers (report and gateway threads), so that "
                  "a generator on the server's cores does not time its own wait for a CPU (0: normal priority)")
      ->capture_default_str()
      ->check(CLI::Range(0, 99));
  run->add_option("--json", o.json_out, "write the final summary here");
  run->add_option("--trace", o.trace_out,
                  "write a line per assigned report (its send and its first assign's arrival, monotonic "
                  "microseconds), to join with dispatchd --trace-reports (scripts/trace-reports.py)");
  run->add_flag("--demo", o.demo, "gentle: 1 Hz, a report every ~20 s, crews at human pace, runs until stopped");
  CLI11_PARSE(app, argc, argv);

  try {
    if (*mk) {
      if (zones.empty()) {
        std::cerr << "dispatch-sim: no districts file: pass --zones (none found under "
                  << (geo::share_dir().empty() ? std::string("<prefix>/share/dispatch") : geo::share_dir().string())
                  << ")\n";
        return 2;
      }
      geo::ZoneOptions zo;
      zo.gcj02 = true;
      auto z = geo::Zones::load(zones, zo);
      auto fleet = sim::make_fleet(z, n, seed);
      std::ofstream(out) << sim::fleet_json(fleet);
      if (!tokens_out.empty()) std::ofstream(tokens_out) << sim::tokens_json();
      std::cerr << "dispatch-sim: wrote " << fleet.size() << " units to " << out << "\n";
      return 0;
    }
    if (o.demo) {
      if (!run->count("--reports-per-s")) o.reports_per_s = 0.05;
      if (!run->count("--duration")) o.duration = 0;
      if (!run->count("--gateways")) o.gateways = 1;
    }
    auto fleet = sim::parse_fleet_json(read_file(o.fleet));
    auto tokens = json::parse(read_file(o.tokens));
    Sim sim(o, std::move(fleet), std::move(tokens));
    return sim.run();
  } catch (const std::exception& e) {
    std::cerr << "dispatch-sim: " << e.what() << "\n";
    return 1;
  }
}
