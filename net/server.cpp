// The server: Beast sessions on I/O threads parse and authorise; one engine thread owns
// the engine and the routing tables; the store's writer thread commits. A message travels
// session -> engine thread -> (store commit) -> engine thread -> session queues.

#include "net/server.hpp"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "net/config.hpp"
#include "net/geography.hpp"
#include "net/json_writer.hpp"
#include "net/metrics.hpp"
#include "net/protocol.hpp"

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace dispatch::net {

using engine::ConnId;
using engine::Millis;

namespace {

Millis wall_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
std::int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void log_line(const std::string& s) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::cerr << s << '\n';
}

// Error codes to HTTP statuses, for the REST side.
http::status http_status(engine::ErrorCode c) {
  using E = engine::ErrorCode;
  switch (c) {
    case E::bad_json:
    case E::bad_message: return http::status::bad_request;
    case E::unknown_type: return http::status::bad_request;
    case E::unknown_unit:
    case E::unknown_incident:
    case E::unknown_assignment: return http::status::not_found;
    case E::forbidden: return http::status::forbidden;
    case E::conflict: return http::status::conflict;
    case E::rate_limited: return http::status::too_many_requests;
    case E::unavailable: return http::status::service_unavailable;
  }
  return http::status::bad_request;
}

std::string json_error_body(std::string_view code, std::string_view message) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("code", code).field("message", message).end_object();
  return s;
}

std::string_view mime_type(std::string_view path) {
  auto ext = path.substr(std::min(path.size(), path.rfind('.')));
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".geojson") return "application/json";
  if (ext == ".png") return "image/png";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".map") return "application/json";
  return "application/octet-stream";
}

std::string query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      std::string_view v = eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
      std::string out;
      for (std::size_t i = 0; i < v.size(); ++i) {  // percent-decoding
        if (v[i] == '%' && i + 2 < v.size() + 0 && i + 2 <= v.size() - 1) {
          out += static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16));
          i += 2;
        } else if (v[i] == '+') {
          out += ' ';
        } else {
          out += v[i];
        }
      }
      return out;
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return {};
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

}  // namespace

// A connection the engine thread can send to. deliver() is thread-safe.
struct Peer : std::enable_shared_from_this<Peer> {
  ConnId id = 0;
  std::string role;
  std::shared_ptr<const engine::Principal> who;
  std::atomic<std::size_t> queued_bytes{0};
  bool batch_frames = false;  // console asked for positions as arrays
  virtual ~Peer() = default;
  virtual void deliver(std::shared_ptr<const std::string> msg, const engine::Payload* payload) = 0;
  virtual void deliver_many(std::vector<std::shared_ptr<const std::string>> msgs) {
    for (auto& m : msgs) deliver(std::move(m), nullptr);
  }
  virtual void drop(std::string reason) { (void)reason; }
};

// Engine-thread state of one console: positions waiting to be sent, coalesced.
struct ConsoleState {
  std::weak_ptr<Peer> peer;
  std::vector<std::uint32_t> pending;
  std::vector<bool> is_pending;
};

struct Server::Impl {
  ServerOptions opt;
  Tokens tokens;
  std::unique_ptr<data::Store> store;
  std::unique_ptr<MapGeography> geography;
  std::unordered_map<std::string, std::string> insurer_alias;  // any name -> code
  engine::Engine engine;

  asio::io_context ioc;         // sessions
  asio::io_context engine_ioc;  // the engine thread
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> ioc_work, engine_work;
  tcp::acceptor acceptor{ioc};
  asio::thread_pool reads{1};   // REST reads from the store
  asio::steady_timer tick_timer{engine_ioc};
  asio::steady_timer flush_timer{engine_ioc};
  asio::signal_set signals{ioc};
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopped = false;

  std::atomic<ConnId> next_conn{1};
  std::atomic<std::size_t> open_connections{0};

  // Engine thread only.
  std::unordered_map<ConnId, std::weak_ptr<Peer>> peers;
  std::unordered_map<ConnId, ConsoleState> consoles;
  std::vector<ConnId> pagers;
  std::unordered_map<std::string, std::vector<ConnId>> insurers;
  engine::Output out;
  std::vector<std::uint32_t> moved;
  std::vector<std::shared_ptr<const std::string>> render_cache;
  std::unordered_map<std::string, std::int64_t> report_started_us;  // incident -> when its report came

  // Metrics.
  struct Metrics {
    std::array<Counter, 6> connections_by_role{};  // console reporter unit gateway pager insurer
    std::array<Counter, 6> open_by_role{};
    std::unordered_map<std::string_view, Counter> messages_in;
    std::array<Counter, 10> errors{};
    Counter frames_in{0}, positions_in{0}, consoles_dropped{0}, rate_limited{0};
    Counter http_requests{0}, connections_refused{0};
    Histogram assign_latency, commit_latency, accept_latency;
  } metrics;

  explicit Impl(ServerOptions o) : opt(std::move(o)), engine(opt.engine) {}

  static int role_index(std::string_view r) {
    if (r == "console") return 0;
    if (r == "reporter") return 1;
    if (r == "unit") return 2;
    if (r == "gateway") return 3;
    if (r == "insurer") return 5;
    return 4;
  }

  // ---------------------------------------------------------------- engine thread

  using Origin = engine::Origin;
  Origin origin_of(const Peer& p) const { return engine::Origin{p.id, p.who.get()}; }

