// dispatch-sim's `run`: the Sim class and what its threads share. Private to sim/: the
// fleet thread is in sim_fleet.cpp, the report and oracle threads in sim_reports.cpp, the
// progress line and the summary in sim_summary.cpp, starting the threads in sim_run.cpp,
// the command line in dispatch_sim.cpp.
#pragma once

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/json.hpp>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <numbers>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "geo/geo.hpp"
#include "geo/roads.hpp"
#include "geo/share_dir.hpp"
#include "geo/zones.hpp"
#include "sim/fleet.hpp"
#include "sim/prom.hpp"
#include "sim/ws_client.hpp"

namespace dispatch::sim_run {

namespace beast = boost::beast;
namespace asio = boost::asio;
namespace json = boost::json;
using sim::Conn;
using sim::histogram_delta;
using sim::histogram_quantile;
using sim::http_get;
using sim::metric;
using sim::mono_us;
using sim::parse_histograms;

using Millis = std::int64_t;
inline Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}


// ------------------------------------------------------------------------------------

struct Options {
  std::string url, tokens, fleet, json_out, trace_out;
  std::string roads;  // --roads: drive ground units along these roads, and judge by road ETA
  std::size_t units = 0;
  double rate = 1.0, reports_per_s = 1.0, duration = 10;
  std::uint64_t seed = 1;
  std::size_t gateways = 2, batch = 500, reporters = 1, consoles = 1;
  // The fleet's positions go out in this many slices per period, a slice every
  // period/slices (unit i in slice i % slices): units at their own phases, as a real fleet
  // reports, rather than every unit in the same millisecond (1: the whole fleet at once).
  std::size_t slices = 1;
  // The consoles ask for positions as arrays (?batch=1), as the console dispatchd serves
  // does; false: a message per unit, as a console that does not ask.
  bool console_batch = true;
  std::size_t max_queue_mib = 16;
  bool demo = false, flood = false;
  // SCHED_FIFO at this priority for the threads that time the answers (the report and
  // gateway threads), so that a generator sharing the server's cores does not count its
  // own wait for a CPU as the server's latency (0: normal priority).
  int realtime_priority = 0;
};

enum class Status { available, assigned, en_route, on_scene };

struct Unit {
  sim::SimUnit def;
  std::size_t idx = 0;
  geo::LatLon pos;
  double heading = 0;      // degrees
  double speed_mps = 0;
  Millis stop_until = 0;
  Status status = Status::available;
  std::string assignment, incident;
  geo::LatLon target;
  Millis next_action = 0;  // when the crew does its next step
  bool will_decline = false;
  bool arrived = false;
  Millis last_assign = 0;  // when an assign or cancel about it last came
  std::vector<Millis> assign_times;  // every assign to it, for the oracle's verdicts
  std::size_t gateway = 0;
  // --roads: the way to the target (positions along the roads), and the next point on it.
  std::vector<geo::LatLon> path;
  std::size_t path_i = 0;
};

struct ReportInfo {
  std::int64_t sent_us = 0;  // steady clock, on the report thread, just before the send
  Millis sent_ms = 0;
  std::string id, severity, incident;
  bool remote = false, resolved = false;
  std::string assigned;  // the first moto assigned, once resolved
  geo::LatLon at;
  std::vector<std::pair<std::string, std::string>> vehicles;  // plate, insurer
  // The oracle, as of send time: the nearest available moto by the positions sent. Asked
  // once the first assign is in (oracle_wanted until then).
  bool oracle_pending = false, oracle_wanted = false, checked = false;
  std::string best;
  double best_d = 0;
};

// A position as sent, in one atomic word: latitude and longitude in millionths of a
// degree (what the frames carry: 6 decimals), so the report thread reads a whole fix.
inline std::uint64_t pack(geo::LatLon p) {
  const auto la = static_cast<std::int32_t>(std::llround(p.lat * 1e6));
  const auto lo = static_cast<std::int32_t>(std::llround(p.lon * 1e6));
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(la)) << 32) | static_cast<std::uint32_t>(lo);
}
inline geo::LatLon unpack(std::uint64_t v) {
  return {static_cast<double>(static_cast<std::int32_t>(static_cast<std::uint32_t>(v >> 32))) / 1e6,
          static_cast<double>(static_cast<std::int32_t>(static_cast<std::uint32_t>(v))) / 1e6};
}

