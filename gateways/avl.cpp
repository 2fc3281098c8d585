#include "gateways/avl.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include "gateways/backoff.hpp"
#include "gateways/log.hpp"
#include "gateways/nmea_session.hpp"

namespace dispatch::gateways {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {
constexpr auto tuple = asio::as_tuple(asio::use_awaitable);

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void rethrow(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}
}  // namespace

AvlGateway::AvlGateway(asio::io_context& ioc, AvlOptions opt)
    : ioc_(ioc), opt_(std::move(opt)), backlog_(opt_.backlog_capacity), wake_(ioc), uplink_sleep_(ioc),
      grace_(ioc), gpsd_sleep_(ioc) {}

AvlGateway::~AvlGateway() = default;

void AvlGateway::start() {
  if (opt_.nmea_listen) {
    const auto addr = asio::ip::make_address(opt_.nmea_listen->host);
    acceptor_ = std::make_unique<tcp::acceptor>(ioc_, tcp::endpoint(addr, opt_.nmea_listen->port));
    log("nmea: listening on {}", nmea_endpoint()->str());
    asio::co_spawn(ioc_, nmea_accept_loop(), rethrow);
  }
  if (opt_.gpsd) asio::co_spawn(ioc_, gpsd_loop(), rethrow);
  asio::co_spawn(ioc_, uplink_loop(), rethrow);
}

std::optional<Endpoint> AvlGateway::nmea_endpoint() const {
  if (!acceptor_) return std::nullopt;
  const auto ep = acceptor_->local_endpoint();
  return Endpoint{ep.address().to_string(), ep.port()};
}

void AvlGateway::stop(milliseconds grace) {
  if (stopping_) return;
  stopping_ = true;
  log("stopping: {} positions waiting, {} batches unconfirmed; up to {} ms to send them", backlog_.size(),
      in_flight_.size(), grace.count());
  if (acceptor_) acceptor_->close();
  for (auto* s : nmea_streams_) s->close();
  if (gpsd_stream_) gpsd_stream_->close();
  gpsd_sleep_.cancel();
  uplink_sleep_.cancel();
  wake_writer();
  grace_.expires_after(grace);
  grace_.async_wait([this](beast::error_code ec) {
    if (ec) return;
    if (ws_) beast::get_lowest_layer(*ws_).close();
  });
}

void AvlGateway::push(Position p) {
  ++stats_.received;
  if (backlog_.empty()) oldest_since_ = steady_clock::now();
  backlog_.push(std::move(p));
  report_drops();
  wake_writer();
}

void AvlGateway::wake_writer() { wake_.cancel(); }

void AvlGateway::report_drops() {
  // A full backlog drops a position per new one; one line every few seconds says so.
  if (backlog_.dropped() == drops_reported_) return;
  const auto now = steady_clock::now();
  if (now - drops_reported_at_ < std::chrono::seconds(5)) return;
  log("backlog full ({} positions): dropped {} oldest so far", backlog_.capacity(), backlog_.dropped());
  drops_reported_ = backlog_.dropped();
  drops_reported_at_ = now;
}

asio::awaitable<bool> AvlGateway::sleep(asio::steady_timer& timer, milliseconds d) {
  timer.expires_after(d);
  co_await timer.async_wait(tuple);
  co_return !stopping_;
}

// ---------------------------------------------------------------------------------------
// Uplink: one WebSocket connection at a time, reconnected with back-off.

asio::awaitable<void> AvlGateway::uplink_loop() {
  Backoff backoff(opt_.backoff_min, opt_.backoff_max);
  // Once stopping, a connection under way still delivers what waits; no new attempts.
  ServerRing ring(opt_.servers.empty() ? std::vector<Endpoint>{opt_.server} : opt_.servers);
  for (;;) {
    const Endpoint server = ring.current();
    auto conn = co_await ws_connect(server, "/ws/unit", opt_.token, opt_.connect_timeout);
    if (!conn.ws) {
      if (stopping_) break;
      if (ring.failed()) {
        log("server {}: {}; trying the next one", server.str(), conn.error);
        continue;
      }
      const auto wait = backoff.next();
      log("server {}: {}; {} positions waiting; retry in {} ms", server.str(), conn.error,
          backlog_.size(), wait.count());
      if (!co_await sleep(uplink_sleep_, wait)) break;
      continue;
    }
    ++stats_.connects;
    ring.connected();
    log("connected to ws://{}/ws/unit; {} positions waiting", server.str(), backlog_.size());
    backoff.reset();
    ws_ = conn.ws.get();
    session_alive_ = true;
    // Batches the server read are confirmed by the pong to the ping sent after them:
    // it reads frames in order and answers pings as it reads.
    ws_->control_callback([this](websocket::frame_type kind, beast::string_view payload) {
      if (kind != websocket::frame_type::pong) return;
      std::uint64_t seq = 0;
      for (char c : payload) {
        if (c < '0' || c > '9') return;
        seq = seq * 10 + static_cast<std::uint64_t>(c - '0');
      }
      confirm(seq);
    });
    co_await (uplink_reader(*conn.ws) && uplink_writer(*conn.ws));
    ws_ = nullptr;
    const auto back = in_flight_.size();
    requeue_in_flight();
    if (stopping_) {
      if (backlog_.empty()) log("all positions handed to the server; uplink closed");
      break;
    }
    const auto wait = backoff.next();
    log("disconnected from server; {} unconfirmed batches back in the backlog ({} positions waiting); "
        "reconnect in {} ms",
        back, backlog_.size(), wait.count());
    if (!co_await sleep(uplink_sleep_, wait)) break;
  }
  if (!backlog_.empty()) log("exiting with {} positions unsent", backlog_.size());
  grace_.cancel();  // nothing left for it to cut short
}

void AvlGateway::confirm(std::uint64_t seq) {
  bool freed = false;
  while (!in_flight_.empty() && in_flight_.front().seq <= seq) {
    stats_.confirmed += in_flight_.front().batch.size();
    in_flight_.pop_front();
    freed = true;
  }
  if (freed) wake_writer();
}

void AvlGateway::requeue_in_flight() {
  std::vector<Position> all;
  for (auto& f : in_flight_)
    for (auto& p : f.batch) all.push_back(std::move(p));
  in_flight_.clear();
  if (all.empty()) return;
  stats_.requeued += all.size();
  // The server may have handled some of them already: it ignores a position that is
  // not newer than the one it holds, so sending one twice is harmless.
  backlog_.requeue_front(std::move(all));
  oldest_since_ = steady_clock::time_point{};
  report_drops();
}

asio::awaitable<void> AvlGateway::uplink_reader(WsStream& ws) {
  beast::flat_buffer buffer;
  for (;;) {
    const auto [ec, n] = co_await ws.async_read(buffer, tuple);
    if (ec) {
      if (session_alive_ && !stopping_) log("server connection: {}", ec.message());
      break;
    }
    on_server_message(frame_text(buffer));
    buffer.consume(buffer.size());
  }
  session_alive_ = false;
  beast::get_lowest_layer(ws).close();
  wake_writer();
}

asio::awaitable<void> AvlGateway::uplink_writer(WsStream& ws) {
  while (session_alive_) {
    const bool window_full = in_flight_.size() >= opt_.max_in_flight;
    if (stopping_ && backlog_.empty() && in_flight_.empty()) {
      // Everything confirmed: close cleanly.
      session_alive_ = false;
      co_await ws.async_close(websocket::close_code::going_away, tuple);
      break;
    }
    if (backlog_.empty() || window_full) {
      wake_.expires_at(steady_clock::time_point::max());
      co_await wake_.async_wait(tuple);
      continue;
    }
    if (backlog_.size() < opt_.batch_max && !stopping_) {
      const auto deadline = oldest_since_ + opt_.flush_interval;
      if (steady_clock::now() < deadline) {
        wake_.expires_at(deadline);
        co_await wake_.async_wait(tuple);
        continue;
      }
    }
    auto batch = backlog_.take(opt_.batch_max, opt_.max_frame_bytes);
    if (!backlog_.empty()) oldest_since_ = steady_clock::time_point{};  // the rest waited already
    const std::string text = to_json_batch(batch);
    const std::uint64_t seq = next_seq_++;
    const auto count = batch.size();
    in_flight_.push_back({seq, std::move(batch)});
    ws.text(true);
    if (const auto [ec, n] = co_await ws.async_write(asio::buffer(text), tuple); ec) {
      if (session_alive_) log("sending to server: {}", ec.message());
      break;
    }
    stats_.sent += count;
    const std::string payload = std::to_string(seq);
    if (const auto [ec] = co_await ws.async_ping(websocket::ping_data(payload.c_str()), tuple); ec) break;
  }
  session_alive_ = false;
  beast::get_lowest_layer(ws).close();
}

void AvlGateway::on_server_message(const std::string& text) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec) {
    log("server sent something that is not JSON ({} bytes)", text.size());
    return;
  }
  const auto one = [this](const boost::json::value& m) {
    if (!m.is_object()) return;
    const auto& o = m.get_object();
    const auto str = [&](std::string_view k) -> std::string {
      const auto* f = o.if_contains(k);
      return f && f->is_string() ? std::string(f->get_string()) : std::string();
    };
    const auto type = str("type");
    if (type == "error") {
      ++stats_.server_errors;
      // A unit the server does not know sends an error per position: one line per
      // code and unit every 10 s is enough.
      const auto key = str("code") + "/" + str("ref");
      const auto now = steady_clock::now();
      auto& at = error_logged_at_[key];
      if (now - at >= std::chrono::seconds(10)) {
        at = now;
        log("server error {} for {}: {}", str("code"), str("ref").empty() ? "-" : str("ref"), str("message"));
      }
    } else if (type == "assign" || type == "cancel") {
      log("server sent {} {} for unit {} (radios get it by voice; pagers via dispatch-pager)", type,
          str("assignment"), str("unit"));
    } else {
      log("server sent {}", type.empty() ? "a message without type" : type);
    }
  };
  if (v.is_array())
    for (const auto& m : v.get_array()) one(m);
  else
    one(v);
}

