#include "gateways/endpoint.hpp"

#include <charconv>

namespace dispatch::gateways {

std::string Endpoint::str() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view s) {
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  auto host = s.substr(0, colon);
  const auto port_s = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || port_s.empty()) return std::nullopt;
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_s.data(), port_s.data() + port_s.size(), port);
  if (ec != std::errc{} || end != port_s.data() + port_s.size() || port > 65535) return std::nullopt;
  return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

std::optional<std::vector<Endpoint>> parse_endpoints(std::string_view s) {
  std::vector<Endpoint> out;
  while (true) {
    const auto comma = s.find(',');
    const auto e = parse_endpoint(s.substr(0, comma));
    if (!e) return std::nullopt;
    out.push_back(*e);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace dispatch::gateways
