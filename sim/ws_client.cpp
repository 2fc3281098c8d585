// The simulator's clients of the server (ws_client.hpp).
#include "sim/ws_client.hpp"

#include <boost/beast/http.hpp>

#include <iostream>

#include "sim/fleet.hpp"

namespace dispatch::sim {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;

Conn::Conn(asio::io_context& ioc, std::string name)
    : ioc_(ioc), ws_(std::make_unique<Ws>(ioc)), retry_(ioc), name_(std::move(name)) {}

void Conn::connect(const std::string& host, const std::string& port, const std::string& path,
                   const std::string& token) {
  path_ = path;
  token_ = token;
  connect_to(host, port);
}

void Conn::start(Handler h, Filter f) {
  handler_ = std::move(h);
  filter_ = std::move(f);
  read();
}

void Conn::send(std::string text) {
  if (!open_.load(std::memory_order_relaxed)) return;
  queued_bytes_.fetch_add(text.size(), std::memory_order_relaxed);
  asio::dispatch(ioc_, [self = shared_from_this(), t = std::move(text)]() mutable {
    self->enqueue(std::move(t));
  });
}

void Conn::close() {
  asio::dispatch(ioc_, [self = shared_from_this()] {
    self->closing_ = true;
    self->retry_.cancel();
    if (!self->open_.exchange(false)) return;
    beast::error_code ec;
    beast::get_lowest_layer(*self->ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  });
}

void Conn::connect_to(const std::string& host, const std::string& port) {
  auto ws = std::make_unique<Ws>(ioc_);
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(host, port);
  beast::get_lowest_layer(*ws).connect(results);
  beast::get_lowest_layer(*ws).socket().set_option(tcp::no_delay(true));
  ws->set_option(websocket::stream_base::decorator([token = token_](websocket::request_type& req) {
    req.set(http::field::authorization, "Bearer " + token);
  }));
  ws->read_message_max(64 << 20);
  // A client masks what it sends, through Beast's write buffer: at the default 4 KiB a
  // gateway's 56 KiB frame of positions took 14 writes (14 system calls, and as many
  // wake-ups of the server's I/O thread); at 64 KiB it takes one.
  ws->write_buffer_bytes(64 * 1024);
  ws->handshake(host + ":" + port, path_);
  ws_ = std::move(ws);
  ++generation_;
  open_ = true;
}

void Conn::reconnect(std::chrono::steady_clock::time_point until) {
  for (std::size_t k = 0; k < servers_.size() && !closing_; ++k) {
    const auto& [h, p] = servers_[next_server_++ % servers_.size()];
    try {
      connect_to(h, p);
      std::cerr << "dispatch-sim: " << name_ << " reconnected to " << h << ":" << p << "\n";
      buf_.consume(buf_.size());
      writing_ = false;
      read();
      if (!q_.empty()) write();
      return;
    } catch (const std::exception&) {
    }
  }
  if (closing_ || std::chrono::steady_clock::now() >= until) return;
  retry_.expires_after(std::chrono::milliseconds(100));
  retry_.async_wait([self = shared_from_this(), until](beast::error_code ec) {
    if (!ec) self->reconnect(until);
  });
}

void Conn::read() {
  ws_->async_read(buf_, [self = shared_from_this(), gen = generation_](beast::error_code ec, std::size_t n) {
    const std::int64_t arrival_us = mono_us();  // before anything else
    if (gen != self->generation_) return;  // a stream replaced by a reconnect
    if (ec) {
      if (self->open_.exchange(false)) {
        std::cerr << "dispatch-sim: " << self->name_ << " closed: " << ec.message() << "\n";
        if (!self->closing_ && !self->servers_.empty())
          self->reconnect(std::chrono::steady_clock::now() + std::chrono::seconds(30));
      }
      return;
    }
    self->frames_read_.fetch_add(1, std::memory_order_relaxed);
    self->bytes_read_.fetch_add(n, std::memory_order_relaxed);
    const auto data = self->buf_.cdata();
    const std::string_view text(static_cast<const char*>(data.data()), data.size());
    if (!self->filter_ || self->filter_(text)) {
      boost::system::error_code jec;
      auto v = json::parse(text, jec);
      if (!jec) {
        if (v.is_array()) {
          for (auto& e : v.get_array())
            if (e.is_object()) self->handler_(e.get_object(), arrival_us);
        } else if (v.is_object()) {
          self->handler_(v.get_object(), arrival_us);
        }
      }
    }
    self->buf_.consume(self->buf_.size());
    self->read();
  });
}

void Conn::enqueue(std::string text) {
  if (!open_.load(std::memory_order_relaxed)) {
    queued_bytes_.fetch_sub(text.size(), std::memory_order_relaxed);
    return;
  }
  q_.push_back(std::move(text));
  if (!writing_) write();
}

void Conn::write() {
  writing_ = true;
  ws_->text(true);
  ws_->async_write(asio::buffer(q_.front()), [self = shared_from_this(), gen = generation_](beast::error_code ec,
                                                                                          std::size_t) {
    if (gen != self->generation_) return;  // a stream replaced by a reconnect
    self->queued_bytes_.fetch_sub(self->q_.front().size(), std::memory_order_relaxed);
    self->q_.pop_front();
    self->writing_ = false;
    if (ec) {
      // The reader sees the same failure and closes (or reconnects).
      for (auto& t : self->q_) self->queued_bytes_.fetch_sub(t.size(), std::memory_order_relaxed);
      self->q_.clear();
      return;
    }
    if (!self->q_.empty()) self->write();
  });
}

std::string http_get(const std::string& host, const std::string& port, const std::string& target) {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  tcp::resolver r(ioc);
  s.connect(r.resolve(host, port));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host);
  http::write(s, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res);
  return res.body();
}

}  // namespace dispatch::sim