// ---------------------------------------------------------------------------------------
// gpsd: ?WATCH, then one JSON object per line.

asio::awaitable<void> AvlGateway::gpsd_loop() {
  const auto ex = co_await asio::this_coro::executor;
  Backoff backoff(opt_.backoff_min, opt_.backoff_max);
  const auto where = opt_.gpsd->str();
  while (!stopping_) {
    beast::tcp_stream stream(ex);
    gpsd_stream_ = &stream;
    std::string failure;
    tcp::resolver resolver(ex);
    const auto [rerr, endpoints] = co_await resolver.async_resolve(opt_.gpsd->host, std::to_string(opt_.gpsd->port), tuple);
    if (rerr) failure = rerr.message();
    if (failure.empty()) {
      stream.expires_after(opt_.connect_timeout);
      const auto [cerr, ep] = co_await stream.async_connect(endpoints, tuple);
      if (cerr) failure = cerr.message();
    }
    if (failure.empty()) {
      const auto [werr, n] = co_await asio::async_write(stream, asio::buffer(gpsd_watch), tuple);
      if (werr) failure = werr.message();
    }
    if (failure.empty()) {
      log("gpsd {}: connected, watching", where);
      stream.socket().set_option(asio::socket_base::keep_alive(true));
      bool got_line = false;
      std::string buf;
      for (;;) {
        // gpsd may say nothing for long (no receiver attached): no idle timeout.
        stream.expires_never();
        const auto [ec, n] = co_await asio::async_read_until(stream, asio::dynamic_buffer(buf, 1 << 18), '\n', tuple);
        if (ec) {
          failure = ec == asio::error::not_found ? "line too long" : ec.message();
          break;
        }
        if (!got_line) {
          got_line = true;
          backoff.reset();
        }
        on_gpsd_line(std::string_view(buf).substr(0, n));
        buf.erase(0, n);
      }
    }
    gpsd_stream_ = nullptr;
    if (stopping_) break;
    const auto wait = backoff.next();
    log("gpsd {}: {}; retry in {} ms", where, failure, wait.count());
    if (!co_await sleep(gpsd_sleep_, wait)) break;
  }
}

