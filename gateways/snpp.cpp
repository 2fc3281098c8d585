#include "gateways/snpp.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <fmt/format.h>

namespace dispatch::gateways {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

std::optional<SnppReply> parse_snpp_reply(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.size() < 3) return std::nullopt;
  int code = 0;
  for (int i = 0; i < 3; ++i) {
    const char c = line[static_cast<std::size_t>(i)];
    if (c < '0' || c > '9') return std::nullopt;
    code = code * 10 + (c - '0');
  }
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-') return std::nullopt;
  return SnppReply{code, std::string(line.size() > 4 ? line.substr(4) : std::string_view{})};
}

std::string snpp_message_text(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    const bool space = u < 0x20 || u == 0x7f || c == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

asio::awaitable<SnppOutcome> snpp_send_page(Endpoint terminal, std::string capcode, std::string text,
                                            std::chrono::milliseconds step_timeout) {
  const auto ex = co_await asio::this_coro::executor;
  constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
  beast::tcp_stream stream(ex);
  std::string buffer;

  tcp::resolver resolver(ex);
  const auto [rerr, endpoints] =
      co_await resolver.async_resolve(terminal.host, std::to_string(terminal.port), tuple);
  if (rerr) co_return SnppOutcome{false, "resolve " + terminal.str() + ": " + rerr.message()};
  stream.expires_after(step_timeout);
  if (const auto [cerr, ep] = co_await stream.async_connect(endpoints, tuple); cerr)
    co_return SnppOutcome{false, "connect " + terminal.str() + ": " + cerr.message()};

  // Written as plain statements: GCC 12 miscompiles co_await inside || and ?: (it
  // destroys temporaries twice), so no step is chained in an expression.
  std::string failure;
  std::optional<SnppReply> reply;
  const auto read_reply = [&](std::string_view step) -> asio::awaitable<void> {
    reply.reset();
    stream.expires_after(step_timeout);
    const auto [err, n] =
        co_await asio::async_read_until(stream, asio::dynamic_buffer(buffer, 4096), '\n', tuple);
    if (err) {
      failure = fmt::format("{}: {}", step, err.message());
      co_return;
    }
    const std::string line = buffer.substr(0, n);
    buffer.erase(0, n);
    reply = parse_snpp_reply(line);
    if (!reply) failure = fmt::format("{}: not an SNPP reply: {}", step, snpp_message_text(line));
  };
  // One step: the command, then a reply that must be `want`; false with `failure` set.
  const auto step = [&](std::string_view name, std::string line, int want) -> asio::awaitable<bool> {
    line += "\r\n";
    stream.expires_after(step_timeout);
    const auto [err, n] = co_await asio::async_write(stream, asio::buffer(line), tuple);
    if (err) {
      failure = fmt::format("{}: {}", name, err.message());
      co_return false;
    }
    co_await read_reply(name);
    if (!reply) co_return false;
    if (reply->code != want) {
      failure = fmt::format("{}: terminal answered {} {}", name, reply->code, reply->text);
      co_return false;
    }
    co_return true;
  };

  co_await read_reply("greeting");
  if (!reply) co_return SnppOutcome{false, failure};
  if (reply->code != 220)
    co_return SnppOutcome{false, fmt::format("greeting: terminal answered {} {}", reply->code, reply->text)};
  std::string message = snpp_message_text(text);
  if (message.empty()) message = "-";  // MESS needs a word
  bool ok = co_await step("PAGE", "PAGE " + capcode, 250);
  if (ok) ok = co_await step("MESS", "MESS " + message, 250);
  if (ok) ok = co_await step("SEND", "SEND", 250);
  const std::string why = failure;
  // Delivered once SEND got its 250; QUIT is only politeness.
  const bool quit_ok = co_await step("QUIT", "QUIT", 221);
  static_cast<void>(quit_ok);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  if (!ok) co_return SnppOutcome{false, why};
  co_return SnppOutcome{true, "250 to SEND"};
}

}  // namespace dispatch::gateways
