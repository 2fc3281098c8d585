#include "net/listener.hpp"

#include <fmt/format.h>

#include "net/server_impl.hpp"

namespace dispatch::net {

using tcp = asio::ip::tcp;
using boost::system::error_code;

Listener::Listener(asio::io_context& ioc, ConnectionSlots::Limits limits, Metrics& metrics, Handler on_socket)
    : ioc_(ioc),
      acceptor_(asio::make_strand(ioc)),
      backoff_(acceptor_.get_executor()),
      slots_(ConnectionSlots::make(limits)),
      metrics_(metrics),
      on_socket_(std::move(on_socket)) {}

tcp::endpoint Listener::listen(const tcp::endpoint& ep) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  return acceptor_.local_endpoint();
}

void Listener::start() {
  asio::dispatch(acceptor_.get_executor(), [this] { do_accept(); });
}

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [this] {
    error_code ignored;
    backoff_.cancel();
    acceptor_.close(ignored);
  });
}

void Listener::do_accept() {
  acceptor_.async_accept(asio::make_strand(ioc_),
                         [this](error_code ec, Socket socket) { on_accept(ec, std::move(socket)); });
}

void Listener::on_accept(error_code ec, Socket socket) {
  if (!acceptor_.is_open()) return;
  if (ec) {
    // Out of file descriptors (or another resource): accepting again at once would spin on
    // the same error. Wait a little; connections queue in the backlog meanwhile.
    if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system ||
        ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
      inc(metrics_.accept_backoffs);
      if (!warned_) log_line(fmt::format("accept: {}; backing off", ec.message()));
      warned_ = true;
      backoff_.expires_after(std::chrono::milliseconds(100));
      backoff_.async_wait([this](error_code e) {
        if (!e && acceptor_.is_open()) do_accept();
      });
      return;
    }
    return do_accept();  // the peer gave up before we took it: nothing to do
  }
  warned_ = false;
  // Small messages (accepted, assign) go out at once: without this, Nagle's algorithm holds
  // a second one back until the first is acknowledged, and a delayed ACK makes that 40 ms.
  error_code nodelay_ec;
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  error_code addr_ec;
  const auto remote = socket.remote_endpoint(addr_ec);
  const std::string peer = addr_ec ? std::string("?") : remote.address().to_string();
  std::shared_ptr<ConnectionSlots::Ticket> ticket;
  const auto verdict = slots_->admit(peer, ticket);
  if (verdict != ConnectionSlots::Verdict::admitted) {
    inc(metrics_.connections_refused);
    static const std::string busy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
        "Connection: close\r\n\r\nover the cap";
    error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(busy), ignored);  // best effort, never blocks
    socket.close(ignored);
  } else {
    on_socket_(std::move(socket), std::move(ticket));
  }
  do_accept();
}

}  // namespace dispatch::net
