// The server's insides, shared by the net rooms that need Asio and Beast (listener, HTTP
// and WebSocket sessions, REST, the router). Nothing outside net/*.cpp includes this.
//
// Threads: I/O threads run the sessions; one engine thread owns the engine, the routing
// tables and the release gate; the store's writer thread commits. Sessions post parsed
// frames to the engine thread; it posts rendered text back to each session's strand.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "data/store.hpp"
#include "engine/engine.hpp"
#include "geo/roads.hpp"
#include "net/config.hpp"
#include "net/console_feed.hpp"
#include "net/error_catalog.hpp"
#include "net/geography.hpp"
#include "net/lease.hpp"
#include "net/metrics.hpp"
#include "net/protocol.hpp"
#include "net/release_gate.hpp"
#include "net/role.hpp"
#include "net/server.hpp"

namespace dispatch::net {

namespace asio = boost::asio;
using engine::ConnId;
using engine::Millis;
using Text = std::shared_ptr<const std::string>;

Millis wall_now();
std::int64_t mono_us();
void log_line(const std::string& s);

// A connection the engine thread can send to. deliver() and drop() are thread-safe.
struct Peer : std::enable_shared_from_this<Peer> {
  ConnId id = 0;
  Role role = Role::console;
  std::shared_ptr<const engine::Principal> who;
  std::atomic<std::size_t> queued_bytes{0};
  // Of queued_bytes: a console's snapshot not yet written. Not held against the console's
  // bounds (the snapshot of 100k units is about 20 MB, above the 16 MiB at which a console
  // that does not read is dropped); what piles up behind it is.
  std::atomic<std::size_t> snapshot_bytes{0};
  bool batch_frames = false;  // a console that asked for positions as arrays
  virtual ~Peer() = default;
  // `payload` is the event behind the text, for HTTP answers (null for console changes).
  virtual void deliver(Text msg, const engine::Payload* payload) = 0;
  // A console's snapshot (its first message).
  virtual void deliver_snapshot(Text msg) { deliver(std::move(msg), nullptr); }
  virtual void deliver_many(std::vector<Text> msgs) {
    for (auto& m : msgs) deliver(std::move(m), nullptr);
  }
  // A console flush: each span of the run is one message, in order.
  virtual void deliver_run(std::shared_ptr<const FrameRun> run) {
    for (std::size_t i = 0; i < run->size(); ++i) deliver(std::make_shared<const std::string>(run->at(i)), nullptr);
  }
  // A console with a position flush planned and not yet handed to deliver_run (set on
  // the engine thread, cleared when that flush is done with, on any thread).
  std::atomic<bool> flush_in_flight{false};
  virtual void drop(std::string reason) { (void)reason; }
  // The engine thread has taken a frame this peer sent (so it may read another).
  virtual void frame_taken() {}
};

struct Metrics {
  std::array<Counter, role_count> connections_by_role{};
  std::array<Counter, role_count> open_by_role{};
  std::unordered_map<std::string_view, Counter> messages_in;
  std::array<Counter, error_count> errors{};
  Counter frames_in{0}, positions_in{0}, consoles_dropped{0}, rate_limited{0};
  Counter http_requests{0}, http_bad_requests{0}, connections_refused{0};
  Counter slow_closed{0}, accept_backoffs{0}, commands_refused{0}, frames_dropped{0};
  Histogram assign_latency, commit_latency;
  // Stages of a message's way, so that a p99 can be attributed (docs/performance.md).
  Histogram stage_parse, stage_engine_wait, stage_engine, stage_commit_wait, stage_send;
  void error(engine::ErrorCode c) { inc(errors[index(c)]); }
};

class Listener;

// A console flush, planned on the engine thread and rendered on the console strand: the
// units' state of that moment (UnitView), and which console takes which of them.
struct ConsoleFlush {
  ConsoleFlush() = default;
  ConsoleFlush(const ConsoleFlush&) = delete;
  ConsoleFlush& operator=(const ConsoleFlush&) = delete;
  // Delivered or given up (a standby, a stop): its consoles may have the next one planned.
  ~ConsoleFlush() {
    for (auto& s : sends)
      if (auto p = s.console.lock()) p->flush_in_flight.store(false, std::memory_order_release);
  }
  std::vector<UnitView> views;  // one per unit to send, in plan order
  struct Send {
    std::weak_ptr<Peer> console;
    bool batch;
    std::vector<std::uint32_t> index;  // into views
  };
  std::vector<Send> sends;
  std::size_t batch_frame_bytes = 48 * 1024;
};

// A rendered message and where it goes (a target the engine named), or a console flush.
struct Outgoing {
  std::shared_ptr<ConsoleFlush> flush;
  engine::Target to;
  Text text;
  std::optional<engine::Payload> payload;  // for conn targets (HTTP answers, metrics)
  std::int64_t made_us = 0;                // when rendered (stage timing)
  std::string assign_incident;             // an assign: report -> assign latency
  bool snapshot = false;                   // a console's snapshot (Peer::deliver_snapshot)
};

// What the gate holds: an Outgoing with its recipients found on the engine thread (so
// that it can be delivered from any thread), or a console flush.
struct Release {
  std::shared_ptr<ConsoleFlush> flush;    // rendered and fanned out on the console strand
  std::weak_ptr<Peer> to;                 // one recipient (a connection: the usual case)
  std::vector<std::weak_ptr<Peer>> more;  // several (an insurer's or the pagers' connections)
  bool to_consoles = false;               // `more` are consoles: fanned out on the console strand
  Text text;
  std::optional<engine::Payload> payload;
  bool snapshot = false;
  std::int64_t made_us = 0;
  std::int64_t report_us = 0;  // an assign: when its report was taken (report -> assign), or 0
  std::string traced_incident;  // an assign, with --trace-reports
};

// The release gate between the engine thread, which holds what it renders, and the
// store's writer thread, which learns of each commit and delivers what it released
// without a hop back to the engine thread. Deliveries happen under the lock, so that
// whichever thread delivers, messages reach each peer's queue in the order they were made.
class SharedGate {
 public:
  std::uint64_t submitted() {
    std::lock_guard lock(mu_);
    return gate_.submitted();
  }
  template <class Send>
  void release(Release r, Send&& send) {
    std::lock_guard lock(mu_);
    gate_.release(std::move(r), send);
  }
  template <class Send>
  void committed(std::uint64_t seq, Send&& send) {
    std::lock_guard lock(mu_);
    gate_.committed(seq, send);
  }
  std::size_t held() {
    std::lock_guard lock(mu_);
    return gate_.held();
  }

