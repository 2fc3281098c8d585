// dispatch-avl: positions from gpsd and from plain NMEA over TCP, forwarded to the
// server as batched `position` messages on /ws/unit (contract 5.1).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "gateways/endpoint.hpp"
#include "gateways/gpsd.hpp"
#include "gateways/position.hpp"
#include "gateways/ws_client.hpp"

namespace dispatch::gateways {

struct AvlOptions {
  Endpoint server{"127.0.0.1", 8080};
  // More than one dispatchd (contract section 9): tried in turn, from the first; the active
  // one takes the connection, a standby refuses it. Empty: `server` alone.
  std::vector<Endpoint> servers;
  std::string token;
  std::optional<Endpoint> gpsd;  // none: no gpsd
  DeviceMap devices;
  std::optional<Endpoint> nmea_listen;  // none: no NMEA listener
  std::size_t batch_max = 50;           // positions per frame
  std::chrono::milliseconds flush_interval{500};  // longest a position waits for company
  std::size_t backlog_capacity = 10000;
  std::size_t max_frame_bytes = 60 * 1024;  // the server's limit is 64 KiB
  std::size_t max_in_flight = 16;           // batches sent and not yet confirmed
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds backoff_min{250};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds nmea_idle_timeout{300000};
};

struct AvlStats {
  std::uint64_t received = 0;   // positions taken in from gpsd and NMEA
  std::uint64_t sent = 0;       // positions written to the server (again after a reconnect)
  std::uint64_t confirmed = 0;  // positions the server has read (a pong came back after them)
  std::uint64_t requeued = 0;   // positions sent but unconfirmed when a connection broke
  std::uint64_t connects = 0;
  std::uint64_t server_errors = 0;
};

class AvlGateway {
 public:
  AvlGateway(boost::asio::io_context& ioc, AvlOptions opt);
  ~AvlGateway();
  AvlGateway(const AvlGateway&) = delete;
  AvlGateway& operator=(const AvlGateway&) = delete;

  // Binds the NMEA listener (throws when it cannot: a start-up error) and starts.
  void start();
  // Sends what is waiting for at most `grace`, then ends every loop so that
  // io_context::run() returns.
  void stop(std::chrono::milliseconds grace);

  std::optional<Endpoint> nmea_endpoint() const;
  // Call on the io_context's thread.
  void push(Position p);
  const AvlStats& stats() const { return stats_; }
  const Backlog& backlog() const { return backlog_; }
  bool connected() const { return ws_ != nullptr; }

 private:
  struct InFlight {
    std::uint64_t seq;
    std::vector<Position> batch;
  };

  boost::asio::awaitable<void> uplink_loop();
  boost::asio::awaitable<void> uplink_reader(WsStream& ws);
  boost::asio::awaitable<void> uplink_writer(WsStream& ws);
  void on_server_message(const std::string& text);
  void confirm(std::uint64_t seq);
  void requeue_in_flight();
  void wake_writer();

  boost::asio::awaitable<void> gpsd_loop();
  void on_gpsd_line(std::string_view line);
  boost::asio::awaitable<void> nmea_accept_loop();
  boost::asio::awaitable<void> nmea_connection(boost::asio::ip::tcp::socket socket);

  boost::asio::awaitable<bool> sleep(boost::asio::steady_timer& timer, std::chrono::milliseconds d);
  void report_drops();

  boost::asio::io_context& ioc_;
  AvlOptions opt_;
  Backlog backlog_;
  AvlStats stats_;
  bool stopping_ = false;

  // Uplink state.
  WsStream* ws_ = nullptr;
  bool session_alive_ = false;
  std::deque<InFlight> in_flight_;
  std::uint64_t next_seq_ = 1;
  std::chrono::steady_clock::time_point oldest_since_{};
  boost::asio::steady_timer wake_;
  boost::asio::steady_timer uplink_sleep_;
  boost::asio::steady_timer grace_;
  std::uint64_t drops_reported_ = 0;
  std::chrono::steady_clock::time_point drops_reported_at_{};
  std::map<std::string, std::chrono::steady_clock::time_point> error_logged_at_;

  // gpsd state.
  boost::beast::tcp_stream* gpsd_stream_ = nullptr;
  boost::asio::steady_timer gpsd_sleep_;
  std::set<std::string> unmapped_devices_;
  std::map<std::string, std::int64_t> last_gpsd_ts_;

  // NMEA state.
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::set<boost::beast::tcp_stream*> nmea_streams_;
};

}  // namespace dispatch::gateways
