// What the sessions need of their byte stream beyond reading and writing: deadlines and
// closing. Specialised for Beast's tcp_stream here and for beast::test::stream in the
// tests, so that each session runs over either (sockets in dispatchd, none in tests).
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>

namespace dispatch::net {

template <class Stream>
struct StreamOps;

template <>
struct StreamOps<boost::beast::tcp_stream> {
  using S = boost::beast::tcp_stream;
  static void expires_after(S& s, std::chrono::steady_clock::duration d) { s.expires_after(d); }
  static void expires_never(S& s) { s.expires_never(); }
  // Half-close after the last answer (the peer sees EOF once it has read everything).
  static void shutdown_send(S& s) {
    boost::system::error_code ignored;
    s.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }
  // Cut the connection now.
  static void close(S& s) {
    boost::system::error_code ignored;
    s.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    s.socket().close(ignored);
  }
};

}  // namespace dispatch::net
