// BasicWsSession's members (see ws_session.hpp); included where it is instantiated.
#pragma once

#include "net/ws_session.hpp"

#include <fmt/format.h>

namespace dispatch::net {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace detail {
inline constexpr int max_in_flight = 2;

inline double rate_of(const ServerOptions& o, Role r) { return info(r).bulk ? o.bulk_rate_per_s : o.rate_per_s; }
}  // namespace detail

template <class Stream>
BasicWsSession<Stream>::BasicWsSession(Server::Impl& srv, Stream&& stream, std::shared_ptr<ConnectionSlots::Ticket> ticket)
    : srv_(srv),
      ws_(std::move(stream)),
      ticket_(std::move(ticket)),
      max_queued_(0),
      limiter_(1, 1) {}

template <class Stream>
BasicWsSession<Stream>::~BasicWsSession() {
  if (registered_) srv_.metrics.open_by_role[static_cast<std::size_t>(role)].fetch_sub(1);
}

template <class Stream>
void BasicWsSession<Stream>::start(std::string raw) {
  raw_ = std::move(raw);
  max_queued_ = role == Role::console ? srv_.opt.console_hard_bytes : info(role).max_queued_bytes;
  const double rate = detail::rate_of(srv_.opt, role);
  limiter_ = RateLimiter(rate, 2 * rate);
  Ops::expires_never(beast::get_lowest_layer(ws_));
  websocket::stream_base::timeout t{};
  t.handshake_timeout = srv_.opt.handshake_timeout;
  t.idle_timeout = srv_.opt.idle_timeout;
  t.keep_alive_pings = true;
  ws_.set_option(t);
  ws_.read_message_max(srv_.opt.max_frame_bytes);
  // Beast splits a message into frames of its write buffer's size, a write each: at the
  // default 4 KiB a console's 48 KiB batch took 12 system calls on the I/O thread. At 64 KiB
  // every message but a large snapshot is one frame in one write; a snapshot still goes in
  // fragments, so that a ping can pass between them on a slow link. (A server does not
  // mask, so this buffer is never allocated: it only sets the fragment size.)
  ws_.write_buffer_bytes(64 * 1024);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "dispatchd"); }));
  inc(srv_.metrics.connections_by_role[static_cast<std::size_t>(role)]);
  srv_.metrics.open_by_role[static_cast<std::size_t>(role)].fetch_add(1);
  registered_ = true;
  // The request again, and whatever came after it in the same reads: Beast parses the
  // handshake from these bytes and keeps the rest as the start of the first frame.
  ws_.async_accept(asio::buffer(raw_), [s = self()](error_code ec) { s->on_accept(ec); });
}

template <class Stream>
void BasicWsSession<Stream>::on_accept(error_code ec) {
  raw_.clear();
  raw_.shrink_to_fit();
  if (ec) return;
  srv_.register_peer(shared_from_this());
  do_read();
}

template <class Stream>
void BasicWsSession<Stream>::do_read() {
  if (closing_ || srv_.input_closed.load()) return;
  if (in_flight_ >= detail::max_in_flight) {
    reading_paused_ = true;  // the engine is behind: the socket's buffer holds the rest
    return;
  }
  ws_.async_read(buffer_, [s = self()](error_code ec, std::size_t) { s->on_read(ec); });
}

template <class Stream>
void BasicWsSession<Stream>::frame_taken() {
  asio::post(ws_.get_executor(), [s = self()] {
    --s->in_flight_;
    if (s->reading_paused_) {
      s->reading_paused_ = false;
      s->do_read();
    }
  });
}

template <class Stream>
void BasicWsSession<Stream>::tell_rate_limited() {
  inc(srv_.metrics.rate_limited);
  if (!limiter_.may_tell(srv_.clock_us())) return;
  srv_.metrics.error(engine::ErrorCode::rate_limited);
  enqueue(std::make_shared<const std::string>(render_error(
      {engine::ErrorCode::rate_limited,
       fmt::format("more than {} messages per second; messages dropped", detail::rate_of(srv_.opt, role)), {}})));
}

