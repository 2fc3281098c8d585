// The gateways' WebSocket connection to dispatchd (contract sections 2 and 3).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "gateways/endpoint.hpp"

namespace dispatch::gateways {

using WsStream = boost::beast::websocket::stream<boost::beast::tcp_stream>;

struct WsConnection {
  std::unique_ptr<WsStream> ws;  // null when it failed
  std::string error;             // why, for the log
};

// TCP connect and WebSocket upgrade on `path`, with "Authorization: Bearer token".
// The whole of it must finish within `timeout`. Afterwards the stream pings an idle
// server and drops it when it does not answer.
boost::asio::awaitable<WsConnection> ws_connect(Endpoint server, std::string path, std::string token,
                                                std::chrono::milliseconds timeout);

// The JSON text of a frame: one message object, or an array of them.
std::string frame_text(const boost::beast::flat_buffer& buffer);

}  // namespace dispatch::gateways
