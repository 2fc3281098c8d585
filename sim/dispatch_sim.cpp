// dispatch-sim: drives a running dispatchd over real WebSockets, as a fleet of units
// behind gateways, a report source, insurers and a dispatcher, and measures it.
//
//   dispatch-sim make-fleet --units N --seed S --out fleet.json [--tokens-out tokens.json]
//   dispatch-sim run --url ws://HOST:PORT --tokens tokens.json --fleet fleet.json [...]
#include <CLI/CLI.hpp>
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
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <numbers>
#include <random>
#include <set>
#include <sstream>
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

namespace beast = boost::beast;
namespace asio = boost::asio;
namespace json = boost::json;
using namespace dispatch;
using sim::Conn;
using sim::histogram_delta;
using sim::histogram_quantile;
using sim::http_get;
using sim::metric;
using sim::mono_us;
using sim::parse_histograms;

namespace {

using Millis = std::int64_t;
Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
std::uint64_t pack(geo::LatLon p) {
  const auto la = static_cast<std::int32_t>(std::llround(p.lat * 1e6));
  const auto lo = static_cast<std::int32_t>(std::llround(p.lon * 1e6));
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(la)) << 32) | static_cast<std::uint32_t>(lo);
}
geo::LatLon unpack(std::uint64_t v) {
  return {static_cast<double>(static_cast<std::int32_t>(static_cast<std::uint32_t>(v >> 32))) / 1e6,
          static_cast<double>(static_cast<std::int32_t>(static_cast<std::uint32_t>(v))) / 1e6};
}

constexpr const char* insurers[] = {"PICC", "平安", "太平洋", "国寿财险", "大地", "阳光", "太平", "华安",
                                    "天安", "永安", "安盛天平", "中华联合"};