template <class Stream>
void BasicWsSession<Stream>::on_read(error_code ec) {
  if (ec) {
    // 1009 (frame too big), 1007 (invalid UTF-8) and the rest are sent by Beast itself.
    srv_.unregister_peer(id, role);
    return;
  }
  inc(srv_.metrics.frames_in);
  const auto now = srv_.clock_us();
  if (!ws_.got_text()) {
    // A binary frame is one message, and a bad one.
    buffer_.consume(buffer_.size());
    if (!limiter_.take(1, now)) {
      tell_rate_limited();
    } else {
      srv_.metrics.error(engine::ErrorCode::bad_json);
      enqueue(std::make_shared<const std::string>(
          render_error({engine::ErrorCode::bad_json, "frames must be UTF-8 JSON text", {}})));
    }
    return do_read();
  }
  if (limiter_.empty(now)) {
    // Over the limit already: not even parsed.
    inc(srv_.metrics.frames_dropped);
    buffer_.consume(buffer_.size());
    tell_rate_limited();
    return do_read();
  }
  auto data = buffer_.cdata();
  const std::string_view text(static_cast<const char*>(data.data()), data.size());
  auto frame = std::make_shared<ParsedFrame>();
  parse_frame(text, std::optional<Role>(role), *frame);
  buffer_.consume(buffer_.size());
  frame->read_us = now;
  const auto parsed = srv_.clock_us();
  srv_.metrics.stage_parse.observe_us(parsed - now);
  if (!limiter_.take(frame->messages, parsed)) {
    inc(srv_.metrics.frames_dropped);
    tell_rate_limited();
    return do_read();
  }
  for (auto t : frame->types) {
    auto it = srv_.metrics.messages_in.find(t);
    if (it != srv_.metrics.messages_in.end()) inc(it->second);
  }
  // Counted before the check, so that stop() either sees this frame counted or this
  // session sees the input closed (then the frame is dropped, unanswered: the sender never
  // had it confirmed, as no pong or answer follows it).
  srv_.frames_to_engine.fetch_add(1);
  if (srv_.input_closed.load()) {
    srv_.frames_to_engine.fetch_sub(1);
    return;
  }
  ++in_flight_;
  // A gateway's or unit's frames (positions) take the bulk lane, all of them, so that its
  // own frames stay in order; everybody else's go straight to the engine thread.
  srv_.post_frame(self(), std::move(frame), parsed, role == Role::gateway || role == Role::unit);
  do_read();
}

template <class Stream>
void BasicWsSession<Stream>::deliver(Text msg, const engine::Payload*) {
  queued_bytes.fetch_add(msg->size(), std::memory_order_relaxed);
  asio::post(ws_.get_executor(), [s = self(), msg = std::move(msg)]() mutable {
    s->queued_bytes.fetch_sub(msg->size(), std::memory_order_relaxed);
    s->enqueue(std::move(msg));
  });
}

template <class Stream>
void BasicWsSession<Stream>::deliver_many(std::vector<Text> msgs) {
  if (msgs.empty()) return;
  std::size_t bytes = 0;
  for (auto& m : msgs) bytes += m->size();
  queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
  asio::post(ws_.get_executor(), [s = self(), msgs = std::move(msgs), bytes]() mutable {
    s->queued_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    for (auto& m : msgs) s->enqueue(std::move(m));
  });
}

template <class Stream>
void BasicWsSession<Stream>::deliver_run(std::shared_ptr<const FrameRun> run) {
  if (run->size() == 0) return;
  const std::size_t bytes = run->bytes;
  queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
  asio::post(ws_.get_executor(), [s = self(), run = std::move(run), bytes]() mutable {
    s->queued_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    s->enqueue(Queued{nullptr, std::move(run)}, bytes);
  });
}

template <class Stream>
void BasicWsSession<Stream>::deliver_snapshot(Text msg) {
  const std::size_t bytes = msg->size();
  snapshot_bytes.fetch_add(bytes, std::memory_order_relaxed);
  queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
  asio::post(ws_.get_executor(), [s = self(), msg = std::move(msg), bytes]() mutable {
    s->queued_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    if (s->closing_) {
      s->snapshot_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      return;
    }
    s->queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
    s->queue_.push_back(Queued{std::move(msg), nullptr, 0, true});
    if (!s->writing_) s->write_next();
  });
}