  void register_peer(std::shared_ptr<Peer> p) {
    asio::post(engine_ioc, [this, p] {
      peers[p->id] = p;
      const Millis now = wall_now();
      if (p->role == "console") {
        auto& cs = consoles[p->id];
        cs.peer = p;
        p->deliver(std::make_shared<const std::string>(render_snapshot(engine, now)), nullptr);
      } else if (p->role == "pager") {
        pagers.push_back(p->id);
        engine.pager_connected(p->id, out);
        apply();
      } else if (p->role == "unit") {
        engine.unit_connected(p->id, *p->who);
      } else if (p->role == "insurer") {
        insurers[p->who->insurer].push_back(p->id);
        engine.insurer_connected(p->id, p->who->insurer, out);
        apply();
      }
    });
  }

  void unregister_peer(ConnId id) {
    asio::post(engine_ioc, [this, id] {
      peers.erase(id);
      consoles.erase(id);
      if (std::erase(pagers, id)) engine.pager_disconnected();
      for (auto& [name, conns] : insurers) std::erase(conns, id);
      engine.disconnected(id);
    });
  }

  // Runs on the engine thread: a parsed frame from a session.
  void on_frame(const std::shared_ptr<Peer>& p, ParsedFrame& f) {
    const Millis now = wall_now();
    const Origin origin = origin_of(*p);
    for (auto& e : f.errors) {
      inc(metrics.errors[static_cast<std::size_t>(e.code)]);
      out.messages.push_back({engine::Target::to(p->id), std::move(e)});
    }
    if (!f.positions.empty()) {
      inc(metrics.positions_in, f.positions.size());
      engine.positions(f.positions, origin, now, out);
    }
    for (auto& c : f.commands) handle_command(std::move(c), origin, now);
    apply();
  }

  void handle_command(engine::Command c, const Origin& origin, Millis now) {
    if (auto* r = std::get_if<engine::cmd::Report>(&c)) {
      // One name per insurer, so that each gets its claims whatever the reporter wrote.
      for (auto& v : r->vehicles)
        if (auto it = insurer_alias.find(v.insurer); it != insurer_alias.end()) v.insurer = it->second;
      if (!store->healthy()) {
        inc(metrics.errors[static_cast<std::size_t>(engine::ErrorCode::unavailable)]);
        out.messages.push_back({engine::Target::to(origin.conn),
                                engine::ev::Error{engine::ErrorCode::unavailable,
                                                  "the store cannot write now; try again", r->id}});
        return;
      }
      const std::size_t before = out.messages.size();
      engine.handle(c, origin, now, out);
      for (std::size_t i = before; i < out.messages.size(); ++i)
        if (auto* a = std::get_if<engine::ev::Accepted>(&out.messages[i].payload))
          report_started_us.emplace(a->incident, mono_us());
      return;
    }
    engine.handle(c, origin, now, out);
  }

  // Sends what the engine produced: at once, or after the store has committed.
  void apply() {
    if (out.empty()) return;
    for (const auto& m : out.messages)
      if (auto* e = std::get_if<engine::ev::Error>(&m.payload); e && m.to.kind == engine::Target::Kind::conn)
        (void)e;  // errors are counted where they are made
    if (out.must_wait) {
      auto msgs = std::make_shared<std::vector<engine::Message>>(std::move(out.messages));
      store->submit(std::move(out.writes), [this, msgs] {
        asio::post(engine_ioc, [this, msgs] { release(*msgs); });
      });
    } else {
      if (!out.writes.empty()) store->submit(std::move(out.writes), [] {});
      release(out.messages);
    }
    out.clear();
  }

  std::shared_ptr<const std::string> render(const engine::Payload& p, Millis now) {
    return std::visit(
        [&](const auto& ev) -> std::shared_ptr<const std::string> {
          using E = std::decay_t<decltype(ev)>;
          if constexpr (std::is_same_v<E, engine::ev::Accepted>)
            return std::make_shared<const std::string>(render_accepted(ev));
          else if constexpr (std::is_same_v<E, engine::ev::Assign>)
            return std::make_shared<const std::string>(render_assign(ev));
          else if constexpr (std::is_same_v<E, engine::ev::Cancel>)
            return std::make_shared<const std::string>(render_cancel(ev));
          else if constexpr (std::is_same_v<E, engine::ev::Page>)
            return std::make_shared<const std::string>(render_page(ev));
          else if constexpr (std::is_same_v<E, engine::ev::Error>)
            return std::make_shared<const std::string>(render_error(ev));
          else if constexpr (std::is_same_v<E, engine::ev::Claim>) {
            const engine::rec::Claim* c = engine.claim(ev.claim);
            if (!c) return nullptr;
            const engine::Incident* inc = engine.incident(c->incident);
            return std::make_shared<const std::string>(render_claim(*c, inc ? &inc->rec : nullptr));
          } else if constexpr (std::is_same_v<E, engine::ev::UnitChanged>)
            return std::make_shared<const std::string>(
                render_unit(engine, engine.units()[ev.unit], now));
          else {
            const engine::Incident* inc = engine.incident(ev.incident);
            if (!inc) return nullptr;
            return std::make_shared<const std::string>(render_incident(engine, *inc, now));
          }
        },
        p);
  }

