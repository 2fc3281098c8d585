// The server's facade: wires the rooms together (listener -> HTTP session -> WebSocket
// session -> router on the engine thread -> store), starts the threads and stops them.

#include "net/server.hpp"

#include <pthread.h>
#include <fmt/format.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <future>
#include <iostream>
#include <stdexcept>

#include "net/http_session.hpp"
#include "net/listener.hpp"
#include "net/server_impl.hpp"

namespace dispatch::net {

using boost::system::error_code;
using tcp = asio::ip::tcp;

Millis wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void log_line(const std::string& s) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::cerr << s << '\n';
}

namespace {
// Raises the soft file-descriptor limit to the hard one and returns a connection cap that
// leaves room for the database, the console's files and the logs.
std::size_t connection_cap(std::size_t asked) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  const std::size_t fds = rl.rlim_cur == RLIM_INFINITY ? 65536 : static_cast<std::size_t>(rl.rlim_cur);
  const std::size_t room = fds > 256 ? fds - 128 : fds / 2;
  if (asked == 0) return std::min<std::size_t>(room, 10000);
  return std::min(asked, room);
}

}  // namespace

Server::Impl::Impl(ServerOptions o)
    : opt(std::move(o)),
      engine(opt.engine),
      // A flush's units at most: 32768 at the default 16 MiB bound, so that one flush
      // (about 220 bytes a unit) stays well below the bound it is held against.
      feed(ConsoleFeed::Limits{opt.console_soft_bytes, opt.console_hard_bytes, 48 * 1024,
                               std::clamp<std::size_t>(opt.console_hard_bytes / 512, 64, 32768)}) {
  if (!opt.trace_reports.empty()) {
    trace.reset(std::fopen(opt.trace_reports.c_str(), "w"));
    if (!trace) throw std::runtime_error("--trace-reports: cannot write " + opt.trace_reports);
  }
}

Server::Impl::~Impl() = default;

void Server::Impl::request_stop() {
  std::lock_guard lock(stop_mutex);
  stopped = true;
  stop_cv.notify_all();
}

void Server::Impl::start_signals() {
  if (!opt.handle_signals) return;
  signals.add(SIGINT);
  signals.add(SIGTERM);
  signals.async_wait([this](error_code ec, int sig) {
    if (ec) return;
    log_line(fmt::format("signal {}: stopping", sig));
    request_stop();
  });
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& m = *impl_;
  m.tokens = load_tokens(m.opt.tokens_path);
  ConsoleConfig console;
  console.tiles = m.opt.tiles;
  console.tiles_attribution = m.opt.tiles_attribution;
  m.console_config = render_console_config(console);
  if (!m.opt.insurers_path.empty()) {
    for (const auto& ins : load_insurers(m.opt.insurers_path)) {
      m.insurer_alias[ins.code] = ins.code;
      m.insurer_alias[ins.name] = ins.code;
      for (const auto& a : ins.aliases) m.insurer_alias[a] = ins.code;
    }
    log_line(fmt::format("insurers: {} names", m.insurer_alias.size()));
  }
  if (!m.opt.zones_path.empty() || !m.opt.places_path.empty()) {
    std::vector<std::string> warnings;
    m.geography = std::make_unique<MapGeography>(m.opt.zones_path, m.opt.zones_gcj02, m.opt.urban, m.opt.places_path,
                                                 warnings);
    for (const auto& w : warnings) log_line("map: " + w);
    log_line(fmt::format("map: {} districts, {} places", m.geography->zone_count(), m.geography->place_count()));
    m.engine.set_geography(m.geography.get());
  }
  // A station token must name a station of --places (contract v2 section 10): refused at
  // start, so that no sighting is ever logged at an unknown place.
  for (const auto& [token, who] : m.tokens.by_token)
    if (who->role == "station" && (!m.geography || !m.geography->station(who->station)))
      throw std::runtime_error("station token '" + who->name + "' names station '" + who->station +
                               "', which is not a place of kind station in --places");
  if (!m.opt.roads_path.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    m.roads = geo::RoadNetwork::load_osm(m.opt.roads_path);
    m.roads_geojson = std::make_shared<const std::string>(m.roads->to_geojson());
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    log_line(fmt::format("roads: {} nodes, {} edges, {} segments, {:.1f} MiB, loaded in {} ms from {}; ground "
                         "units by least road ETA among the {} nearest by line",
                         m.roads->node_count(), m.roads->edge_count(), m.roads->segment_count(),
                         static_cast<double>(m.roads->memory_bytes()) / (1 << 20), ms, m.opt.roads_path,
                         m.opt.engine.road_candidates));
    m.engine.set_travel_times(m.roads.get());
  }
  std::vector<engine::rec::Unit> fleet;
  if (!m.opt.fleet_path.empty()) fleet = load_fleet(m.opt.fleet_path);
  m.store = std::make_unique<data::Store>(m.opt.store);
  m.store->on_commit([&m](std::int64_t us, std::size_t) { m.metrics.commit_latency.observe_us(us); });
  if (m.store->shared()) {
    m.fleet = std::move(fleet);  // stored and restored once this server holds the lease
  } else {
    if (!fleet.empty()) m.store->add_units(fleet);
    m.engine.restore(m.store->load(), wall_now());
  }
  fleet.clear();
  fleet.shrink_to_fit();
#ifdef __GLIBC__
  // Loading (the fleet's JSON, the store's snapshot) leaves freed memory scattered through
  // the heap; give it back, so that what stays resident is the state itself.
  malloc_trim(0);
#endif
  for (std::string_view t : {"position", "status", "ack", "decline", "arrived", "cleared", "report", "assign", "cancel",
                             "liability", "close", "delivered", "escalate", "rescue", "claim_paid",
                             "sighting", "hazard", "clear_hazard"})
    m.metrics.messages_in[t];
  ConnectionSlots::Limits limits{connection_cap(m.opt.max_connections), m.opt.max_connections_per_peer};
  m.listener = std::make_unique<Listener>(
      m.ioc, limits, m.metrics, [&m](tcp::socket&& socket, std::shared_ptr<ConnectionSlots::Ticket> ticket) {
        std::make_shared<HttpSession>(m, boost::beast::tcp_stream(std::move(socket)), std::move(ticket))->run();
      });
}

