// "HOST:PORT" as given on the command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

namespace dispatch::gateways {

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;
};

// "127.0.0.1:2947", "[::1]:8080", "localhost:444"; port 0 allowed (listeners).
std::optional<Endpoint> parse_endpoint(std::string_view s);

// "a:8080,b:8080": several dispatchd on one database (contract section 9), one active and
// the others standby (they refuse the upgrade with 503). Nullopt when one is malformed.
std::optional<std::vector<Endpoint>> parse_endpoints(std::string_view s);

// Which server to try: the same one again after a disconnect, the next one at once after
// a failed connect, and a back-off only once every server has failed in a row.
class ServerRing {
 public:
  explicit ServerRing(std::vector<Endpoint> servers) : servers_(std::move(servers)) {}
  const Endpoint& current() const { return servers_[at_ % servers_.size()]; }
  // A connect failed: true when the next server should be tried at once.
  bool failed() {
    ++at_;
    if (++failures_ < servers_.size()) return true;
    failures_ = 0;
    return false;
  }
  void connected() { failures_ = 0; }

 private:
  std::vector<Endpoint> servers_;
  std::size_t at_ = 0;
  std::size_t failures_ = 0;
};

}  // namespace dispatch::gateways