  void release(std::vector<engine::Message>& msgs) {
    const Millis now = wall_now();
    for (auto& m : msgs) {
      if (auto* a = std::get_if<engine::ev::Assign>(&m.payload)) {
        auto it = report_started_us.find(a->incident);
        if (it != report_started_us.end()) {
          metrics.assign_latency.observe_us(mono_us() - it->second);
          report_started_us.erase(it);
        }
      }
      auto text = render(m.payload, now);
      if (!text) continue;
      switch (m.to.kind) {
        case engine::Target::Kind::conn: {
          auto it = peers.find(m.to.conn);
          if (it == peers.end()) break;
          if (auto p = it->second.lock()) p->deliver(std::move(text), &m.payload);
          break;
        }
        case engine::Target::Kind::consoles: {
          std::vector<std::shared_ptr<Peer>> too_slow;
          for (auto& [id, cs] : consoles)
            if (auto p = cs.peer.lock()) {
              if (p->queued_bytes.load(std::memory_order_relaxed) > opt.console_hard_bytes) {
                too_slow.push_back(std::move(p));
                continue;
              }
              p->deliver(text, nullptr);
            }
          for (auto& p : too_slow) drop_console(*p);
          break;
        }
        case engine::Target::Kind::insurer: {
          auto it = insurers.find(m.to.insurer);
          if (it == insurers.end()) break;
          for (ConnId id : it->second)
            if (auto pi = peers.find(id); pi != peers.end())
              if (auto p = pi->second.lock()) p->deliver(text, &m.payload);
          break;
        }
        case engine::Target::Kind::pagers:
          for (ConnId id : pagers) {
            auto it = peers.find(id);
            if (it == peers.end()) continue;
            if (auto p = it->second.lock()) p->deliver(text, &m.payload);
          }
          break;
      }
    }
    // Reports whose incident waits for a unit: no assign latency to record now.
    if (report_started_us.size() > 100000) report_started_us.clear();
  }

  void drop_console(Peer& p) {
    inc(metrics.consoles_dropped);
    log_line(fmt::format("console {} dropped: it does not keep up ({} bytes queued)", p.id,
                         p.queued_bytes.load()));
    consoles.erase(p.id);
    p.drop("too slow: outgoing queue over its limit");
  }

  // Positions to consoles: coalesced per unit, sent when the console's queue is short.
  void flush_consoles() {
    moved.clear();
    engine.take_moved(moved);
    if (consoles.empty()) return;
    const Millis now = wall_now();
    const auto n_units = engine.units().size();
    if (render_cache.size() < n_units) render_cache.resize(n_units);
    std::vector<std::uint32_t> touched;
    std::vector<ConnId> to_drop;
    for (auto& [id, cs] : consoles) {
      auto p = cs.peer.lock();
      if (!p) continue;
      if (cs.is_pending.size() < n_units) cs.is_pending.resize(n_units, false);
      for (auto slot : moved)
        if (!cs.is_pending[slot]) {
          cs.is_pending[slot] = true;
          cs.pending.push_back(slot);
        }
      if (cs.pending.empty()) continue;
      const auto queued = p->queued_bytes.load(std::memory_order_relaxed);
      if (queued > opt.console_hard_bytes) {
        to_drop.push_back(id);
        continue;
      }
      if (queued > opt.console_soft_bytes) continue;  // it keeps the newest, later
      std::vector<std::shared_ptr<const std::string>> batch;
      std::string arr;
      for (auto slot : cs.pending) {
        cs.is_pending[slot] = false;
        if (!render_cache[slot]) {
          render_cache[slot] = std::make_shared<const std::string>(render_unit(engine, engine.units()[slot], now));
          touched.push_back(slot);
        }
        if (p->batch_frames) {
          arr += arr.empty() ? '[' : ',';
          arr += *render_cache[slot];
          if (arr.size() > 48 * 1024) {
            arr += ']';
            batch.push_back(std::make_shared<const std::string>(std::move(arr)));
            arr.clear();
          }
        } else {
          batch.push_back(render_cache[slot]);
        }
      }
      if (!arr.empty()) {
        arr += ']';
        batch.push_back(std::make_shared<const std::string>(std::move(arr)));
      }
      cs.pending.clear();
      p->deliver_many(std::move(batch));
    }
    for (auto slot : touched) render_cache[slot].reset();
    for (ConnId id : to_drop)
      if (auto p = consoles[id].peer.lock()) drop_console(*p);
  }

  void arm_tick() {
    tick_timer.expires_after(opt.tick);
    tick_timer.async_wait([this](error_code ec) {
      if (ec || stopping) return;
      engine.tick(wall_now(), out);
      apply();
      arm_tick();
    });
  }
  void arm_flush() {
    flush_timer.expires_after(opt.console_flush);
    flush_timer.async_wait([this](error_code ec) {
      if (ec || stopping) return;
      flush_consoles();
      arm_flush();
    });
  }

  std::string render_metrics();

  // ---------------------------------------------------------------- I/O side
  void do_accept();
  void start_signals() {
    if (!opt.handle_signals) return;
    signals.add(SIGINT);
    signals.add(SIGTERM);
    signals.async_wait([this](error_code ec, int sig) {
      if (ec) return;
      log_line(fmt::format("signal {}: stopping", sig));
      request_stop();
    });
  }
  void request_stop() {
    std::lock_guard lock(stop_mutex);
    stopped = true;
    stop_cv.notify_all();
  }
};

// ---------------------------------------------------------------------------------------
// WebSocket session

class WsSession : public Peer {
 public:
  WsSession(Server::Impl& srv, beast::tcp_stream&& stream)
      : srv_(srv), ws_(std::move(stream)) {}

  ~WsSession() override {
    srv_.open_connections.fetch_sub(1);
    srv_.metrics.open_by_role[Server::Impl::role_index(role)].fetch_sub(1);
  }

