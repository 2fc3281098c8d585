// SNPP, the Simple Network Paging Protocol (RFC 1861), level 1: the pager gateway
// hands each page to a paging terminal with PAGE, MESS, SEND and QUIT.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "gateways/endpoint.hpp"

namespace dispatch::gateways {

struct SnppReply {
  int code = 0;
  std::string text;
};
// "250 Message OK" -> {250, "Message OK"}.
std::optional<SnppReply> parse_snpp_reply(std::string_view line);

// The message as one SNPP line: control characters (CR, LF, ...) become spaces and
// runs of spaces one, since the terminal splits the line on whitespace anyway.
std::string snpp_message_text(std::string_view text);

struct SnppOutcome {
  bool delivered = false;  // the terminal answered 250 to SEND
  std::string detail;      // the failing step and the terminal's answer, or the error
};

// One SNPP session for one page. Each step must finish within step_timeout.
boost::asio::awaitable<SnppOutcome> snpp_send_page(Endpoint terminal, std::string capcode,
                                                   std::string text,
                                                   std::chrono::milliseconds step_timeout);

}  // namespace dispatch::gateways