inline constexpr const char* insurers[] = {"PICC", "平安", "太平洋", "国寿财险", "大地", "阳光", "太平", "华安",
                                    "天安", "永安", "安盛天平", "中华联合"};
inline constexpr const char* plate_letters = "ABCDFGH";

// Four threads, so that the generator does not time its own queueing (issue 13):
//  - the fleet thread (main): movement, position frames, crews, the console(s), insurers;
//  - the gateway I/O thread: only the gateway connections. It writes the frames the fleet
//    thread hands it, and stamps every frame it reads (assign, cancel) on arrival, before
//    parsing; a unit's first assign for an incident is recorded there, then the message
//    goes on to the fleet thread;
//  - the report thread: the reporter connection(s), reports at their Poisson times,
//    `accepted`, and report -> first assign from the stamps above (same steady clock);
//  - the oracle thread: the brute-force nearest for up to 50 reports a second, as of their
//    send time, answered to the report thread (which judges once the assign is in too).
// Shared between them: the positions as sent and the units' availability (atomics), the
// first assigns (a map under a mutex), counters.
class Sim {
 public:
  Sim(Options o, std::vector<sim::SimUnit> fleet, json::value tokens);

  int run();

 private:
  // --realtime-priority: the calling thread at SCHED_FIFO, or a line saying why not.
  void timing_thread_priority(const char* name);

  // ---- the fleet thread ----------------------------------------------------------------

  void tick();

  void shutdown();

  std::uint64_t pending_reports() const;

  void set_status(Unit& u, Status s);

  // Gateways whose queue is over the bound skip this round (their units' positions are
  // held back, and "sent" stays what was really sent): the generator never builds an
  // unbounded backlog when the server cannot keep up.
  std::vector<char> blocked_gateways();

  // The units of one slice (all of them with one slice).
  void move_and_send(Millis now, double dt, std::size_t slice);

  // --flood: every unit's frames rendered once; each round only patches the `ts` digits and
  // the last decimal of lat and lon (a jitter within 0.3 m of the start, see flood_send),
  // then copies the frame out. So the generator costs a memcpy per position, not a JSON rendering, and the
  // intake benchmark measures the server. Units do not patrol; crews still work.
  struct FloodFrame {
    std::string text;
    std::vector<std::uint32_t> ts_at, lat_at, lon_at;  // offsets of the patched digits
  };

  void prepare_flood();

  // Returns the ts it sent (moved on by a millisecond or two when the jitter steps).
  Millis flood_send(Millis ts);

  template <class Turn, class U01>
  void move(Unit& u, Millis now, double dt, Turn& turn, U01& u01);

  // Crews: ack or decline after a delay, arrive, clear.
  // Every 5 ms: the crews of the units that are not available (not every unit: at 100k
  // units that scan alone kept a core busy, on the cores the server is measured on).
  void crews(Millis now);

  void console_duties(Millis now);

  // ---- the gateway I/O thread ----------------------------------------------------------

  void on_gateway_message(const json::object& m, std::int64_t arrival_us);

  // ---- the fleet thread, continued: unit messages ---------------------------------------

  void on_unit_message(const json::object& m);

  void on_console_message(const json::object& m);

  void on_insurer_message(const std::shared_ptr<Conn>& c, const json::object& m);

  // Any thread.
  void on_error(const json::object& m);

  // ---- the report thread ----------------------------------------------------------------

  void schedule_next_report();

  void report_tick();

  std::string make_report(Millis now, ReportInfo& r);

  bool checks_this_second(Millis now);

  // The oracle thread: brute force over the positions the client sent and the
  // availability it believed at `as_of` (a unit that changed since counts as it was
  // before; none changes twice within the few milliseconds this waits). The positions are
  // the latest sent: at most one 1 Hz step newer than at the send, within the slack below.
  std::pair<std::size_t, double> oracle(geo::LatLon at, std::int64_t as_of) const;

  // The report thread again.
  void on_oracle(const std::string& id, std::size_t best, double best_d);

  void on_report_message(const json::object& m, std::int64_t arrival_us);

  void on_first_assign(const std::string& incident);

  void resolve(const std::string& report_id, const std::string& incident);

  // Once both the first assign and the oracle's answer are in.
  void verdict(const ReportInfo& r);

  struct Suspect {
    std::string report, incident, got;
    double got_d;
    std::string best;
    double best_d;
    Millis sent_ms;
  };