  void start(http::request<http::string_body> req) {
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = srv_.opt.handshake_timeout;
    t.idle_timeout = srv_.opt.idle_timeout;
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(srv_.opt.max_frame_bytes);
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, "dispatchd");
    }));
    tokens_ = srv_.opt.rate_burst;
    last_refill_us_ = mono_us();
    inc(srv_.metrics.connections_by_role[Server::Impl::role_index(role)]);
    srv_.metrics.open_by_role[Server::Impl::role_index(role)].fetch_add(1);
    ws_.async_accept(req, [self = shared()](error_code ec) { self->on_accept(ec); });
  }

  void deliver(std::shared_ptr<const std::string> msg, const engine::Payload*) override {
    queued_bytes.fetch_add(msg->size(), std::memory_order_relaxed);
    asio::post(ws_.get_executor(), [self = shared(), msg = std::move(msg)]() mutable {
      self->enqueue(std::move(msg));
    });
  }

  void deliver_many(std::vector<std::shared_ptr<const std::string>> msgs) override {
    if (msgs.empty()) return;
    std::size_t bytes = 0;
    for (auto& m : msgs) bytes += m->size();
    queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
    asio::post(ws_.get_executor(), [self = shared(), msgs = std::move(msgs)]() mutable {
      for (auto& m : msgs) self->enqueue(std::move(m));
    });
  }

  void drop(std::string reason) override {
    asio::post(ws_.get_executor(), [self = shared(), reason = std::move(reason)]() mutable {
      if (self->closing_) return;
      self->closing_ = true;
      // Drop what is queued behind the write in flight; then close with the reason.
      while (self->queue_.size() > (self->writing_ ? 1u : 0u)) {
        self->queued_bytes.fetch_sub(self->queue_.back()->size());
        self->queue_.pop_back();
      }
      self->close_reason_ = std::move(reason);
      if (!self->writing_) self->send_close();
      // A peer that reads nothing never lets the write in flight finish: cut it off.
      auto timer = std::make_shared<asio::steady_timer>(self->ws_.get_executor());
      timer->expires_after(std::chrono::seconds(2));
      timer->async_wait([self, timer](error_code) {
        error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
      });
    });
  }

 private:
  std::shared_ptr<WsSession> shared() {
    return std::static_pointer_cast<WsSession>(shared_from_this());
  }

  void on_accept(error_code ec) {
    if (ec) return;
    srv_.register_peer(shared_from_this());
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, [self = shared()](error_code ec, std::size_t n) { self->on_read(ec, n); });
  }

  bool take_token() {
    const auto now = mono_us();
    tokens_ = std::min(srv_.opt.rate_burst,
                       tokens_ + static_cast<double>(now - last_refill_us_) / 1e6 * srv_.opt.rate_per_s);
    last_refill_us_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  void on_read(error_code ec, std::size_t) {
    if (ec) {
      srv_.unregister_peer(id);
      return;
    }
    inc(srv_.metrics.frames_in);
    if (!ws_.got_text()) {
      buffer_.consume(buffer_.size());
      send_now(render_error({engine::ErrorCode::bad_json, "frames must be UTF-8 JSON text", {}}));
    } else if (!take_token()) {
      inc(srv_.metrics.rate_limited);
      inc(srv_.metrics.errors[static_cast<std::size_t>(engine::ErrorCode::rate_limited)]);
      buffer_.consume(buffer_.size());
      send_now(render_error({engine::ErrorCode::rate_limited,
                             fmt::format("more than {} messages per second", srv_.opt.rate_per_s), {}}));
    } else {
      auto data = buffer_.cdata();
      const std::string_view text(static_cast<const char*>(data.data()), data.size());
      auto frame = std::make_shared<ParsedFrame>();
      parse_frame(text, role, *frame);
      buffer_.consume(buffer_.size());
      for (auto t : frame->types) {
        auto it = srv_.metrics.messages_in.find(t);
        if (it != srv_.metrics.messages_in.end()) inc(it->second);
      }
      asio::post(srv_.engine_ioc, [self = shared(), frame] { self->srv_.on_frame(self, *frame); });
    }
    do_read();
  }

  void send_now(std::string s) { deliver(std::make_shared<const std::string>(std::move(s)), nullptr); }

  void enqueue(std::shared_ptr<const std::string> msg) {
    if (closing_) {
      queued_bytes.fetch_sub(msg->size());
      return;
    }
    queue_.push_back(std::move(msg));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(*queue_.front()), [self = shared()](error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(error_code ec) {
    queued_bytes.fetch_sub(queue_.front()->size());
    queue_.pop_front();
    writing_ = false;
    if (ec) {
      while (!queue_.empty()) {
        queued_bytes.fetch_sub(queue_.front()->size());
        queue_.pop_front();
      }
      return;
    }
    if (closing_) {
      send_close();
      return;
    }
    if (!queue_.empty()) write_next();
  }

  void send_close() {
    ws_.async_close(websocket::close_reason(websocket::close_code::policy_error, close_reason_),
                    [self = shared()](error_code) {});
  }

  Server::Impl& srv_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  bool writing_ = false;
  bool closing_ = false;
  std::string close_reason_;
  double tokens_ = 0;
  std::int64_t last_refill_us_ = 0;
};

// ---------------------------------------------------------------------------------------
// HTTP session: REST, health, metrics, static files, and the upgrade to WebSocket.

class HttpSession : public Peer {
 public:
  HttpSession(Server::Impl& srv, tcp::socket&& socket) : srv_(srv), stream_(std::move(socket)) {}
  ~HttpSession() override { srv_.open_connections.fetch_sub(1); }

  void run() {
    asio::dispatch(stream_.get_executor(), [self = shared()] { self->do_read(); });
  }

  // The answer to POST /api/incidents, from the engine thread.
  void deliver(std::shared_ptr<const std::string>, const engine::Payload* payload) override {
    if (!payload) return;
    http::status status = http::status::ok;
    std::string body;
    if (auto* a = std::get_if<engine::ev::Accepted>(payload)) {
      status = http::status::created;
      JsonWriter w(body);
      w.begin_object().field("incident", a->incident).field("id", a->report_id).end_object();
    } else if (auto* e = std::get_if<engine::ev::Error>(payload)) {
      status = http_status(e->code);
      body = json_error_body(engine::to_string(e->code), e->message);
    } else {
      return;
    }
    asio::post(stream_.get_executor(), [self = shared(), status, body = std::move(body)]() mutable {
      self->srv_.unregister_peer(self->id);
      self->waiting_.reset();
      self->send_json(status, std::move(body));
    });
  }

 private:
  std::shared_ptr<HttpSession> shared() {
    return std::static_pointer_cast<HttpSession>(shared_from_this());
  }

  void do_read() {
    parser_.emplace();
    parser_->body_limit(srv_.opt.max_body_bytes);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared()](error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (ec == http::error::end_of_stream) {
      error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      send_json(http::status::payload_too_large,
                json_error_body("bad_message", "request body over the size limit"));
      return;
    }
    if (ec) return;
    req_ = parser_->release();
    keep_alive_ = req_.keep_alive();
    inc(srv_.metrics.http_requests);
    handle();
  }

  std::shared_ptr<const engine::Principal> authenticate() {
    std::string token;
    auto auth = req_[http::field::authorization];
    if (auth.starts_with("Bearer ")) token = std::string(auth.substr(7));
    if (token.empty()) token = query_param(req_.target(), "token");
    if (token.empty()) return nullptr;
    return srv_.tokens.share(token);
  }

  void handle() {
    const std::string_view target = req_.target();
    const std::string_view path = path_of(target);
    const auto method = req_.method();

    if (path == "/healthz") {
      if (method != http::verb::get && method != http::verb::head) return method_not_allowed("GET");
      const bool ok = srv_.store->healthy();
      return send_text(ok ? http::status::ok : http::status::service_unavailable,
                       ok ? "ok\n" : "store unavailable\n", "text/plain");
    }
    if (path == "/geo/districts.geojson" || path == "/geo/places.geojson") {
      if (method != http::verb::get) return method_not_allowed("GET");
      if (!srv_.geography) return send_json(http::status::not_found, json_error_body("not_found", "no map loaded"));
      return send_text(http::status::ok,
                       path == "/geo/districts.geojson" ? srv_.geography->districts_geojson()
                                                        : srv_.geography->places_geojson(),
                       "application/geo+json");
    }
    if (path == "/metrics") {
      if (method != http::verb::get) return method_not_allowed("GET");
      return send_text(http::status::ok, srv_.render_metrics(), "text/plain; version=0.0.4");
    }

    const bool is_ws = websocket::is_upgrade(req_);
    const bool is_api = path.starts_with("/api/");
    if (is_ws || is_api) {
      auto principal = authenticate();
      if (!principal)
        return send_json(http::status::unauthorized,
                         json_error_body("unauthorized", "a valid token is required"));
      if (is_ws) return upgrade(path, std::move(principal));
      return api(path, method, std::move(principal));
    }
    if (path.starts_with("/ws/"))
      return send_json(http::status::bad_request,
                       json_error_body("bad_message", "this path needs a WebSocket upgrade"));
    if (method != http::verb::get && method != http::verb::head) return method_not_allowed("GET");
    return static_file(path);
  }

  void upgrade(std::string_view path, std::shared_ptr<const engine::Principal> principal) {
    const engine::Principal& p = *principal;
    std::string ws_role;
    if (path == "/ws/unit") ws_role = p.role == "gateway" ? "gateway" : "unit";
    else if (path == "/ws/console") ws_role = "console";
    else if (path == "/ws/pager") ws_role = "pager";
    else if (path == "/ws/report") ws_role = "reporter";
    else if (path == "/ws/insurer") ws_role = "insurer";
    else return send_json(http::status::not_found, json_error_body("not_found", "no such path"));
    const bool allowed = (path == "/ws/unit" && (p.role == "unit" || p.role == "gateway")) ||
                         (path == "/ws/console" && p.role == "console") ||
                         (path == "/ws/pager" && p.role == "pager") ||
                         (path == "/ws/report" && p.role == "reporter") ||
                         (path == "/ws/insurer" && p.role == "insurer");
    if (!allowed)
      return send_json(http::status::forbidden,
                       json_error_body("forbidden", "this token's role does not open " + std::string(path)));
    auto ws = std::make_shared<WsSession>(srv_, std::move(stream_));
    srv_.open_connections.fetch_add(1);  // the WebSocket session counts itself from here
    ws->id = srv_.next_conn.fetch_add(1);
    ws->role = ws_role;
    ws->who = std::move(principal);
    ws->batch_frames = query_param(req_.target(), "batch") == "1";
    ws->start(std::move(req_));
  }

  void api(std::string_view path, http::verb method, std::shared_ptr<const engine::Principal> principal) {
    const bool console = principal->role == "console";
    if (path == "/api/incidents" && method == http::verb::post) {
      if (!console && principal->role != "reporter")
        return send_json(http::status::forbidden, json_error_body("forbidden", "needs a reporter or console token"));
      engine::cmd::Report rep;
      engine::ev::Error err;
      if (!parse_report(req_.body(), rep, err)) {
        inc(srv_.metrics.errors[static_cast<std::size_t>(err.code)]);
        return send_json(http_status(err.code), json_error_body(engine::to_string(err.code), err.message));
      }
      who = std::move(principal);
      role = "http";
      if (!id) id = srv_.next_conn.fetch_add(1);
      auto self = shared();
      waiting_ = self;  // alive until the engine answers (only weak references elsewhere)
      asio::post(srv_.engine_ioc, [self, rep = std::move(rep)]() mutable {
        auto& s = self->srv_;
        s.peers[self->id] = self;
        s.handle_command(engine::Command(std::move(rep)), engine::Origin{self->id, self->who.get()},
                         wall_now());
        s.apply();
      });
      return;
    }
    if (!console)
      return send_json(http::status::forbidden, json_error_body("forbidden", "needs a console token"));
    if (method != http::verb::get) return method_not_allowed(path == "/api/incidents" ? "GET, POST" : "GET");
    if (path == "/api/units" || path == "/api/stats") {
      auto self = shared();
      const bool stats = path == "/api/stats";
      asio::post(srv_.engine_ioc, [self, stats] {
        auto body = stats ? render_service_levels(self->srv_.engine) : render_units(self->srv_.engine, wall_now());
        asio::post(self->stream_.get_executor(), [self, body = std::move(body)]() mutable {
          self->send_json(http::status::ok, std::move(body));
        });
      });
      return;
    }
    if (path == "/api/incidents") {
      const std::string state = query_param(req_.target(), "state");
      if (!state.empty() && state != "open" && state != "all")
        return send_json(http::status::bad_request, json_error_body("bad_message", "state must be open or all"));
      const bool open_only = state != "all";
      auto self = shared();
      asio::post(srv_.reads, [self, open_only] {
        std::string body;
        JsonWriter w(body);
        w.begin_array();
        for (const auto& r : self->srv_.store->incidents(open_only))
          w.raw(render_incident_record(r.incident, r.assignments, r.timeline));
        w.end_array();
        asio::post(self->stream_.get_executor(), [self, body = std::move(body)]() mutable {
          self->send_json(http::status::ok, std::move(body));
        });
      });
      return;
    }
    if (path.starts_with("/api/units/") && path.ends_with("/track")) {
      const std::string_view pre = "/api/units/";
      std::string unit(path.substr(pre.size(), path.size() - pre.size() - std::string_view("/track").size()));
      std::int64_t since = 0, until = 0;
      try {
        if (auto v = query_param(req_.target(), "since"); !v.empty()) since = std::stoll(v);
        if (auto v = query_param(req_.target(), "until"); !v.empty()) until = std::stoll(v);
      } catch (const std::exception&) {
        return send_json(http::status::bad_request, json_error_body("bad_message", "since and until are epoch milliseconds"));
      }
      auto self = shared();
      asio::post(srv_.engine_ioc, [self, unit, since, until] {
        const bool known = self->srv_.engine.unit(unit) != nullptr;
        asio::post(self->srv_.reads, [self, unit, since, until, known] {
          if (!known)
            return asio::post(self->stream_.get_executor(), [self] {
              self->send_json(http::status::not_found, json_error_body("unknown_unit", "no such unit"));
            });
          // A GeoJSON Feature: the track as a LineString, with each point's time.
          std::string body;
          JsonWriter w(body);
          const auto points = self->srv_.store->track(unit, since, until);
          w.begin_object().field("type", "Feature");
          w.key("properties").begin_object().field("unit", unit).key("times").begin_array();
          for (const auto& p : points) w.value(p.ts);
          w.end_array().end_object();
          w.key("geometry").begin_object().field("type", "LineString").key("coordinates").begin_array();
          for (const auto& p : points) {
            w.begin_array();
            w.coord(p.lon);
            w.coord(p.lat);
            w.end_array();
          }
          w.end_array().end_object().end_object();
          asio::post(self->stream_.get_executor(), [self, body = std::move(body)]() mutable {
            self->write(self->make(http::status::ok, std::move(body), "application/geo+json"));
          });
        });
      });
      return;
    }
    if (path.starts_with("/api/incidents/")) {
      std::string iid(path.substr(std::string_view("/api/incidents/").size()));
      auto self = shared();
      asio::post(srv_.reads, [self, iid] {
        auto r = self->srv_.store->incident(iid);
        asio::post(self->stream_.get_executor(), [self, r = std::move(r)]() mutable {
          if (!r)
            return self->send_json(http::status::not_found,
                                   json_error_body("unknown_incident", "no such incident"));
          self->send_json(http::status::ok,
                          render_incident_record(r->incident, r->assignments, r->timeline));
        });
      });
      return;
    }
    send_json(http::status::not_found, json_error_body("not_found", "no such path"));
  }

  void static_file(std::string_view path) {
    if (srv_.opt.web_root.empty())
      return send_json(http::status::not_found, json_error_body("not_found", "no such path"));
    std::string rel(path == "/" ? "/index.html" : path);
    if (rel.find("..") != std::string::npos || rel.find('\0') != std::string::npos)
      return send_json(http::status::bad_request, json_error_body("bad_message", "bad path"));
    const std::string file = srv_.opt.web_root + rel;
    std::error_code fec;
    if (!std::filesystem::is_regular_file(file, fec))
      return send_json(http::status::not_found, json_error_body("not_found", "no such path"));
    http::file_body::value_type body;
    error_code ec;
    body.open(file.c_str(), beast::file_mode::scan, ec);
    if (ec) return send_json(http::status::not_found, json_error_body("not_found", "no such path"));
    auto res = std::make_shared<http::response<http::file_body>>(
        std::piecewise_construct, std::make_tuple(std::move(body)),
        std::make_tuple(http::status::ok, req_.version()));
    res->set(http::field::server, "dispatchd");
    res->set(http::field::content_type, mime_type(rel));
    res->set(http::field::cache_control, "no-cache");
    res->keep_alive(keep_alive_);
    res->prepare_payload();
    write(res);
  }

  void method_not_allowed(std::string_view allow) {
    auto res = make(http::status::method_not_allowed, json_error_body("method_not_allowed", "method not allowed"),
                    "application/json");
    res->set(http::field::allow, allow);
    write(res);
  }

  std::shared_ptr<http::response<http::string_body>> make(http::status status, std::string body,
                                                          std::string_view type) {
    auto res = std::make_shared<http::response<http::string_body>>(status, req_.version());
    res->set(http::field::server, "dispatchd");
    res->set(http::field::content_type, type);
    res->keep_alive(keep_alive_);
    res->body() = std::move(body);
    res->prepare_payload();
    return res;
  }
  void send_json(http::status status, std::string body) {
    write(make(status, std::move(body), "application/json"));
  }
  void send_text(http::status status, std::string body, std::string_view type) {
    write(make(status, std::move(body), type));
  }

  template <class Body>
  void write(std::shared_ptr<http::response<Body>> res) {
    http::async_write(stream_, *res, [self = shared(), res](error_code ec, std::size_t) {
      if (ec) return;
      if (res->need_eof()) {
        error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->do_read();
    });
  }

  Server::Impl& srv_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  bool keep_alive_ = true;
  std::shared_ptr<HttpSession> waiting_;
};

void Server::Impl::do_accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (!acceptor.is_open()) return;
    } else if (open_connections.load() >= opt.max_connections) {
      inc(metrics.connections_refused);
      // Over the cap: a plain 503 and close.
      static const std::string busy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      error_code ignored;
      asio::write(socket, asio::buffer(busy), ignored);
      socket.close(ignored);
    } else {
      open_connections.fetch_add(1);
      std::make_shared<HttpSession>(*this, std::move(socket))->run();
    }
    if (acceptor.is_open()) do_accept();
  });
}

