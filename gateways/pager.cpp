#include "gateways/pager.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include "gateways/log.hpp"
#include "gateways/snpp.hpp"

namespace dispatch::gateways {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {
constexpr auto tuple = asio::as_tuple(asio::use_awaitable);

void rethrow(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}

std::optional<std::string> string_of(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->get_string());
}

std::optional<Page> page_of(const boost::json::object& o) {
  auto id = string_of(o, "page"), unit = string_of(o, "unit"), capcode = string_of(o, "capcode");
  if (!id || id->empty() || !capcode || capcode->empty()) return std::nullopt;
  return Page{*id, unit.value_or(""), *capcode, string_of(o, "assignment").value_or(""),
              string_of(o, "text").value_or("")};
}
}  // namespace

std::optional<Page> parse_page(std::string_view text) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return page_of(v.get_object());
}

// ---------------------------------------------------------------------------------------

DeliveredLog::DeliveredLog(std::string path, std::size_t keep) : path_(std::move(path)), keep_(keep) {
  if (path_.empty()) return;
  std::size_t lines = 0;
  {
    std::ifstream in(path_);
    for (std::string id; std::getline(in, id);) {
      if (id.empty()) continue;
      remember(id);
      ++lines;
    }
  }
  if (lines > 2 * keep_) {
    // Rewrite with only what is remembered, atomically.
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& id : order_) out << id << '\n';
      if (!out) throw std::runtime_error("cannot write " + tmp);
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0)
      throw std::runtime_error("cannot replace " + path_ + ": " + std::strerror(errno));
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path_ + ": " + std::strerror(errno));
}

DeliveredLog::~DeliveredLog() {
  if (fd_ >= 0) ::close(fd_);
}

void DeliveredLog::remember(const std::string& id) {
  if (!ids_.insert(id).second) return;
  order_.push_back(id);
  while (order_.size() > keep_) {
    ids_.erase(order_.front());
    order_.pop_front();
  }
}

void DeliveredLog::add(const std::string& id) {
  remember(id);
  if (fd_ < 0) return;
  const std::string line = id + "\n";
  // A failed write only costs a second page to the team after a restart: log it,
  // do not stop delivering.
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fdatasync(fd_) != 0)
    log("cannot record page {} in {}: {}", id, path_, std::strerror(errno));
}

// ---------------------------------------------------------------------------------------

PagerGateway::PagerGateway(asio::io_context& ioc, PagerOptions opt)
    : ioc_(ioc), opt_(std::move(opt)), delivered_(opt_.state_path), wake_writer_(ioc), wake_delivery_(ioc),
      uplink_sleep_(ioc), grace_(ioc) {}

void PagerGateway::start() {
  if (!opt_.state_path.empty())
    log("{} delivered page ids remembered from {}", delivered_.size(), opt_.state_path);
  asio::co_spawn(ioc_, uplink_loop(), rethrow);
  asio::co_spawn(ioc_, delivery_loop(), rethrow);
}

void PagerGateway::stop(milliseconds grace) {
  if (stopping_) return;
  stopping_ = true;
  log("stopping: {} pages not yet delivered (the server sends them again), {} acknowledgements to send",
      queue_.size(), acks_.size());
  uplink_sleep_.cancel();
  wake_delivery_.cancel();
  wake_writer_.cancel();
  grace_.expires_after(grace);
  grace_.async_wait([this](beast::error_code ec) {
    if (ec) return;
    if (ws_) beast::get_lowest_layer(*ws_).close();
  });
}

// ---------------------------------------------------------------------------------------
// The server side.

asio::awaitable<void> PagerGateway::uplink_loop() {
  Backoff backoff(opt_.backoff_min, opt_.backoff_max);
  ServerRing ring(opt_.servers.empty() ? std::vector<Endpoint>{opt_.server} : opt_.servers);
  while (!stopping_) {
    const Endpoint server = ring.current();
    auto conn = co_await ws_connect(server, "/ws/pager", opt_.token, opt_.connect_timeout);
    if (!conn.ws) {
      if (ring.failed()) {
        log("server {}: {}; trying the next one", server.str(), conn.error);
        continue;
      }
      const auto wait = backoff.next();
      log("server {}: {}; retry in {} ms", server.str(), conn.error, wait.count());
      uplink_sleep_.expires_after(wait);
      co_await uplink_sleep_.async_wait(tuple);
      continue;
    }
    ++stats_.connects;
    backoff.reset();
    ring.connected();
    log("connected to ws://{}/ws/pager; {} pages queued, {} acknowledgements to send", server.str(),
        queue_.size(), acks_.size());
    ws_ = conn.ws.get();
    session_alive_ = true;
    co_await (uplink_reader(*conn.ws) && uplink_writer(*conn.ws));
    ws_ = nullptr;
    if (stopping_) break;
    const auto wait = backoff.next();
    log("disconnected from server; reconnect in {} ms", wait.count());
    uplink_sleep_.expires_after(wait);
    co_await uplink_sleep_.async_wait(tuple);
  }
  if (!acks_.empty()) log("exiting with {} acknowledgements unsent (the server will page again)", acks_.size());
  grace_.cancel();  // nothing left for it to cut short
}

