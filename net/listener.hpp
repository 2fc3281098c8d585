// The listener: accepts connections, applies the connection caps (ConnectionSlots), backs
// off when the process is out of file descriptors instead of spinning, and hands each
// admitted socket to a new HTTP session.
#pragma once

#include <boost/asio.hpp>
#include <memory>

#include "net/connection_slots.hpp"

namespace dispatch::net {

struct Metrics;

class Listener {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  using Handler = std::function<void(Socket&&, std::shared_ptr<ConnectionSlots::Ticket>)>;

  Listener(boost::asio::io_context& ioc, ConnectionSlots::Limits limits, Metrics& metrics, Handler on_socket);
  // Binds and listens; returns the bound endpoint.
  boost::asio::ip::tcp::endpoint listen(const boost::asio::ip::tcp::endpoint& ep);
  void start();
  // Thread-safe: closes the acceptor (posted to its executor).
  void stop();
  ConnectionSlots& slots() { return *slots_; }

 private:
  void do_accept();
  void on_accept(boost::system::error_code ec, Socket socket);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer backoff_;
  std::shared_ptr<ConnectionSlots> slots_;
  Metrics& metrics_;
  Handler on_socket_;
  bool warned_ = false;
};

}  // namespace dispatch::net