Server::~Server() { stop(); }

std::string Server::start() {
  auto& m = *impl_;
  const tcp::endpoint ep(asio::ip::make_address(m.opt.host), m.opt.port);
  const auto bound = m.listener->listen(ep);
  log_line(fmt::format("connections: at most {} ({} from one address)", m.listener->slots().limits().max_total,
                       m.listener->slots().limits().max_per_peer));
  m.ioc_work.emplace(m.ioc.get_executor());
  m.engine_work.emplace(m.engine_ioc.get_executor());
  m.console_work.emplace(m.console_ioc.get_executor());
  m.listener->start();
  m.start_signals();
  asio::post(m.engine_ioc, [&m] {
    m.arm_tick();
    m.arm_flush();
  });
  // Named, so that `top -H` and perf tell them apart.
  m.threads.emplace_back([&m] {
    pthread_setname_np(pthread_self(), "engine");
    m.engine_ioc.run();
  });
  m.threads.emplace_back([&m] {
    pthread_setname_np(pthread_self(), "consoles");
    m.console_ioc.run();
  });
  for (int i = 0; i < std::max(1, m.opt.io_threads); ++i)
    m.threads.emplace_back([&m] {
      pthread_setname_np(pthread_self(), "io");
      m.ioc.run();
    });
  if (m.store->shared()) {
    m.lease = make_lease_loop(m);
    m.lease->start();
  }
  const std::string host =
      bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
  return host + ":" + std::to_string(bound.port());
}

void Server::wait() {
  auto& m = *impl_;
  std::unique_lock lock(m.stop_mutex);
  m.stop_cv.wait(lock, [&m] { return m.stopped; });
}

void Server::stop() {
  auto& m = *impl_;
  if (m.stopping.exchange(true)) return;
  m.request_stop();
  // Stop accepting; let the engine hand over what it has; commit what the disk takes
  // within the store's close deadline (what it does not take was never confirmed); let
  // released messages reach the sockets; then stop the threads.
  m.listener->stop();
  asio::post(m.ioc, [&m] {
    error_code ignored;
    m.signals.cancel(ignored);
  });
  // No session reads another frame; those already handed to the engine thread are applied
  // (their writes reach the store before it closes: a position a gateway had confirmed by
  // its ping is never lost to a SIGTERM).
  m.input_closed.store(true);
  if (!m.threads.empty()) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (m.frames_to_engine.load() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto drained = std::make_shared<std::promise<void>>();
  auto done = drained->get_future();
  asio::post(m.engine_ioc, [&m, drained] {
    m.tick_timer.cancel();
    m.flush_timer.cancel();
    m.apply();
    drained->set_value();
  });
  if (!m.threads.empty()) done.wait_for(std::chrono::seconds(2));
  // One deadline for the disk (the store's close_deadline): a failing disk cannot hold
  // SIGTERM up for longer.
  const bool all = m.store->close();
  if (!all) log_line("stop: the store could not commit everything in time; unconfirmed writes are given up");
  if (m.lease) m.lease->stop(true);  // a standby need not wait for the lease to lapse
  // What the last commits released is in the sessions' queues (the writer put it there);
  // let the engine thread finish what it was doing, then the sockets take it.
  if (!m.threads.empty()) {
    auto posted = std::make_shared<std::promise<void>>();
    auto f = posted->get_future();
    asio::post(m.engine_ioc, [posted] { posted->set_value(); });
    f.wait_for(std::chrono::seconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  m.ioc_work.reset();
  m.engine_work.reset();
  m.console_work.reset();
  m.console_ioc.stop();
  m.engine_ioc.stop();
  m.ioc.stop();
  for (auto& t : m.threads)
    if (t.joinable()) t.join();
  m.reads.join();
  m.store.reset();
}

}  // namespace dispatch::net