std::string Server::Impl::render_metrics() {
  std::string s;
  static constexpr std::array<std::string_view, 6> roles{"console", "reporter", "unit", "gateway", "pager", "insurer"};
  render_family_head(s, "dispatch_connections_total", "WebSocket connections accepted, by role");
  for (std::size_t i = 0; i < roles.size(); ++i)
    render_sample(s, "dispatch_connections_total", "role", roles[i], metrics.connections_by_role[i].load());
  render_family_head(s, "dispatch_connections_open", "WebSocket connections open, by role", "gauge");
  for (std::size_t i = 0; i < roles.size(); ++i)
    render_sample(s, "dispatch_connections_open", "role", roles[i], metrics.open_by_role[i].load());
  render_family_head(s, "dispatch_messages_in_total", "Messages received, by type");
  for (const auto& [type, c] : metrics.messages_in)
    render_sample(s, "dispatch_messages_in_total", "type", type, c.load());
  render_family_head(s, "dispatch_errors_total", "Error replies, by code");
  for (std::size_t i = 0; i < metrics.errors.size(); ++i)
    render_sample(s, "dispatch_errors_total", "code", engine::to_string(static_cast<engine::ErrorCode>(i)),
                  metrics.errors[i].load());
  render_counter(s, "dispatch_frames_in_total", "WebSocket frames received", metrics.frames_in.load());
  render_counter(s, "dispatch_positions_in_total", "Position messages received", metrics.positions_in.load());
  render_counter(s, "dispatch_consoles_dropped_total", "Consoles disconnected for not keeping up",
                 metrics.consoles_dropped.load());
  render_counter(s, "dispatch_http_requests_total", "HTTP requests", metrics.http_requests.load());
  render_counter(s, "dispatch_connections_refused_total", "Connections refused over the cap",
                 metrics.connections_refused.load());
  metrics.assign_latency.render(s, "dispatch_report_to_assign_seconds",
                                "From a report's arrival to its first assign leaving the server");
  metrics.commit_latency.render(s, "dispatch_store_commit_seconds", "Store commit duration");
  const auto st = store->stats();
  render_counter(s, "dispatch_store_commits_total", "Store commits", st.commits);
  render_counter(s, "dispatch_store_writes_total", "Store writes committed", st.writes);
  render_counter(s, "dispatch_store_failures_total", "Store commits that failed", st.failures);
  render_counter(s, "dispatch_store_healthy", "1 while the store can write", st.healthy ? 1 : 0, "gauge");
  // Engine figures are read on the engine thread.
  std::promise<std::string> p;
  auto f = p.get_future();
  asio::post(engine_ioc, [this, &p] {
    std::string e;
    const auto& es = engine.stats();
    render_counter(e, "dispatch_positions_accepted_total", "Positions taken", es.positions);
    render_counter(e, "dispatch_positions_out_of_order_total", "Positions ignored as out of order",
                   es.positions_out_of_order);
    render_counter(e, "dispatch_positions_gps_jump_total", "Positions ignored as GPS jumps",
                   es.positions_gps_jump);
    render_counter(e, "dispatch_reports_total", "Reports that made an incident", es.reports);
    render_counter(e, "dispatch_reports_duplicate_total", "Reports sent again with a known id",
                   es.reports_duplicate);
    render_family_head(e, "dispatch_assignments_total", "Assignments, by outcome");
    render_sample(e, "dispatch_assignments_total", "outcome", "made", es.assignments);
    render_sample(e, "dispatch_assignments_total", "outcome", "declined", es.assignments_declined);
    render_sample(e, "dispatch_assignments_total", "outcome", "lapsed", es.assignments_lapsed);
    render_sample(e, "dispatch_assignments_total", "outcome", "cancelled", es.assignments_cancelled);
    render_sample(e, "dispatch_assignments_total", "outcome", "cleared", es.assignments_cleared);
    render_counter(e, "dispatch_incidents_closed_total", "Incidents closed", es.incidents_closed);
    render_counter(e, "dispatch_incidents_waiting", "Incidents waiting for a unit", engine.waiting_count(), "gauge");
    render_counter(e, "dispatch_pages_total", "Pages sent", es.pages);
    render_counter(e, "dispatch_pages_resent_total", "Pages sent again", es.pages_resent);
    render_counter(e, "dispatch_claims_total", "Claims handed to insurers", es.claims);
    render_counter(e, "dispatch_claims_paid_total", "Claims paid", es.claims_paid);
    render_family_head(e, "dispatch_service_level_seconds_sum", "Service levels: total seconds, by stage, district and severity");
    render_family_head(e, "dispatch_service_level_seconds_count", "Service levels: events, by stage, district and severity");
    for (const auto& [key, sl] : engine.service_levels()) {
      const auto bar = key.find('|');
      const std::string labels = fmt::format("district=\"{}\",severity=\"{}\"", key.substr(0, bar), key.substr(bar + 1));
      const std::pair<const char*, const engine::ServiceLevel*> stages[] = {
          {"assign", &sl.to_assign}, {"scene", &sl.to_scene}, {"liability", &sl.to_liability}, {"claim_paid", &sl.to_claim_paid}};
      for (const auto& [stage, l] : stages) {
        fmt::format_to(std::back_inserter(e), "dispatch_service_level_seconds_sum{{stage=\"{}\",{}}} {}\n", stage, labels, l->sum_s);
        fmt::format_to(std::back_inserter(e), "dispatch_service_level_seconds_count{{stage=\"{}\",{}}} {}\n", stage, labels, l->count);
      }
    }
    std::size_t depth = 0;
    for (const auto& [id, w] : peers)
      if (auto p2 = w.lock()) depth += p2->queued_bytes.load();
    render_counter(e, "dispatch_outgoing_queue_bytes", "Bytes queued to all connections", depth, "gauge");
    p.set_value(std::move(e));
  });
  if (f.wait_for(std::chrono::seconds(2)) == std::future_status::ready) s += f.get();
  return s;
}