 private:
  std::mutex mu_;
  ReleaseGate<Release> gate_;
};

struct Server::Impl {
  ServerOptions opt;
  Tokens tokens;
  std::unique_ptr<data::Store> store;
  std::unique_ptr<MapGeography> geography;
  // --roads: the network the engine's policy times ground units on (null: straight line),
  // and its GeoJSON layer, rendered once at start.
  std::unique_ptr<geo::RoadNetwork> roads;
  std::shared_ptr<const std::string> roads_geojson;
  std::unordered_map<std::string, std::string> insurer_alias;  // any name -> code
  std::string console_config;  // render_console_config(): the snapshot's "config", GET /api/config
  engine::Engine engine;
  // Before the io_contexts: sessions destroyed with their pending handlers still count.
  Metrics metrics;

  asio::io_context ioc;         // sessions
  asio::io_context engine_ioc;  // the engine thread
  // The consoles' thread: rendering their position flushes and fanning out their changes,
  // so that neither the engine thread nor the I/O threads (which carry every answer and
  // assign) wait behind 25k unit objects every 250 ms.
  asio::io_context console_ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> ioc_work, engine_work, console_work;
  std::unique_ptr<Listener> listener;
  // Everything for the consoles (changes, position flushes) is fanned out and rendered
  // here, in the order the engine thread posted it (one thread: console_ioc).
  asio::strand<asio::io_context::executor_type> console_strand{asio::make_strand(console_ioc)};
  asio::thread_pool reads{1};  // REST reads from the store
  asio::steady_timer tick_timer{engine_ioc};
  asio::steady_timer flush_timer{engine_ioc};
  asio::signal_set signals{ioc};
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  // At stop, before the store closes: no session reads another frame (what it read but had
  // not handed over is dropped unanswered, so its sender sends it again to the next server),
  // and every frame handed to the engine thread is applied while the store still takes
  // writes. frames_to_engine counts frames posted and not yet applied.
  std::atomic<bool> input_closed{false};
  std::atomic<std::int64_t> frames_to_engine{0};
  // Frames from gateways and units (positions, a fleet's worth each second) queue here and
  // the engine thread takes one per turn, so that whatever was posted meanwhile (a report,
  // a dispatcher's command) runs before the next one instead of after the whole burst.
  // Bounded: each session has at most two frames in flight.
  struct BulkFrame {
    std::shared_ptr<Peer> peer;
    std::shared_ptr<ParsedFrame> frame;
    std::int64_t posted_us = 0;
    ConnId gone = 0;  // no frame: this connection closed (forget_peer)
    Role gone_role = Role::gateway;
  };
  std::mutex bulk_mu;
  std::deque<BulkFrame> bulk_frames;  // under bulk_mu
  bool bulk_scheduled = false;        // under bulk_mu: take_bulk() is posted
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopped = false;
  std::atomic<ConnId> next_conn{1};
  // The sessions' clock for rate limits (microseconds, monotonic); tests fix it.
  std::int64_t (*clock_us)() = &mono_us;