void AvlGateway::on_gpsd_line(std::string_view line) {
  const auto r = parse_gpsd_line(line);
  if (const auto* bad = std::get_if<GpsdBad>(&r)) {
    log("gpsd: ignored a line: {}", bad->reason);
    return;
  }
  if (const auto* other = std::get_if<GpsdOther>(&r)) {
    if (other->cls == "ERROR") log("gpsd error: {}", other->detail);
    if (other->cls == "DEVICE" && !other->detail.empty()) {
      const auto unit = opt_.devices.unit_for(other->detail);
      log("gpsd device {} -> {}", other->detail, unit ? "unit " + *unit : std::string("no unit (ignored)"));
    }
    return;
  }
  const auto& tpv = std::get<GpsdTpv>(r);
  if (!tpv.usable()) return;
  const auto unit = opt_.devices.unit_for(tpv.device);
  if (!unit) {
    if (unmapped_devices_.insert(tpv.device).second)
      log("gpsd device {} has no unit: its fixes are ignored (--device PATH=UNIT or --default-unit)",
          tpv.device);
    return;
  }
  // gpsd may report a cycle more than once; the server wants each instant once.
  auto [it, fresh] = last_gpsd_ts_.try_emplace(tpv.device, *tpv.time_ms);
  if (!fresh) {
    if (*tpv.time_ms <= it->second) return;
    it->second = *tpv.time_ms;
  }
  push(Position{*unit, *tpv.lat, *tpv.lon, *tpv.time_ms, tpv.speed_kmh, tpv.track});
}

