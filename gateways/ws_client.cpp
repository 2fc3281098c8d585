#include "gateways/ws_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket.hpp>

namespace dispatch::gateways {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;

asio::awaitable<WsConnection> ws_connect(Endpoint server, std::string path, std::string token,
                                         std::chrono::milliseconds timeout) {
  const auto ex = co_await asio::this_coro::executor;
  constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
  const std::string where = "ws://" + server.str() + path;

  tcp::resolver resolver(ex);
  const auto [rerr, endpoints] = co_await resolver.async_resolve(server.host, std::to_string(server.port), tuple);
  if (rerr) co_return WsConnection{nullptr, where + ": " + rerr.message()};

  auto ws = std::make_unique<WsStream>(ex);
  auto& tcp_layer = beast::get_lowest_layer(*ws);
  tcp_layer.expires_after(timeout);
  if (const auto [cerr, ep] = co_await tcp_layer.async_connect(endpoints, tuple); cerr)
    co_return WsConnection{nullptr, where + ": " + cerr.message()};
  tcp_layer.socket().set_option(tcp::no_delay(true));

  ws->set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
    req.set(beast::http::field::user_agent, "dispatch-gateway");
    req.set(beast::http::field::authorization, "Bearer " + token);
  }));
  // Beast masks a client's frames through its write buffer, one write per buffer: a batch
  // of positions goes in one system call at 64 KiB, where the default 4 KiB took one per
  // 4 KiB (and woke the server's I/O thread as often).
  ws->write_buffer_bytes(64 * 1024);
  websocket::response_type response;
  const auto [herr] = co_await ws->async_handshake(response, server.str(), path, tuple);
  if (herr) {
    if (response.result_int() != 0 && response.result_int() != 101)
      co_return WsConnection{nullptr, where + ": server answered HTTP " + std::to_string(response.result_int()) +
                                          (response.result_int() == 401 ? " (token refused)" : "")};
    co_return WsConnection{nullptr, where + ": " + herr.message()};
  }
  tcp_layer.expires_never();
  websocket::stream_base::timeout t{};
  t.handshake_timeout = timeout;
  t.idle_timeout = std::chrono::seconds(20);  // a ping at 10 s idle, dropped at 20 s
  t.keep_alive_pings = true;
  ws->set_option(t);
  ws->read_message_max(1 << 20);
  co_return WsConnection{std::move(ws), {}};
}

std::string frame_text(const beast::flat_buffer& buffer) { return beast::buffers_to_string(buffer.data()); }

}  // namespace dispatch::gateways