// ---------------------------------------------------------------------------------------

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& m = *impl_;
  m.tokens = load_tokens(m.opt.tokens_path);
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
    m.geography = std::make_unique<MapGeography>(m.opt.zones_path, m.opt.zones_gcj02, m.opt.urban,
                                                 m.opt.places_path, warnings);
    for (const auto& w : warnings) log_line("map: " + w);
    log_line(fmt::format("map: {} districts, {} places", m.geography->zone_count(), m.geography->place_count()));
    m.engine.set_geography(m.geography.get());
  }
  std::vector<engine::rec::Unit> fleet;
  if (!m.opt.fleet_path.empty()) fleet = load_fleet(m.opt.fleet_path);
  m.store = std::make_unique<data::Store>(m.opt.store);
  m.store->on_commit([&m](std::int64_t us, std::size_t) { m.metrics.commit_latency.observe_us(us); });
  if (!fleet.empty()) m.store->add_units(fleet);
  m.engine.restore(m.store->load(), wall_now());
  for (std::string_view t : {"position", "status", "ack", "decline", "arrived", "cleared", "report",
                             "assign", "cancel", "liability", "close", "delivered", "escalate", "rescue", "claim_paid"})
    m.metrics.messages_in[t];
}

Server::~Server() {
  stop();
}