  // Engine thread only.
  std::unordered_map<ConnId, std::weak_ptr<Peer>> peers;
  ConsoleFeed feed;
  std::vector<ConnId> pagers;
  std::unordered_map<std::string, std::vector<ConnId>> insurers;
  engine::Output out;
  std::vector<std::uint32_t> moved;
  ConsoleFeed::Plan flush_plan;             // flush_consoles(), kept for its capacity
  std::vector<std::uint32_t> view_of_slot;  // flush_consoles(): a unit's place in the flush
  SharedGate gate;  // and the store's writer thread
  std::unordered_map<std::string, std::int64_t> report_started_us;  // incident -> its report's arrival
  // --trace-reports: written by the engine thread (reports) and whichever thread releases
  // an assign; stdio's own lock keeps lines whole.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> trace{nullptr, &std::fclose};

  // A shared store (PostgreSQL): the lease decides whether this server serves; the roster
  // is stored and the engine restored once the lease is taken (net/lease.cpp).
  std::unique_ptr<LeaseLoop> lease;
  std::vector<engine::rec::Unit> fleet;
  bool serving() const { return !lease || lease->serving(); }

  explicit Impl(ServerOptions o);
  ~Impl();

  // ---- engine thread (router.cpp)
  engine::Origin origin_of(const Peer& p) const { return engine::Origin{p.id, p.who.get()}; }
  void register_peer(std::shared_ptr<Peer> p);
  void unregister_peer(ConnId id, Role role);
  // A parsed frame from a session (runs on the engine thread).
  void on_frame(const std::shared_ptr<Peer>& p, ParsedFrame& f, std::int64_t posted_us);
  // One frame off the bulk lane; posts itself again while more wait.
  void take_bulk();
  void forget_peer(ConnId id, Role role);
  // ---- I/O threads: hands a parsed frame to the engine thread (`bulk`: on the bulk lane).
  void post_frame(std::shared_ptr<Peer> p, std::shared_ptr<ParsedFrame> f, std::int64_t posted_us, bool bulk);
  void push_bulk(BulkFrame b);
  // `read_us`, `took_us`: when its frame was read and taken by the engine thread (for
  // --trace-reports; 0 for a command that came by HTTP).
  void handle_command(engine::Command c, const engine::Origin& origin, Millis now, std::int64_t read_us = 0,
                      std::int64_t took_us = 0);
  // Renders what the engine produced and sends it once the writes before it are durable.
  void apply();
  // Sends a rendered text to `p` once everything submitted so far is durable.
  void release_to(const std::shared_ptr<Peer>& p, Text text, bool snapshot = false);
  // Holds `o` at the gate until everything submitted before it has committed, then sends it.
  void hold(Outgoing o);
  // Sends `o` now (an error: it says nothing about the state).
  void send(Outgoing& o);
  // Finds `o`'s recipients (engine thread).
  Release resolve(Outgoing& o);
  // ---- engine thread, or the store's writer thread (under the gate's lock)
  void deliver(Release& r);
  void flush_consoles();
  void run_console_flush(ConsoleFlush& job);  // on the console strand
  void drop_console(ConnId id);
  void arm_tick();
  void arm_flush();
  std::string render_engine_metrics();

  // ---- any thread
  std::string render_io_metrics() const;
  void request_stop();
  void start_signals();
};

std::unique_ptr<LeaseLoop> make_lease_loop(Server::Impl& m);

// A parse/route problem on the HTTP side, as a JSON body: {"code","message"}.
std::string json_error_body(std::string_view code, std::string_view message);

}  // namespace dispatch::net
