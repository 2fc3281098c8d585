// dispatch-sim run: the Sim, its connections and its four threads (sim/sim_run.hpp).
#include "sim/sim_run.hpp"

namespace dispatch::sim_run {

Sim::Sim(Options o, std::vector<sim::SimUnit> fleet, json::value tokens)
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

int Sim::run() {
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

void Sim::timing_thread_priority(const char* name) {
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

}  // namespace dispatch::sim_run