// ---------------------------------------------------------------------------------------
// Plain NMEA over TCP: "UNIT <id>", then sentences.

asio::awaitable<void> AvlGateway::nmea_accept_loop() {
  const auto ex = co_await asio::this_coro::executor;
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_->async_accept(tuple);
    if (ec) {
      if (stopping_) break;
      log("nmea: accept: {}", ec.message());
      asio::steady_timer pause(ex, milliseconds(100));
      co_await pause.async_wait(tuple);
      continue;
    }
    asio::co_spawn(ex, nmea_connection(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> AvlGateway::nmea_connection(tcp::socket socket) {
  beast::error_code ignored;
  const auto peer_ep = socket.remote_endpoint(ignored);
  const std::string peer = peer_ep.address().to_string() + ":" + std::to_string(peer_ep.port());
  beast::tcp_stream stream(std::move(socket));
  nmea_streams_.insert(&stream);
  NmeaSession session(now_ms());
  std::string buf, why = "closed by the peer";
  int reported = 0;
  for (;;) {
    stream.expires_after(opt_.nmea_idle_timeout);
    // NMEA sentences are at most 82 characters; 1 KiB leaves room for sloppy senders.
    const auto [ec, n] = co_await asio::async_read_until(stream, asio::dynamic_buffer(buf, 1024), '\n', tuple);
    if (ec) {
      if (ec == asio::error::not_found) why = "line too long";
      else if (ec == beast::error::timeout) why = "idle too long";
      else if (ec != asio::error::eof) why = ec.message();
      break;
    }
    const std::string line = buf.substr(0, n);
    buf.erase(0, n);
    auto result = session.feed(line);
    if (auto* id = std::get_if<NmeaSession::Identified>(&result)) {
      log("nmea {}: speaks for unit {}", peer, id->unit);
      const std::string ok = "OK UNIT " + id->unit + "\r\n";
      co_await asio::async_write(stream, asio::buffer(ok), tuple);
    } else if (auto* p = std::get_if<Position>(&result)) {
      push(std::move(*p));
    } else if (auto* rej = std::get_if<NmeaSession::Rejected>(&result)) {
      if (rej->fatal) {
        why = rej->reason;
        const std::string err = "ERR " + rej->reason + "\r\n";
        co_await asio::async_write(stream, asio::buffer(err), tuple);
        break;
      }
      // The first few bad sentences of a connection are logged, then only counted.
      if (++reported <= 5)
        log("nmea {} (unit {}): rejected: {}{}", peer, session.unit().value_or("?"), rej->reason,
            reported == 5 ? " (further rejections only counted)" : "");
    }
  }
  nmea_streams_.erase(&stream);
  if (stopping_) why = "gateway stopping";
  log("nmea {} (unit {}): {}; {} sentences, {} positions, {} rejected", peer, session.unit().value_or("?"), why,
      session.sentences(), session.positions(), session.rejected());
}

}  // namespace dispatch::gateways