asio::awaitable<void> PagerGateway::uplink_reader(WsStream& ws) {
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
  wake_writer_.cancel();
}

asio::awaitable<void> PagerGateway::uplink_writer(WsStream& ws) {
  while (session_alive_) {
    if (acks_.empty()) {
      if (stopping_ && !delivering_) {
        session_alive_ = false;
        co_await ws.async_close(websocket::close_code::going_away, tuple);
        break;
      }
      wake_writer_.expires_at(steady_clock::time_point::max());
      co_await wake_writer_.async_wait(tuple);
      continue;
    }
    const std::string id = acks_.front();
    boost::json::object msg{{"type", "delivered"}, {"page", id}};
    const std::string text = boost::json::serialize(msg);
    ws.text(true);
    if (const auto [ec, n] = co_await ws.async_write(asio::buffer(text), tuple); ec) {
      if (session_alive_) log("sending to server: {}", ec.message());
      break;
    }
    // Written is enough: were it lost, the server pages again and the page is
    // found among the delivered ones and acknowledged again.
    if (!acks_.empty() && acks_.front() == id) acks_.pop_front();
    ++stats_.acks_sent;
    log("page {}: reported delivered to the server", id);
  }
  session_alive_ = false;
  beast::get_lowest_layer(ws).close();
}

void PagerGateway::on_server_message(const std::string& text) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec) {
    log("server sent something that is not JSON ({} bytes)", text.size());
    return;
  }
  const auto one = [this](const boost::json::value& m) {
    if (!m.is_object()) return;
    const auto& o = m.get_object();
    const auto type = string_of(o, "type").value_or("");
    if (type == "page") {
      if (auto p = page_of(o)) on_page(std::move(*p));
      else log("server sent a page without page id or capcode: {}", boost::json::serialize(o));
    } else if (type == "error") {
      log("server error {} for {}: {}", string_of(o, "code").value_or("?"), string_of(o, "ref").value_or("-"),
          string_of(o, "message").value_or(""));
    } else {
      log("server sent {}", type.empty() ? std::string("a message without type") : type);
    }
  };
  if (v.is_array())
    for (const auto& m : v.get_array()) one(m);
  else
    one(v);
}

void PagerGateway::on_page(Page page) {
  ++stats_.received;
  if (delivered_.contains(page.id)) {
    // Our `delivered` did not reach it (or not in time): say it again, page no one.
    ++stats_.duplicates;
    log("page {}: already delivered; acknowledging again", page.id);
    acks_.push_back(page.id);
    wake_writer_.cancel();
    return;
  }
  for (const auto& q : queue_)
    if (q.page.id == page.id) {
      ++stats_.duplicates;
      return;
    }
  log("page {} for unit {} (capcode {}, assignment {}): queued", page.id, page.unit, page.capcode, page.assignment);
  queue_.push_back(Pending{std::move(page), Backoff(opt_.backoff_min, opt_.backoff_max), steady_clock::now(), 0});
  wake_delivery_.cancel();
}

// ---------------------------------------------------------------------------------------
// The terminal side: one SNPP session per page; a page that fails waits its own
// back-off, so that one bad capcode does not hold up the others.

asio::awaitable<void> PagerGateway::delivery_loop() {
  while (!stopping_) {
    auto next = queue_.end();
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if (next == queue_.end() || it->next_attempt < next->next_attempt) next = it;
    if (next == queue_.end()) {
      wake_delivery_.expires_at(steady_clock::time_point::max());
      co_await wake_delivery_.async_wait(tuple);
      continue;
    }
    if (next->next_attempt > steady_clock::now()) {
      wake_delivery_.expires_at(next->next_attempt);
      co_await wake_delivery_.async_wait(tuple);
      continue;
    }
    const Page page = next->page;
    delivering_ = true;
    const auto outcome = co_await snpp_send_page(opt_.terminal, page.capcode, page.text, opt_.snpp_step_timeout);
    delivering_ = false;
    // The queue may have changed while the session ran; find the page again.
    auto it = queue_.begin();
    while (it != queue_.end() && it->page.id != page.id) ++it;
    if (outcome.delivered) {
      delivered_.add(page.id);
      ++stats_.delivered;
      log("page {}: delivered to terminal {} (capcode {})", page.id, opt_.terminal.str(), page.capcode);
      if (it != queue_.end()) queue_.erase(it);
      acks_.push_back(page.id);
      wake_writer_.cancel();
    } else {
      ++stats_.failures;
      if (it != queue_.end()) {
        const auto wait = it->backoff.next();
        it->next_attempt = steady_clock::now() + wait;
        ++it->attempts;
        log("page {}: terminal {}: {}; attempt {} failed, retry in {} ms", page.id, opt_.terminal.str(),
            outcome.detail, it->attempts, wait.count());
      }
    }
  }
  wake_writer_.cancel();
}

}  // namespace dispatch::gateways