std::string Server::start() {
  auto& m = *impl_;
  const auto addr = asio::ip::make_address(m.opt.host);
  tcp::endpoint ep(addr, m.opt.port);
  m.acceptor.open(ep.protocol());
  m.acceptor.set_option(asio::socket_base::reuse_address(true));
  m.acceptor.bind(ep);
  m.acceptor.listen(asio::socket_base::max_listen_connections);
  const auto bound = m.acceptor.local_endpoint();
  m.ioc_work.emplace(m.ioc.get_executor());
  m.engine_work.emplace(m.engine_ioc.get_executor());
  m.do_accept();
  m.start_signals();
  asio::post(m.engine_ioc, [&m] {
    m.arm_tick();
    m.arm_flush();
  });
  m.threads.emplace_back([&m] { m.engine_ioc.run(); });
  for (int i = 0; i < std::max(1, m.opt.io_threads); ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                   : bound.address().to_string();
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
  // Stop accepting; let the engine finish what it has; commit; then stop the threads.
  asio::post(m.ioc, [&m] {
    error_code ignored;
    m.acceptor.close(ignored);
    m.signals.cancel(ignored);
  });
  std::promise<void> drained;
  asio::post(m.engine_ioc, [&m, &drained] {
    m.tick_timer.cancel();
    m.flush_timer.cancel();
    m.apply();
    drained.set_value();
  });
  if (!m.threads.empty()) drained.get_future().wait_for(std::chrono::seconds(5));
  m.store->flush();
  // Let released messages reach the sockets before the threads go.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  m.ioc_work.reset();
  m.engine_work.reset();
  m.engine_ioc.stop();
  m.ioc.stop();
  for (auto& t : m.threads)
    if (t.joinable()) t.join();
  m.reads.join();
  m.store.reset();
}

}  // namespace dispatch::net
