// "HOST:PORT" as given on the command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dispatch::gateways {

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;
};

// "127.0.0.1:2947", "[::1]:8080", "localhost:444"; port 0 allowed (listeners).
std::optional<Endpoint> parse_endpoint(std::string_view s);

}  // namespace dispatch::gateways