constexpr const char* plate_letters = "ABCDFGH";

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
  Sim(Options o, std::vector<sim::SimUnit> fleet, json::value tokens)
      : opt_(std::move(o)), rng_(opt_.seed), report_rng_(opt_.seed * 7919 + 1) {
    if (!opt_.roads.empty()) {
      roads_ = geo::RoadNetwork::load_osm(opt_.roads);
      std::cerr << "dispatch-sim: roads: " << roads_->node_count() << " nodes, " << roads_->edge_count() << " edges\n";
    }
    // ws://host:port, or several comma-separated (contract section 9: one active dispatchd,
    // the others standby): the one whose /healthz says ok, else the first.
    std::vector<std::pair<std::string, std::string>> candidates;
    for (std::string_view urls = opt_.url; !urls.empty();) {
      const auto comma = urls.find(',');
      std::string url(urls.substr(0, comma));
      urls = comma == std::string_view::npos ? std::string_view() : urls.substr(comma + 1);
      std::string rest = url.substr(url.find("//") == std::string::npos ? 0 : url.find("//") + 2);
      if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
      candidates.emplace_back(rest.substr(0, rest.rfind(':')), rest.substr(rest.rfind(':') + 1));
    }
    std::tie(host_, port_) = candidates.front();
    if (candidates.size() > 1) servers_ = candidates;
    if (candidates.size() > 1)
      for (const auto& [h, p] : candidates) {
        try {
          if (http_get(h, p, "/healthz").rfind("ok", 0) == 0) {
            host_ = h;
            port_ = p;
            break;
          }
        } catch (const std::exception&) {
        }
      }
    for (auto& t : tokens.at("tokens").as_array()) {
      const auto& o2 = t.as_object();
      const std::string role(o2.at("role").as_string()), token(o2.at("token").as_string());
      if (role == "gateway" && gateway_token_.empty()) {
        bool all = false;
        if (auto* us = o2.if_contains("units"))
          for (auto& u : us->as_array()) all |= u.as_string() == "*";
        if (all) gateway_token_ = token;
      } else if (role == "reporter" && reporter_token_.empty()) {
        reporter_token_ = token;
      } else if (role == "console" && console_token_.empty()) {
        console_token_ = token;
      } else if (role == "insurer") {
        insurer_tokens_.emplace_back(std::string(o2.at("insurer").as_string()), token);
      }
    }
    if (gateway_token_.empty()) throw std::runtime_error("the tokens file has no gateway token for \"*\"");
    if (reporter_token_.empty()) throw std::runtime_error("the tokens file has no reporter token");
    if (!opt_.trace_out.empty()) {
      trace_.reset(std::fopen(opt_.trace_out.c_str(), "w"));
      if (!trace_) throw std::runtime_error("--trace: cannot write " + opt_.trace_out);
    }
    if (opt_.consoles && console_token_.empty())
      throw std::runtime_error("the tokens file has no console token (or run with --consoles 0)");
    if (opt_.units && opt_.units < fleet.size()) fleet.resize(opt_.units);
    opt_.gateways = std::max<std::size_t>(1, opt_.gateways);
    opt_.reporters = std::max<std::size_t>(1, opt_.reporters);
    opt_.batch = std::max<std::size_t>(1, opt_.batch);
    std::uniform_real_distribution<double> deg(0, 360);
    sent_ = std::make_unique<std::atomic<std::uint64_t>[]>(fleet.size());
    busy_listed_.assign(fleet.size(), 0);
    free_ = std::make_unique<std::atomic<std::uint64_t>[]>(fleet.size());
    for (std::size_t i = 0; i < fleet.size(); ++i) {
      Unit u;
      u.def = std::move(fleet[i]);
      u.idx = i;
      u.pos = u.def.start;
      u.heading = deg(rng_);
      u.gateway = i % opt_.gateways;
      sent_[i].store(pack(u.pos), std::memory_order_relaxed);
      free_[i].store(1, std::memory_order_relaxed);  // available since ever
      is_moto_.push_back(u.def.kind == "moto");
      index_.emplace(u.def.id, units_.size());
      units_.push_back(std::move(u));
    }
  }

  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    start_metrics_ = fetch_metrics();
    for (std::size_t g = 0; g < opt_.gateways; ++g) {
      auto c = std::make_shared<Conn>(gw_ioc_, fmt::format("gateway {}", g));
      c->connect(host_, port_, "/ws/unit", gateway_token_);
      c->set_servers(servers_);
      c->start([this](const json::object& m, std::int64_t at) { on_gateway_message(m, at); });
      gateways_.push_back(c);
    }
    for (std::size_t r = 0; r < opt_.reporters; ++r) {
      auto c = std::make_shared<Conn>(rep_ioc_, fmt::format("reporter {}", r));
      c->connect(host_, port_, "/ws/report", reporter_token_);
      c->set_servers(servers_);
      c->start([this](const json::object& m, std::int64_t at) { on_report_message(m, at); });
      reporters_.push_back(c);
    }
    for (std::size_t i = 0; i < opt_.consoles; ++i) {
      // A console as the dispatch room has it open (web/app.js asks for batches too): it
      // takes the whole feed (snapshot, positions, incidents) off the socket; only frames
      // that may hold an error are parsed.
      auto c = std::make_shared<Conn>(ioc_, fmt::format("console {}", i));
      c->connect(host_, port_, opt_.console_batch ? "/ws/console?batch=1" : "/ws/console", console_token_);
      c->set_servers(servers_);
      c->start([this](const json::object& m, std::int64_t) { on_console_message(m); },
               [](std::string_view text) { return text.find("\"error\"") != std::string_view::npos; });
      consoles_.push_back(c);
    }
    for (auto& [name, token] : insurer_tokens_) {
      auto c = std::make_shared<Conn>(ioc_, "insurer " + name);
      c->connect(host_, port_, "/ws/insurer", token);
      c->set_servers(servers_);
      c->start([this, c](const json::object& m, std::int64_t) { on_insurer_message(c, m); });
      insurers_.push_back(c);
    }
    if (opt_.flood) prepare_flood();
    started_ms_ = now_ms();
    started_tp_ = std::chrono::steady_clock::now();
    end_tp_ = opt_.duration > 0 ? started_tp_ + std::chrono::microseconds(static_cast<std::int64_t>(opt_.duration * 1e6))
                                : std::chrono::steady_clock::time_point::max();
    period_ = std::chrono::microseconds(static_cast<std::int64_t>(1e6 / std::max(opt_.rate, 1e-3)));
    next_pos_tp_ = started_tp_;
    last_pos_ms_ = started_ms_;
    opt_.slices = std::clamp<std::size_t>(opt_.slices, 1, std::max<std::size_t>(1, units_.size()));
    slice_last_ms_.assign(opt_.slices, started_ms_);
    // Reports start once the server has had every unit's first position (a warm-up).
    next_report_tp_ = started_tp_ + std::chrono::milliseconds(opt_.demo ? 5000 : 2000);
    schedule_next_report();
    asio::post(rep_ioc_, [this] { report_tick(); });
    tick();
    signals_.async_wait([this](beast::error_code ec, int) {
      if (!ec) stopping_ = true;
    });
    progress();
    // Named, so that a profile (perf sched, top -H) tells the generator's threads apart.
    std::thread gw([this] {
      pthread_setname_np(pthread_self(), "sim-gateways");
      timing_thread_priority("sim-gateways");
      gw_ioc_.run();
    });
    std::thread rep([this] {
      pthread_setname_np(pthread_self(), "sim-reports");
      timing_thread_priority("sim-reports");
      rep_ioc_.run();
    });
    std::thread orc([this] {
      pthread_setname_np(pthread_self(), "sim-oracle");
      orc_ioc_.run();
    });
    pthread_setname_np(pthread_self(), "sim-fleet");
    ioc_.run();
    gw.join();
    orc.join();
    rep.join();
    // What the oracle and the gateway thread handed the report thread after it stopped,
    // the oracle's work that asked for, and its answers.
    rep_ioc_.restart();
    rep_ioc_.poll();
    orc_ioc_.restart();
    orc_ioc_.poll();
    rep_ioc_.restart();
    rep_ioc_.poll();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return summary(secs);
  }

 private:
  // --realtime-priority: the calling thread at SCHED_FIFO, or a line saying why not.
  void timing_thread_priority(const char* name) {
    if (opt_.realtime_priority <= 0) return;
    sched_param sp{};
    sp.sched_priority = opt_.realtime_priority;
    if (const int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); rc != 0) {
      std::lock_guard lock(shared_mu_);
      std::cerr << "dispatch-sim: " << name << " stays at normal priority (SCHED_FIFO " << opt_.realtime_priority
                << ": " << std::strerror(rc) << "; needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO)\n";
      return;
    }
    realtime_threads_.fetch_add(1, std::memory_order_relaxed);
  }

  // ---- the fleet thread ----------------------------------------------------------------

  void tick() {
    const auto tp = std::chrono::steady_clock::now();
    const Millis now = now_ms();
    const bool ending = stopping_ || tp >= end_tp_;
    if (ending) {
      if (!drain_until_) drain_until_ = now + 2000;  // wait for answers in flight
      if (now >= drain_until_ || pending_reports() == 0) return shutdown();
    } else {
      if (tp >= next_pos_tp_) {
        Millis ts = std::max(now, last_pos_ms_ + 1);  // strictly increasing per unit
        const std::size_t slice = next_slice_;
        next_slice_ = (next_slice_ + 1) % opt_.slices;
        const double dt = static_cast<double>(ts - slice_last_ms_[slice]) / 1000.0;
        const std::int64_t round_us = mono_us();
        if (opt_.flood)
          ts = flood_send(ts);
        else
          move_and_send(ts, dt, slice);
        slice_last_ms_[slice] = ts;
        // positions <this round's start> <its last frame handed to the gateways>
        if (trace_)
          std::fprintf(trace_.get(), "positions\t%lld\t%lld\n", static_cast<long long>(round_us),
                       static_cast<long long>(mono_us()));
        last_pos_ms_ = ts;
        next_pos_tp_ += opt_.flood ? period_ : period_ / static_cast<std::int64_t>(opt_.slices);
        if (next_pos_tp_ < tp) next_pos_tp_ = tp;  // behind: send as fast as possible, no debt
      }
      if (now - last_crews_ms_ >= 5) {
        crews(now);
        console_duties(now);
        last_crews_ms_ = now;
      }
    }
    auto wake = std::min(next_pos_tp_, tp + std::chrono::milliseconds(5));
    if (ending) wake = tp + std::chrono::milliseconds(5);
    timer_.expires_at(wake);
    timer_.async_wait([this](beast::error_code ec) {
      if (!ec) tick();
    });
  }

  void shutdown() {
    // A timer's handler may already be queued (expired) when it is cancelled, and then
    // runs as if it had fired: the progress line must not arm itself again after this,
    // or ioc_ never runs out of work (the harness's rare 60 s hang).
    shut_down_ = true;
    for (auto& c : gateways_) c->close();
    for (auto& c : consoles_) c->close();
    for (auto& c : insurers_) c->close();
    asio::post(rep_ioc_, [this] {
      rep_timer_.cancel();
      for (auto& c : reporters_) c->close();
    });
    gw_work_.reset();
    rep_work_.reset();
    orc_work_.reset();
    timer_.cancel();
    progress_timer_.cancel();
    beast::error_code ignored;
    signals_.cancel(ignored);
  }

  std::uint64_t pending_reports() const {
    return reports_sent_.load() - std::min(reports_sent_.load(), accepted_count_.load());
  }

  void set_status(Unit& u, Status s) {
    u.status = s;
    if (s != Status::available && !busy_listed_[u.idx]) {
      busy_listed_[u.idx] = 1;
      busy_.push_back(static_cast<std::uint32_t>(u.idx));
    }
    // Availability with the time it last changed, so that the oracle (a little later, on
    // its own thread) can tell what it was at a report's send time.
    const std::uint64_t avail = s == Status::available ? 1 : 0;
    if ((free_[u.idx].load(std::memory_order_relaxed) & 1) != avail)
      free_[u.idx].store((static_cast<std::uint64_t>(mono_us()) << 1) | avail, std::memory_order_relaxed);
  }

  // Gateways whose queue is over the bound skip this round (their units' positions are
  // held back, and "sent" stays what was really sent): the generator never builds an
  // unbounded backlog when the server cannot keep up.
  std::vector<char> blocked_gateways() {
    std::vector<char> blocked(gateways_.size());
    for (std::size_t g = 0; g < gateways_.size(); ++g)
      blocked[g] = gateways_[g]->queued_bytes() > (opt_.max_queue_mib << 20) || !gateways_[g]->open();
    return blocked;
  }

  // The units of one slice (all of them with one slice).
  void move_and_send(Millis now, double dt, std::size_t slice) {
    if (dt > 5) dt = 5;
    std::vector<std::string> frames(gateways_.size());
    std::vector<std::size_t> counts(gateways_.size());
    const auto blocked = blocked_gateways();
    std::uniform_real_distribution<double> turn(-20, 20), u01(0, 1);
    for (std::size_t i = slice; i < units_.size(); i += opt_.slices) {
      auto& u = units_[i];
      move(u, now, dt, turn, u01);
      if (blocked[u.gateway]) {
        ++positions_held_;
        continue;
      }
      auto& f = frames[u.gateway];
      f += f.empty() ? '[' : ',';
      fmt::format_to(std::back_inserter(f),
                     R"({{"type":"position","unit":"{}","lat":{:.6f},"lon":{:.6f},"ts":{},"speed_kmh":{:.1f},"heading":{:.0f}}})",
                     u.def.id, u.pos.lat, u.pos.lon, now, u.speed_mps * 3.6, u.heading);
      sent_[u.idx].store(pack(u.pos), std::memory_order_relaxed);
      positions_sent_.fetch_add(1, std::memory_order_relaxed);
      if (++counts[u.gateway] >= opt_.batch || f.size() > 56 * 1024) {  // frames stay under 64 KiB
        f += ']';
        gateways_[u.gateway]->send(std::move(f));
        f.clear();
        counts[u.gateway] = 0;
      }
    }
    for (std::size_t g = 0; g < frames.size(); ++g)
      if (!frames[g].empty()) {
        frames[g] += ']';
        gateways_[g]->send(std::move(frames[g]));
      }
  }

  // --flood: every unit's frames rendered once; each round only patches the `ts` digits and
  // the last decimal of lat and lon (a jitter within 0.3 m of the start, see flood_send),
  // then copies the frame out. So the generator costs a memcpy per position, not a JSON rendering, and the
  // intake benchmark measures the server. Units do not patrol; crews still work.
  struct FloodFrame {
    std::string text;
    std::vector<std::uint32_t> ts_at, lat_at, lon_at;  // offsets of the patched digits
  };

  void prepare_flood() {
    flood_.assign(gateways_.size(), {});
    std::vector<FloodFrame*> open(gateways_.size(), nullptr);
    std::vector<std::size_t> counts(gateways_.size());
    for (auto& u : units_) {
      auto& frames = flood_[u.gateway];
      if (!open[u.gateway] || counts[u.gateway] >= opt_.batch || open[u.gateway]->text.size() > 56 * 1024) {
        if (open[u.gateway]) open[u.gateway]->text += ']';
        frames.emplace_back();
        open[u.gateway] = &frames.back();
        counts[u.gateway] = 0;
      }
      auto& f = *open[u.gateway];
      f.text += f.text.size() ? ',' : '[';
      // Five decimals then the patched sixth, so that patching never carries.
      const double lat5 = std::floor(u.def.start.lat * 1e5) / 1e5, lon5 = std::floor(u.def.start.lon * 1e5) / 1e5;
      fmt::format_to(std::back_inserter(f.text), R"({{"type":"position","unit":"{}","lat":{:.5f})", u.def.id, lat5);
      f.lat_at.push_back(static_cast<std::uint32_t>(f.text.size()));
      fmt::format_to(std::back_inserter(f.text), R"(0,"lon":{:.5f})", lon5);
      f.lon_at.push_back(static_cast<std::uint32_t>(f.text.size()));
      f.text += R"(0,"ts":)";
      f.ts_at.push_back(static_cast<std::uint32_t>(f.text.size()));
      fmt::format_to(std::back_inserter(f.text), R"({},"speed_kmh":12.0,"heading":90}})", std::string(13, '0'));
      u.pos = {lat5, lon5};
      sent_[u.idx].store(pack(u.pos), std::memory_order_relaxed);
      ++counts[u.gateway];
    }
    for (auto* f : open)
      if (f) f->text += ']';
  }

  // Returns the ts it sent (moved on by a millisecond or two when the jitter steps).
  Millis flood_send(Millis ts) {
    // One jitter step (one coordinate, one unit of the sixth decimal: at most 0.11 m) about
    // every 10 ms, and never less than 2 ms after the previous fix: under 200 km/h at any
    // rate. A cycle of 8 steps.
    static constexpr char lat_wave[] = "01122110", lon_wave[] = "00112211";
    if (ts - flood_step_ts_ >= 10) {
      ts = std::max(ts, last_pos_ms_ + 2);
      flood_step_ts_ = ts;
      ++flood_step_;
    }
    const char dlat = lat_wave[flood_step_ % 8], dlon = lon_wave[flood_step_ % 8];
    const std::string tss = fmt::format("{:013d}", ts);
    const auto blocked = blocked_gateways();
    for (std::size_t g = 0; g < flood_.size(); ++g) {
      for (auto& f : flood_[g]) {
        if (blocked[g]) {
          positions_held_ += f.ts_at.size();
          continue;
        }
        for (auto at : f.ts_at) std::memcpy(f.text.data() + at, tss.data(), 13);
        for (auto at : f.lat_at) f.text[at] = dlat;
        for (auto at : f.lon_at) f.text[at] = dlon;
        gateways_[g]->send(f.text);
        positions_sent_.fetch_add(f.ts_at.size(), std::memory_order_relaxed);
      }
    }
    return ts;
  }

  template <class Turn, class U01>
  void move(Unit& u, Millis now, double dt, Turn& turn, U01& u01) {
    const bool heli = u.def.kind == "heli";
    if (u.status == Status::en_route || (u.status == Status::assigned && !opt_.demo)) {
      // Straight to the target at working speed.
      u.speed_mps = heli ? 200 / 3.6 : (u.def.kind == "car" ? 45 / 3.6 : 40 / 3.6);
      if (!u.path.empty()) {  // along the roads: point after point of the route
        double left = u.speed_mps * dt;
        while (left > 0 && u.path_i < u.path.size()) {
          const geo::LatLon next = u.path[u.path_i];
          const double d = geo::distance_m(u.pos, next);
          if (d > 0.01)
            u.heading = std::fmod(geo::rad2deg(std::atan2(next.lon - u.pos.lon, next.lat - u.pos.lat)) + 360, 360);
          if (d <= left) {
            u.pos = next;
            left -= d;
            ++u.path_i;
          } else {
            u.pos.lat += (next.lat - u.pos.lat) * left / d;
            u.pos.lon += (next.lon - u.pos.lon) * left / d;
            left = 0;
          }
        }
        return;
      }
      const double d = geo::distance_m(u.pos, u.target);
      const double step = std::min(d, u.speed_mps * dt);
      if (d > 1) {
        const double f = step / d;
        u.pos.lat += (u.target.lat - u.pos.lat) * f;
        u.pos.lon += (u.target.lon - u.pos.lon) * f;
        u.heading = std::fmod(geo::rad2deg(std::atan2(u.target.lon - u.pos.lon, u.target.lat - u.pos.lat)) + 360, 360);
      }
      return;
    }
    if (heli || u.status != Status::available) {
      u.speed_mps = 0;
      return;
    }
    // Patrol: drift, stop now and then, stay near home.
    if (now < u.stop_until) {
      u.speed_mps = 0;
      return;
    }
    if (u01(rng_) < 0.01 * dt) {
      u.stop_until = now + static_cast<Millis>(10000 + u01(rng_) * 50000);
      u.speed_mps = 0;
      return;
    }
    u.speed_mps = (u.def.kind == "car" ? 35 : 28) / 3.6 * (0.6 + 0.8 * u01(rng_));
    u.heading = std::fmod(u.heading + turn(rng_) * dt + 360, 360);
    if (geo::distance_m(u.pos, u.def.start) > 4000)  // head home
      u.heading = std::fmod(geo::rad2deg(std::atan2(u.def.start.lon - u.pos.lon, u.def.start.lat - u.pos.lat)) + 360, 360);
    const double d = u.speed_mps * dt;
    u.pos.lat += d * std::cos(geo::deg2rad(u.heading)) / 111195.0;
    u.pos.lon += d * std::sin(geo::deg2rad(u.heading)) / (111195.0 * std::cos(geo::deg2rad(u.pos.lat)));
  }

  // Crews: ack or decline after a delay, arrive, clear.
  // Every 5 ms: the crews of the units that are not available (not every unit: at 100k
  // units that scan alone kept a core busy, on the cores the server is measured on).
  void crews(Millis now) {
    std::uniform_real_distribution<double> u01(0, 1);
    for (std::size_t k = 0; k < busy_.size();) {
      Unit& u = units_[busy_[k]];
      if (u.status == Status::available) {  // freed since the last round: off the list
        busy_listed_[u.idx] = 0;
        busy_[k] = busy_.back();
        busy_.pop_back();
        continue;
      }
      ++k;
      if (now < u.next_action) continue;
      auto& gw = *gateways_[u.gateway];
      if (u.status == Status::assigned) {
        if (u.will_decline) {
          gw.send(fmt::format(R"({{"type":"decline","assignment":"{}","reason":"sim: busy"}})", u.assignment));
          ++declines_;
          set_status(u, Status::available);
          u.assignment.clear();
          continue;
        }
        gw.send(fmt::format(R"({{"type":"ack","assignment":"{}"}})", u.assignment));
        set_status(u, Status::en_route);
        u.next_action = now + 500;
      } else if (u.status == Status::en_route) {
        if (geo::distance_m(u.pos, u.target) < 30 || (!opt_.demo && now - u.last_assign > 3000)) {
          gw.send(fmt::format(R"({{"type":"arrived","assignment":"{}"}})", u.assignment));
          set_status(u, Status::on_scene);
          u.next_action = now + static_cast<Millis>(opt_.demo ? 20000 + u01(rng_) * 60000 : 500 + u01(rng_) * 1500);
        } else {
          u.next_action = now + 500;
        }
      } else if (u.status == Status::on_scene) {
        gw.send(fmt::format(R"({{"type":"cleared","assignment":"{}"}})", u.assignment));
        set_status(u, Status::available);
        u.assignment.clear();
        u.incident.clear();
        ++cleared_;
      }
    }
  }

  void console_duties(Millis now) {
    // The dispatcher settles remote incidents: liability after a little while.
    while (!remote_queue_.empty() && remote_queue_.front().first <= now) {
      const auto [when, incident] = remote_queue_.front();
      remote_queue_.pop_front();
      auto it = remote_plate_.find(incident);
      if (!consoles_.empty() && it != remote_plate_.end())
        consoles_.front()->send(
            fmt::format(R"({{"type":"liability","incident":"{}","at_fault":"{}","note":"sim"}})", incident, it->second));
    }
    while (!pay_queue_.empty() && pay_queue_.front().first <= now) {
      auto [when, what] = pay_queue_.front();
      pay_queue_.pop_front();
      if (what.first->open())
        what.first->send(fmt::format(R"({{"type":"claim_paid","claim":"{}","amount":{}}})", what.second, 1000 + claims_ % 5000));
    }
  }

  // ---- the gateway I/O thread ----------------------------------------------------------

  void on_gateway_message(const json::object& m, std::int64_t arrival_us) {
    if (const auto* t = m.if_contains("type"); t && t->is_string() && t->as_string() == "assign") {
      // index_ and the units' kinds never change after construction: safe to read here.
      if (auto* un = m.if_contains("unit"); un && un->is_string()) {
        auto it = index_.find(std::string(un->as_string()));
        const auto* inc = m.if_contains("incident");
        if (it != index_.end() && is_moto_[it->second] && inc && inc->is_string()) {
          std::string incident(inc->as_string());
          bool first;
          {
            std::lock_guard lock(shared_mu_);
            first = first_assign_.emplace(incident, std::make_pair(arrival_us, std::string(un->as_string()))).second;
          }
          if (first) asio::post(rep_ioc_, [this, incident = std::move(incident)] { on_first_assign(incident); });
        }
      }
    }
    asio::post(ioc_, [this, m = json::object(m)] { on_unit_message(m); });
  }

  // ---- the fleet thread, continued: unit messages ---------------------------------------

  void on_unit_message(const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    auto unit_it = m.if_contains("unit") ? index_.find(std::string(m.at("unit").as_string())) : index_.end();
    if (unit_it == index_.end()) return;
    Unit& u = units_[unit_it->second];
    const Millis now = now_ms();
    std::uniform_real_distribution<double> u01(0, 1);
    if (type == "assign") {
      assigns_.fetch_add(1, std::memory_order_relaxed);
      const std::string incident(m.at("incident").as_string());
      u.last_assign = now;
      u.assign_times.push_back(now);
      if (u.status != Status::available) {
        // The server sent a unit the simulator still thinks busy: report it.
        ++errors_;
        std::lock_guard lock(shared_mu_);
        if (error_samples_.size() < 10)
          error_samples_.push_back(fmt::format("assign {} to {} while it is busy with {}", incident, u.def.id, u.assignment));
      }
      set_status(u, Status::assigned);
      u.assignment = std::string(m.at("assignment").as_string());
      u.incident = incident;
      u.target = {m.at("lat").to_number<double>(), m.at("lon").to_number<double>()};
      u.path.clear();
      u.path_i = 0;
      if (roads_ && u.def.kind != "heli") {
        auto r = roads_->route(u.pos, u.target);
        if (r.found) u.path = std::move(r.points);
      }
      u.will_decline = u.def.kind == "moto" && u01(rng_) < 0.05;
      u.next_action = now + static_cast<Millis>(opt_.demo ? 2000 + u01(rng_) * 6000 : 50 + u01(rng_) * 300);
    } else if (type == "cancel") {
      u.last_assign = now;
      if (u.assignment == std::string(m.at("assignment").as_string())) {
        set_status(u, Status::available);
        u.assignment.clear();
        u.incident.clear();
      }
      ++cancels_;
    }
  }

  void on_console_message(const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") on_error(m);
  }

  void on_insurer_message(const std::shared_ptr<Conn>& c, const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    if (type != "claim") return;
    ++claims_;
    std::uniform_real_distribution<double> u01(0, 1);
    pay_queue_.emplace_back(now_ms() + static_cast<Millis>(opt_.demo ? 30000 + u01(rng_) * 240000 : 100 + u01(rng_) * 400),
                            std::make_pair(c, std::string(m.at("claim").as_string())));
    std::sort(pay_queue_.begin(), pay_queue_.end(), [](auto& a, auto& b) { return a.first < b.first; });
  }

  // Any thread.
  void on_error(const json::object& m) {
    ++errors_;
    std::lock_guard lock(shared_mu_);
    if (error_samples_.size() < 10) error_samples_.push_back(json::serialize(m));
  }

  // ---- the report thread ----------------------------------------------------------------

  void schedule_next_report() {
    std::exponential_distribution<double> gap(opt_.reports_per_s > 0 ? opt_.reports_per_s : 1e-9);
    next_report_tp_ += std::chrono::microseconds(static_cast<std::int64_t>(std::min(gap(report_rng_), 1e6) * 1e6));
  }

  void report_tick() {
    if (opt_.reports_per_s <= 0 || units_.empty()) return;
    const auto tp = std::chrono::steady_clock::now();
    if (stopping_ || tp >= end_tp_) return;
    if (tp >= next_report_tp_) {
      // Every report due now goes in one frame (normally one: the timer wakes at its time).
      std::vector<ReportInfo> batch;
      std::string frame;
      const Millis now = now_ms();
      while (next_report_tp_ <= tp) {
        report_lag_.add(std::chrono::duration_cast<std::chrono::microseconds>(tp - next_report_tp_).count());
        frame += frame.empty() ? '[' : ',';
        frame += make_report(now, batch.emplace_back());
        schedule_next_report();
      }
      frame += ']';
      const std::int64_t sent_us = mono_us();
      reporters_[next_reporter_++ % reporters_.size()]->send(std::move(frame));
      reports_sent_.fetch_add(batch.size(), std::memory_order_relaxed);
      // The oracle runs on its own thread (its brute force over 100k units takes
      // milliseconds, which would delay the next reports), as of the send time, and only
      // once the report's first assign is in (resolve): run at the send, it took a core
      // away from the server for the very report being timed (0.3 ms at 10k units, 3-5 ms
      // at 100k), on the two cores both share.
      for (auto& r : batch) {
        r.sent_us = sent_us;
        if (!r.remote && checks_this_second(now)) r.oracle_pending = r.oracle_wanted = true;
        std::string id = r.id;
        reports_.emplace(std::move(id), std::move(r));
      }
    }
    rep_timer_.expires_at(next_report_tp_);
    rep_timer_.async_wait([this](beast::error_code ec) {
      if (!ec) report_tick();
    });
  }

  std::string make_report(Millis now, ReportInfo& r) {
    std::uniform_real_distribution<double> u01(0, 1);
    r.id = fmt::format("sim-{}-{}", opt_.seed, ++report_no_);
    const double s = u01(report_rng_);
    r.severity = s < 0.80 ? "minor" : s < 0.97 ? "injury" : "critical";
    r.remote = r.severity == "minor" && u01(report_rng_) < 0.6;
    // Near a random unit (accidents happen where the patrols are), up to 3 km away.
    const auto near_i = static_cast<std::size_t>(u01(report_rng_) * static_cast<double>(units_.size())) % units_.size();
    const geo::LatLon near = unpack(sent_[near_i].load(std::memory_order_relaxed));
    const double ang = u01(report_rng_) * 2 * std::numbers::pi, dist = u01(report_rng_) * 3000;
    r.at = {near.lat + dist * std::cos(ang) / 111195.0,
            near.lon + dist * std::sin(ang) / (111195.0 * std::cos(geo::deg2rad(near.lat)))};
    const int nveh = r.severity == "critical" ? 1 : 1 + static_cast<int>(u01(report_rng_) * 2);
    for (int i = 0; i < nveh; ++i) {
      std::string plate = fmt::format("渝{}{}", plate_letters[static_cast<int>(u01(report_rng_) * 7)],
                                      10000 + static_cast<int>(u01(report_rng_) * 89999));
      r.vehicles.emplace_back(plate, insurers[static_cast<int>(u01(report_rng_) * std::size(insurers)) % std::size(insurers)]);
    }
    r.sent_ms = now;
    json::array veh;
    for (auto& [p, i] : r.vehicles) veh.push_back(json::object{{"plate", p}, {"insurer", i}});
    json::object o{{"type", "report"}, {"id", r.id}, {"lat", r.at.lat}, {"lon", r.at.lon}, {"ts", now},
                   {"severity", r.severity}, {"injured", r.severity == "minor" ? 0 : 1},
                   {"drivable", r.remote}, {"parties_agree", r.remote}, {"vehicles", std::move(veh)}};
    return json::serialize(o);
  }

  bool checks_this_second(Millis now) {
    if (now / 1000 != check_second_) {
      check_second_ = now / 1000;
      checks_in_second_ = 0;
    }
    return ++checks_in_second_ <= 50;  // the oracle's brute force is bounded in cost
  }

  // The oracle thread: brute force over the positions the client sent and the
  // availability it believed at `as_of` (a unit that changed since counts as it was
  // before; none changes twice within the few milliseconds this waits). The positions are
  // the latest sent: at most one 1 Hz step newer than at the send, within the slack below.
  std::pair<std::size_t, double> oracle(geo::LatLon at, std::int64_t as_of) const {
    double best_d = std::numeric_limits<double>::infinity();
    std::size_t best = units_.size();
    if (roads_) {  // with --roads, "best" is least road ETA (seconds), over every free unit
      std::vector<std::size_t> idx;
      std::vector<geo::LatLon> from;
      for (std::size_t i = 0; i < units_.size(); ++i) {
        if (!is_moto_[i]) continue;
        const std::uint64_t f = free_[i].load(std::memory_order_relaxed);
        const bool changed_since = static_cast<std::int64_t>(f >> 1) > as_of;
        if (((f & 1) != 0) == changed_since) continue;
        idx.push_back(i);
        from.push_back(unpack(sent_[i].load(std::memory_order_relaxed)));
      }
      std::vector<double> secs(from.size());
      roads_->to_target(at, from, secs);
      for (std::size_t k = 0; k < secs.size(); ++k)
        if (secs[k] < best_d) best_d = secs[k], best = idx[k];
      return {best, best_d};
    }
    for (std::size_t i = 0; i < units_.size(); ++i) {
      if (!is_moto_[i]) continue;
      const std::uint64_t f = free_[i].load(std::memory_order_relaxed);
      const bool changed_since = static_cast<std::int64_t>(f >> 1) > as_of;
      if (((f & 1) != 0) == changed_since) continue;  // not available at as_of
      const double d = geo::distance_m(unpack(sent_[i].load(std::memory_order_relaxed)), at);
      if (d < best_d) {
        best_d = d;
        best = i;
      }
    }
    return {best, best_d};
  }

  // The report thread again.
  void on_oracle(const std::string& id, std::size_t best, double best_d) {
    auto it = reports_.find(id);
    if (it == reports_.end()) return;
    ReportInfo& r = it->second;
    r.oracle_pending = false;
    if (best < units_.size()) {
      r.checked = true;
      r.best = units_[best].def.id;  // ids never change: safe to read
      r.best_d = best_d;
    }
    verdict(r);
  }

  void on_report_message(const json::object& m, std::int64_t arrival_us) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    if (type != "accepted") return;
    const std::string id(m.at("id").as_string()), incident(m.at("incident").as_string());
    auto it = reports_.find(id);
    if (it == reports_.end() || !accepted_.insert(id).second) return;
    accepted_count_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(shared_mu_);
      accepted_lat_.add(arrival_us - it->second.sent_us);
    }
    incident_report_[incident] = id;
    it->second.incident = incident;
    if (it->second.remote) {
      std::uniform_real_distribution<double> u01(0, 1);
      const Millis when = now_ms() + static_cast<Millis>(opt_.demo ? 10000 + u01(report_rng_) * 60000 : 200 + u01(report_rng_) * 800);
      asio::post(ioc_, [this, incident, plate = it->second.vehicles.front().first, when] {
        remote_plate_[incident] = plate;
        remote_queue_.emplace_back(when, incident);
      });
    }
    bool assigned;
    {
      std::lock_guard lock(shared_mu_);
      assigned = first_assign_.count(incident) != 0;
    }
    if (assigned) resolve(id, incident);
  }

  void on_first_assign(const std::string& incident) {
    if (auto it = incident_report_.find(incident); it != incident_report_.end()) resolve(it->second, incident);
  }

  void resolve(const std::string& report_id, const std::string& incident) {
    auto rit = reports_.find(report_id);
    if (rit == reports_.end() || rit->second.resolved) return;
    ReportInfo& r = rit->second;
    r.resolved = true;
    std::int64_t at_us;
    std::string unit;
    {
      std::lock_guard lock(shared_mu_);
      const auto& fa = first_assign_.at(incident);
      at_us = fa.first;
      unit = fa.second;
      assign_lat_.add(at_us - r.sent_us);
    }
    // report <id> <incident> <sent> <first assign arrived>
    if (trace_)
      std::fprintf(trace_.get(), "report\t%s\t%s\t%lld\t%lld\n", report_id.c_str(), incident.c_str(),
                   static_cast<long long>(r.sent_us), static_cast<long long>(at_us));
    r.assigned = unit;
    if (r.oracle_wanted) {
      r.oracle_wanted = false;
      asio::post(orc_ioc_, [this, id = r.id, at = r.at, sent_us = r.sent_us] {
        auto [best, best_d] = oracle(at, sent_us);
        asio::post(rep_ioc_, [this, id, best, best_d] { on_oracle(id, best, best_d); });
      });
    }
    verdict(r);
  }

  // Once both the first assign and the oracle's answer are in.
  void verdict(const ReportInfo& r) {
    if (!r.resolved || r.oracle_pending || !r.checked) return;
    ++checked_;
    if (r.assigned == r.best) return;
    const geo::LatLon got_pos = unpack(sent_[index_.at(r.assigned)].load(std::memory_order_relaxed));
    double got_d = geo::distance_m(got_pos, r.at);
    if (roads_) roads_->to_target(r.at, std::span(&got_pos, 1), std::span(&got_d, 1));  // seconds by road
    // Positions moved while the report was in flight: a little slack (metres, or seconds by road).
    if (got_d <= r.best_d + (roads_ ? 15 : 60)) return;
    // Perhaps the oracle's favourite was busy on the server's side: assigned elsewhere
    // just before, or by an assign still on its way. Judged at the end of the run.
    suspects_.push_back(Suspect{r.id, r.incident, r.assigned, got_d, r.best, r.best_d, r.sent_ms});
  }

  struct Suspect {
    std::string report, incident, got;
    double got_d;
    std::string best;
    double best_d;
    Millis sent_ms;
  };

  // After every thread has stopped.
  void judge_suspects() {
    for (const auto& s : suspects_) {
      const Unit& best = units_[index_.at(s.best)];
      const bool busy = std::any_of(best.assign_times.begin(), best.assign_times.end(), [&](Millis t) {
        return t >= s.sent_ms - 5000 && t <= s.sent_ms + 10000;
      });
      if (busy) continue;
      ++mismatches_;
      if (mismatch_list_.size() < 20)
        mismatch_list_.push_back(fmt::format("{} ({}): got {} at {:.0f} {}, nearest {} at {:.0f}", s.report, s.incident,
                                             s.got, s.got_d, roads_ ? "s by road" : "m", s.best, s.best_d));
    }
  }

  // ---- reporting ----------------------------------------------------------------------

  void progress() {
    progress_timer_.expires_after(std::chrono::seconds(1));
    progress_timer_.async_wait([this](beast::error_code ec) {
      if (ec || shut_down_) return;
      const auto secs = static_cast<double>(now_ms() - started_ms_) / 1000.0;
      double p99;
      {
        std::lock_guard lock(shared_mu_);
        p99 = static_cast<double>(assign_lat_.percentile(0.99)) / 1000.0;
      }
      const auto sent = positions_sent_.load();
      std::cerr << fmt::format(
          "\r[{:6.1f}s] positions {} ({:.0f}/s)  reports {}  accepted {}  assigns {}  assign p99 {:.1f} ms  mismatches {}  errors {}   ",
          secs, sent, static_cast<double>(sent) / std::max(secs, 0.001), reports_sent_.load(), accepted_count_.load(),
          assigns_.load(), p99, mismatches_, errors_.load());
      if (opt_.demo) std::cerr << '\n';
      progress();
    });
  }

  std::string fetch_metrics() {
    try {
      return http_get(host_, port_, "/metrics");
    } catch (const std::exception&) {
      return {};
    }
  }

  int summary(double secs) {
    std::cerr << "\n";
    judge_suspects();
    const std::string end_metrics = fetch_metrics();
    auto delta = [&](const char* name) { return metric(end_metrics, name) - metric(start_metrics_, name); };
    const double taken = delta("dispatch_positions_accepted_total");
    const double ooo = delta("dispatch_positions_out_of_order_total"), jumps = delta("dispatch_positions_gps_jump_total");
    const double active = std::max(0.001, std::min(secs, opt_.duration > 0 ? opt_.duration : secs));
    auto ms = [](std::int64_t us) { return static_cast<double>(us) / 1000.0; };
    std::uint64_t console_bytes = 0;
    std::uint64_t console_frames = 0;
    for (auto& c : consoles_) {
      console_bytes += c->bytes_read();
      console_frames += c->frames_read();
    }
    json::object s{{"duration_s", active},
                   {"units", units_.size()},
                   {"gateways", gateways_.size()},
                   {"reporters", reporters_.size()},
                   {"consoles", consoles_.size()},
                   {"console_bytes", console_bytes},
                   {"console_frames", console_frames},
                   {"console_batch", opt_.console_batch},
                   {"slices", opt_.slices},
                   {"flood", opt_.flood},
                   {"realtime_priority", realtime_threads_.load() == 2 ? opt_.realtime_priority : 0},
                   {"positions_sent", positions_sent_.load()},
                   {"positions_held", positions_held_},
                   {"positions_taken", taken},
                   {"positions_per_s", taken / active},
                   {"positions_out_of_order", ooo},
                   {"positions_gps_jump", jumps},
                   {"positions_applied_per_s", (taken - ooo - jumps) / active},
                   {"reports", reports_sent_.load()},
                   {"reports_per_s", static_cast<double>(reports_sent_.load()) / active},
                   {"accepted", accepted_.size()},
                   {"assigns", assigns_.load()},
                   {"declines", declines_},
                   {"cancels", cancels_},
                   {"cleared", cleared_},
                   {"claims", claims_},
                   {"report_lag_p99_ms", ms(report_lag_.percentile(0.99))},
                   {"report_lag_max_ms", ms(report_lag_.max())},
                   {"accepted_p50_ms", ms(accepted_lat_.percentile(0.5))},
                   {"accepted_p90_ms", ms(accepted_lat_.percentile(0.9))},
                   {"accepted_p99_ms", ms(accepted_lat_.percentile(0.99))},
                   {"accepted_max_ms", ms(accepted_lat_.max())},
                   {"assign_count", assign_lat_.count()},
                   {"assign_p50_ms", ms(assign_lat_.percentile(0.5))},
                   {"assign_p90_ms", ms(assign_lat_.percentile(0.9))},
                   {"assign_p99_ms", ms(assign_lat_.percentile(0.99))},
                   {"assign_max_ms", ms(assign_lat_.max())},
                   {"checked", checked_},
                   {"mismatches", mismatches_},
                   {"errors", errors_.load()}};
    // The server's own histograms over the run, so that a tail can be attributed to a stage.
    const auto h_end = parse_histograms(end_metrics), h_start = parse_histograms(start_metrics_);
    const std::pair<const char*, const char*> families[] = {
        {"stage_parse", "dispatch_stage_parse_seconds"},
        {"stage_engine_wait", "dispatch_stage_engine_wait_seconds"},
        {"stage_engine", "dispatch_stage_engine_seconds"},
        {"stage_commit_wait", "dispatch_stage_commit_wait_seconds"},
        {"stage_send", "dispatch_stage_send_seconds"},
        {"server_assign", "dispatch_report_to_assign_seconds"},
        {"store_commit", "dispatch_store_commit_seconds"}};
    for (const auto& [field, name] : families) {
      auto it = h_end.find(name);
      if (it == h_end.end()) continue;
      auto st = h_start.find(name);
      const auto h = histogram_delta(it->second, st == h_start.end() ? nullptr : &st->second);
      s[fmt::format("{}_count", field)] = h.count;
      s[fmt::format("{}_mean_ms", field)] = h.count > 0 ? h.sum / h.count * 1000.0 : 0.0;
      s[fmt::format("{}_p50_ms", field)] = histogram_quantile(h, 0.5) * 1000.0;
      s[fmt::format("{}_p99_ms", field)] = histogram_quantile(h, 0.99) * 1000.0;
    }
    json::array ml, el;
    for (auto& m : mismatch_list_) ml.push_back(json::string(m));
    for (auto& e : error_samples_) el.push_back(json::string(e));
    s["mismatch_list"] = std::move(ml);
    s["error_samples"] = std::move(el);
    const std::string text = json::serialize(s);
    std::cout << text << std::endl;
    if (!opt_.json_out.empty()) std::ofstream(opt_.json_out) << text << '\n';
    return 0;
  }

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

}  // namespace

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
