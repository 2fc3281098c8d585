// The simulator's clients of the server: a WebSocket connection (ws_client.cpp) and a
// plain HTTP GET. Beast and Asio: included by dispatch-sim's own files only (sim_run.hpp).
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dispatch::sim {

// A WebSocket client connection, owned by the io_context it was made on: async read loop,
// one write in flight, a send queue. send() and close() may be called from any thread
// (they are dispatched onto the connection's own thread). The read handler gets the time
// the frame was read (mono_us), taken first thing in the completion, before any parsing.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  using Handler = std::function<void(const boost::json::object&, std::int64_t arrival_us)>;
  using Filter = std::function<bool(std::string_view)>;  // false: not worth parsing
  Conn(boost::asio::io_context& ioc, std::string name);

  // Synchronous; before the connection's thread runs.
  void connect(const std::string& host, const std::string& port, const std::string& path, const std::string& token);
  // Several dispatchd (contract section 9): when the connection drops, the others are
  // tried in turn (a standby refuses the upgrade) until one takes it, for up to 30 s.
  void set_servers(std::vector<std::pair<std::string, std::string>> servers) { servers_ = std::move(servers); }
  void start(Handler h, Filter f = {});
  void send(std::string text);
  void close();
  bool open() const { return open_.load(std::memory_order_relaxed); }
  std::size_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }
  std::uint64_t frames_read() const { return frames_read_.load(std::memory_order_relaxed); }
  std::uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }

 private:
  using Ws = boost::beast::websocket::stream<boost::beast::tcp_stream>;

  void connect_to(const std::string& host, const std::string& port);
  // On the connection's thread, after it dropped: the next server, then the others.
  void reconnect(std::chrono::steady_clock::time_point until);
  void read();
  void enqueue(std::string text);
  void write();

  boost::asio::io_context& ioc_;
  std::unique_ptr<Ws> ws_;
  boost::asio::steady_timer retry_;
  std::uint64_t generation_ = 0;
  bool closing_ = false;
  std::string path_, token_;
  std::vector<std::pair<std::string, std::string>> servers_;
  std::size_t next_server_ = 0;
  boost::beast::flat_buffer buf_;
  std::deque<std::string> q_;
  std::atomic<std::size_t> queued_bytes_{0};
  std::atomic<std::uint64_t> frames_read_{0}, bytes_read_{0};
  bool writing_ = false;
  std::atomic<bool> open_{false};
  std::string name_;
  Handler handler_;
  Filter filter_;
};

// GET `target` (HTTP/1.1, one request on its own connection); the body.
std::string http_get(const std::string& host, const std::string& port, const std::string& target);

}  // namespace dispatch::sim
