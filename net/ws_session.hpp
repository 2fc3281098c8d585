// A WebSocket session: one per connection of any role. On its strand: the handshake (with
// the bytes the HTTP session had already read), reads with a frame limit, a message-counted
// rate limit, parsing, at most two frames in flight to the engine thread (then it stops
// reading: the socket's buffer is the queue), one write in flight, and a bounded outgoing
// queue: a connection that does not read is closed with 1008 and a reason.
#pragma once

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>

#include "net/connection_slots.hpp"
#include "net/rate_limiter.hpp"
#include "net/stream_ops.hpp"
#include "net/server_impl.hpp"

namespace dispatch::net {

// Over beast::tcp_stream in dispatchd and beast::test::stream in the tests; the members are
// defined in ws_session.ipp.
template <class Stream>
class BasicWsSession : public Peer {
 public:
  using Ops = StreamOps<Stream>;

  BasicWsSession(Server::Impl& srv, Stream&& stream, std::shared_ptr<ConnectionSlots::Ticket> ticket);
  ~BasicWsSession() override;

  // `raw` holds the upgrade request as received and any bytes after it (a first frame
  // sent in the same TCP write as the request).
  void start(std::string raw);

  void deliver(Text msg, const engine::Payload* payload) override;
  void deliver_many(std::vector<Text> msgs) override;
  void deliver_run(std::shared_ptr<const FrameRun> run) override;
  void deliver_snapshot(Text msg) override;
  void drop(std::string reason) override;
  void frame_taken() override;

 private:
  std::shared_ptr<BasicWsSession> self() { return std::static_pointer_cast<BasicWsSession>(shared_from_this()); }
  void on_accept(boost::system::error_code ec);
  void do_read();
  void on_read(boost::system::error_code ec);
  void tell_rate_limited();
  // What waits to be written: one message, or a run of them (`next` is the one to write).
  struct Queued {
    Text text;
    std::shared_ptr<const FrameRun> run;
    std::size_t next = 0;
    bool snapshot = false;  // counted in snapshot_bytes too
    std::string_view current() const { return run ? run->at(next) : std::string_view(*text); }
    bool done() const { return run ? next >= run->size() : next != 0; }
    std::size_t rest_bytes() const {
      if (!run) return next == 0 ? text->size() : 0;
      std::size_t n = 0;
      for (std::size_t i = next; i < run->size(); ++i) n += run->spans[i].second;
      return n;
    }
  };
  void enqueue(Text msg);
  void enqueue(Queued q, std::size_t bytes);
  void clear_queue();
  void forget(const Queued& q);  // q leaves the queue unwritten
  void write_next();
  void on_write(boost::system::error_code ec);
  void close_now(std::string reason);
  void send_close();

  Server::Impl& srv_;
  boost::beast::websocket::stream<Stream> ws_;
  std::shared_ptr<ConnectionSlots::Ticket> ticket_;
  std::string raw_;
  boost::beast::flat_buffer buffer_;
  std::deque<Queued> queue_;
  std::size_t max_queued_;
  RateLimiter limiter_;
  int in_flight_ = 0;  // frames posted to the engine thread, not yet taken
  bool reading_paused_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool registered_ = false;
  std::string close_reason_;
};

using WsSession = BasicWsSession<boost::beast::tcp_stream>;
extern template class BasicWsSession<boost::beast::tcp_stream>;

}  // namespace dispatch::net
