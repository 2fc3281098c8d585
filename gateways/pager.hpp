// dispatch-pager: pages from the server (/ws/pager, contract 5.5) handed to a paging
// terminal over SNPP; `delivered` goes back only once the terminal took the page.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <unordered_set>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "gateways/backoff.hpp"
#include "gateways/endpoint.hpp"
#include "gateways/ws_client.hpp"

namespace dispatch::gateways {

struct Page {
  std::string id, unit, capcode, assignment, text;
};

// A `page` message; nullopt when a required field is missing or not a string.
std::optional<Page> parse_page(std::string_view json_object_text);

// Page ids the terminal has accepted. With a file, it survives a restart of the
// gateway, so that a page the server sends again (its `delivered` was lost) is
// acknowledged without paging the team twice.
class DeliveredLog {
 public:
  // path empty: memory only. Throws std::runtime_error when the file cannot be opened.
  explicit DeliveredLog(std::string path, std::size_t keep = 10000);
  ~DeliveredLog();
  DeliveredLog(const DeliveredLog&) = delete;
  DeliveredLog& operator=(const DeliveredLog&) = delete;
  bool contains(const std::string& id) const { return ids_.contains(id); }
  // Written and flushed to the disk before it returns.
  void add(const std::string& id);
  std::size_t size() const { return ids_.size(); }

 private:
  void remember(const std::string& id);
  std::string path_;
  std::size_t keep_;
  std::deque<std::string> order_;
  std::unordered_set<std::string> ids_;
  int fd_ = -1;
};

struct PagerOptions {
  Endpoint server{"127.0.0.1", 8080};
  // More than one dispatchd (contract section 9): tried in turn, from the first; the active
  // one takes the connection, a standby refuses it. Empty: `server` alone.
  std::vector<Endpoint> servers;
  std::string token;
  Endpoint terminal{"127.0.0.1", 444};
  std::string state_path;  // DeliveredLog file; empty: memory only
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds snpp_step_timeout{10000};
  std::chrono::milliseconds backoff_min{250};    // server reconnects and page retries
  std::chrono::milliseconds backoff_max{30000};
};

struct PagerStats {
  std::uint64_t received = 0;    // page messages from the server
  std::uint64_t duplicates = 0;  // pages already queued or delivered
  std::uint64_t delivered = 0;   // 250 to SEND
  std::uint64_t failures = 0;    // SNPP attempts that failed
  std::uint64_t acks_sent = 0;   // `delivered` messages written to the server
  std::uint64_t connects = 0;
};

class PagerGateway {
 public:
  PagerGateway(boost::asio::io_context& ioc, PagerOptions opt);
  PagerGateway(const PagerGateway&) = delete;
  PagerGateway& operator=(const PagerGateway&) = delete;

  void start();
  // Finishes the SNPP session under way and sends the pending `delivered` messages
  // for at most `grace`, then ends every loop.
  void stop(std::chrono::milliseconds grace);

  const PagerStats& stats() const { return stats_; }
  std::size_t queued() const { return queue_.size(); }
  std::size_t acks_pending() const { return acks_.size(); }

 private:
  struct Pending {
    Page page;
    Backoff backoff;
    std::chrono::steady_clock::time_point next_attempt;
    int attempts = 0;
  };

  boost::asio::awaitable<void> uplink_loop();
  boost::asio::awaitable<void> uplink_reader(WsStream& ws);
  boost::asio::awaitable<void> uplink_writer(WsStream& ws);
  void on_server_message(const std::string& text);
  void on_page(Page page);
  boost::asio::awaitable<void> delivery_loop();

  boost::asio::io_context& ioc_;
  PagerOptions opt_;
  DeliveredLog delivered_;
  PagerStats stats_;
  bool stopping_ = false;
  bool delivering_ = false;

  std::deque<Pending> queue_;
  std::deque<std::string> acks_;

  WsStream* ws_ = nullptr;
  bool session_alive_ = false;
  boost::asio::steady_timer wake_writer_;
  boost::asio::steady_timer wake_delivery_;
  boost::asio::steady_timer uplink_sleep_;
  boost::asio::steady_timer grace_;
};

}  // namespace dispatch::gateways
