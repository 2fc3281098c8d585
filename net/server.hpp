// The dispatch server: one port for HTTP/1.1 and WebSocket (wire-contract.md section 2).
// Asio and Beast stay inside server.cpp; this header is cheap to include.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/store.hpp"
#include "engine/engine.hpp"

namespace dispatch::net {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string tokens_path;
  std::string fleet_path;
  std::string web_root;          // static files for GET / (the console)
  std::string zones_path;        // district boundaries (GeoJSON)
  bool zones_gcj02 = true;
  std::vector<std::string> urban;  // urban districts by name or code; empty: the nine central ones
  std::string places_path;       // heli bases, landing zones, hospitals (GeoJSON)
  std::string insurers_path;     // the insurers and their other names (JSON)
  std::string roads_path;        // OpenStreetMap .osm/.osm.pbf: ground ETAs by road (contract v2 section 8)
  std::string tiles;             // the console's base map: a tile URL template ({z}, {x}, {y}); "" = none
  std::string tiles_attribution; // shown under that base map
  engine::Config engine;
  data::StoreOptions store;
  int io_threads = 1;
  std::size_t max_frame_bytes = 64 * 1024;
  std::size_t max_body_bytes = 256 * 1024;
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds idle_timeout{120};
  // A new connection's first request must arrive whole within this; later requests on a
  // keep-alive connection within http_idle_timeout.
  std::chrono::seconds request_timeout{10};
  std::chrono::milliseconds http_idle_timeout{30000};
  // Messages per second per connection (a batch of N counts N; burst: twice as many);
  // gateways speak for many units and get bulk_rate_per_s.
  double rate_per_s = 200;
  double bulk_rate_per_s = 20000;
  // 0: from the process's file-descriptor limit (raised to its hard limit at start).
  std::size_t max_connections = 0;
  std::size_t max_connections_per_peer = 1024;
  std::size_t console_soft_bytes = 1 << 20;   // above: positions wait (coalesced)
  std::size_t console_hard_bytes = 16 << 20;  // above: the console is dropped (1008)
  std::chrono::milliseconds tick{100};
  std::chrono::milliseconds console_flush{250};
  bool handle_signals = true;
  // Several dispatchd on one PostgreSQL database (contract section 9): the lease's length,
  // renewed every third of it; and this server's name in the lease row ("" = host:pid).
  std::chrono::milliseconds lease{3000};
  std::string node_name;
  // A line per report and per assign released, for latency forensics (docs/performance.md,
  // scripts/trace-reports.py); "" = none.
  std::string trace_reports;
};

class Server {
 public:
  // Loads tokens and fleet, opens the store, restores the engine. Throws on bad start-up.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts the threads; returns "HOST:PORT" with the real port.
  std::string start();
  // Blocks until stop() or SIGTERM/SIGINT; then flushes the store and returns.
  void wait();
  // Thread-safe.
  void stop();

  struct Impl;  // public so that the session classes in server.cpp can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dispatch::net