  // After every thread has stopped.
  void judge_suspects();

  // ---- reporting ----------------------------------------------------------------------

  void progress();

  std::string fetch_metrics();

  int summary(double secs);

  Options opt_;
  std::unique_ptr<geo::RoadNetwork> roads_;  // --roads (thread-safe for to_target and route)
  std::mt19937_64 rng_;          // the fleet thread's
  std::mt19937_64 report_rng_;   // the report thread's
  asio::io_context ioc_, gw_ioc_, rep_ioc_, orc_ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> gw_work_{gw_ioc_.get_executor()},
      rep_work_{rep_ioc_.get_executor()}, orc_work_{orc_ioc_.get_executor()};
  asio::steady_timer timer_{ioc_};
  asio::steady_timer progress_timer_{ioc_};
  asio::steady_timer rep_timer_{rep_ioc_};
  asio::signal_set signals_{ioc_, SIGINT, SIGTERM};
  std::vector<std::pair<std::string, std::string>> servers_;  // several dispatchd: reconnect among them
  std::string host_, port_, gateway_token_, reporter_token_, console_token_;
  std::vector<std::pair<std::string, std::string>> insurer_tokens_;
  std::vector<std::shared_ptr<Conn>> gateways_, insurers_, consoles_, reporters_;

  // Immutable after construction (every thread reads them).
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<char> is_moto_;
  // Shared: written by the fleet thread, read by the oracle thread and the report thread:
  // the last position sent per unit (packed), availability | (steady µs it changed) << 1.
  std::unique_ptr<std::atomic<std::uint64_t>[]> sent_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> free_;
  // Shared under shared_mu_: the first moto assign per incident (stamped on the gateway
  // I/O thread), the latency histograms (the progress line reads them), error samples.
  std::mutex shared_mu_;
  std::unordered_map<std::string, std::pair<std::int64_t, std::string>> first_assign_;
  sim::Histogram accepted_lat_, assign_lat_;
  std::vector<std::string> error_samples_;
  std::atomic<std::uint64_t> positions_sent_{0}, reports_sent_{0}, accepted_count_{0}, assigns_{0}, errors_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> realtime_threads_{0};  // timing threads that got --realtime-priority
  bool shut_down_ = false;  // the fleet thread's: shutdown() has run

  // The fleet thread's.
  std::vector<Unit> units_;
  std::vector<std::vector<FloodFrame>> flood_;
  std::unordered_map<std::string, std::string> remote_plate_;
  std::deque<std::pair<Millis, std::string>> remote_queue_;
  std::deque<std::pair<Millis, std::pair<std::shared_ptr<Conn>, std::string>>> pay_queue_;
  std::chrono::steady_clock::time_point started_tp_, end_tp_, next_pos_tp_;
  std::chrono::microseconds period_{1000000};
  std::vector<Millis> slice_last_ms_;  // when each slice last moved (--slices)
  // The fleet thread's: units whose status is not available (crews() looks only at them;
  // a unit freed stays listed until crews() next passes it), and which units are listed.
  std::vector<std::uint32_t> busy_;
  std::vector<char> busy_listed_;
  std::size_t next_slice_ = 0;
  Millis started_ms_ = 0, last_pos_ms_ = 0, last_crews_ms_ = 0, drain_until_ = 0, flood_step_ts_ = 0;
  std::uint64_t flood_step_ = 0;
  std::uint64_t positions_held_ = 0, declines_ = 0, cancels_ = 0, cleared_ = 0, claims_ = 0;

  // The report thread's.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> trace_{nullptr, &std::fclose};  // --trace
  std::unordered_map<std::string, ReportInfo> reports_;
  std::set<std::string> accepted_;
  std::unordered_map<std::string, std::string> incident_report_;
  std::chrono::steady_clock::time_point next_report_tp_;
  sim::Histogram report_lag_;  // how late each report left against its Poisson time
  std::size_t next_reporter_ = 0;
  Millis check_second_ = 0;
  int checks_in_second_ = 0;
  std::uint64_t report_no_ = 0, checked_ = 0;
  std::vector<Suspect> suspects_;

  // After the run.
  std::uint64_t mismatches_ = 0;
  std::vector<std::string> mismatch_list_;
  std::string start_metrics_;
};

}  // namespace dispatch::sim_run