// On the strand. queued_bytes counts what is in queue_ (and what is on its way to it).
template <class Stream>
void BasicWsSession<Stream>::enqueue(Text msg) {
  const std::size_t bytes = msg->size();
  enqueue(Queued{std::move(msg), nullptr}, bytes);
}

template <class Stream>
void BasicWsSession<Stream>::enqueue(Queued q, std::size_t bytes) {
  if (closing_) return;
  // A snapshot still queued (or on its way) does not count against the bound.
  const std::size_t now_queued = queued_bytes.load(std::memory_order_relaxed) + bytes;
  if (now_queued - std::min(now_queued, snapshot_bytes.load(std::memory_order_relaxed)) > max_queued_) {
    log_line(fmt::format("{} connection {} closed: {} bytes queued and it does not read", to_string(role), id,
                         now_queued));
    return close_now("too slow: outgoing queue over its limit");
  }
  queued_bytes.fetch_add(bytes, std::memory_order_relaxed);
  queue_.push_back(std::move(q));
  if (!writing_) write_next();
}

template <class Stream>
void BasicWsSession<Stream>::write_next() {
  writing_ = true;
  ws_.text(true);
  const std::string_view m = queue_.front().current();
  ws_.async_write(asio::buffer(m.data(), m.size()), [s = self()](error_code ec, std::size_t) { s->on_write(ec); });
}

template <class Stream>
void BasicWsSession<Stream>::forget(const Queued& q) {
  queued_bytes.fetch_sub(q.rest_bytes(), std::memory_order_relaxed);
  if (q.snapshot && !q.done()) snapshot_bytes.fetch_sub(q.text->size(), std::memory_order_relaxed);
}

template <class Stream>
void BasicWsSession<Stream>::clear_queue() {
  for (auto& q : queue_) forget(q);
  queue_.clear();
}

template <class Stream>
void BasicWsSession<Stream>::on_write(error_code ec) {
  Queued& front = queue_.front();
  queued_bytes.fetch_sub(front.current().size(), std::memory_order_relaxed);
  if (front.snapshot) snapshot_bytes.fetch_sub(front.text->size(), std::memory_order_relaxed);
  ++front.next;
  if (front.done()) queue_.pop_front();
  writing_ = false;
  if (ec) return clear_queue();
  if (closing_) {
    clear_queue();  // the rest of a run that was being written
    return send_close();
  }
  if (!queue_.empty()) write_next();
}

template <class Stream>
void BasicWsSession<Stream>::drop(std::string reason) {
  asio::post(ws_.get_executor(), [s = self(), reason = std::move(reason)]() mutable { s->close_now(std::move(reason)); });
}

// Drops what waits behind the write in flight and closes with 1008 and the reason. A peer
// that reads nothing never lets that write finish: after 2 s the socket is cut.
template <class Stream>
void BasicWsSession<Stream>::close_now(std::string reason) {
  if (closing_) return;
  closing_ = true;
  // Every close of ours is for not keeping up; counted once per connection.
  inc(role == Role::console ? srv_.metrics.consoles_dropped : srv_.metrics.slow_closed);
  while (queue_.size() > (writing_ ? 1u : 0u)) {
    forget(queue_.back());
    queue_.pop_back();
  }
  close_reason_ = std::move(reason);
  if (!writing_) send_close();
  auto timer = std::make_shared<asio::steady_timer>(ws_.get_executor());
  timer->expires_after(std::chrono::seconds(2));
  timer->async_wait([s = self(), timer](error_code) { Ops::close(beast::get_lowest_layer(s->ws_)); });
}

template <class Stream>
void BasicWsSession<Stream>::send_close() {
  ws_.async_close(websocket::close_reason(websocket::close_code::policy_error, close_reason_),
                  [s = self()](error_code) {});
}

}  // namespace dispatch::net
