// dispatch-avl: the radio AVL gateway (see docs/gateways.md).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "gateways/avl.hpp"
#include "gateways/log.hpp"
#include "gateways/token.hpp"

int main(int argc, char** argv) {
  using namespace dispatch::gateways;
  set_log_program("dispatch-avl");
  AvlOptions opt;
  std::string server = opt.server.str(), token, token_file, gpsd = "127.0.0.1:2947", nmea_listen, default_unit;
  std::vector<std::string> devices;
  bool no_gpsd = false;
  long flush_ms = opt.flush_interval.count(), backoff_min_ms = opt.backoff_min.count(),
       backoff_max_ms = opt.backoff_max.count(), grace_ms = 3000;

  CLI::App app{
      "dispatch-avl: forwards positions from gpsd and from plain NMEA over TCP to dispatchd\n"
      "as batched `position` messages on /ws/unit."};
  app.set_config("--config", "", "read these options from an INI/TOML file");
  app.add_option("--server", server, "dispatchd HOST:PORT, or several comma-separated (the active one is used)")->capture_default_str();
  app.add_option("--token", token, "gateway token (prefer --token-file or $DISPATCH_TOKEN)");
  app.add_option("--token-file", token_file, "file whose first line is the gateway token");
  app.add_option("--gpsd", gpsd, "gpsd HOST:PORT to ?WATCH")->capture_default_str();
  app.add_flag("--no-gpsd", no_gpsd, "do not connect to gpsd");
  app.add_option("--device", devices, "PATH=UNIT: gpsd device path to unit id (repeatable)");
  app.add_option("--default-unit", default_unit, "unit for gpsd devices not named by --device");
  app.add_option("--nmea-listen", nmea_listen,
                 "HOST:PORT to accept plain NMEA on (port 0: any free one); each connection\n"
                 "sends \"UNIT <id>\" first, then sentences");
  app.add_option("--batch-max", opt.batch_max, "positions per frame at most")->capture_default_str();
  app.add_option("--flush-ms", flush_ms, "longest a position waits to fill a frame")->capture_default_str();
  app.add_option("--backlog", opt.backlog_capacity, "positions kept while the server is away (oldest dropped)")
      ->capture_default_str();
  app.add_option("--backoff-min-ms", backoff_min_ms, "first reconnect delay")->capture_default_str();
  app.add_option("--backoff-max-ms", backoff_max_ms, "longest reconnect delay")->capture_default_str();
  app.add_option("--shutdown-grace-ms", grace_ms, "on SIGTERM/SIGINT, time to send what waits")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const auto t = load_token(token, token_file, "DISPATCH_TOKEN");
    if (!t) throw std::runtime_error("no token: use --token-file, --token or $DISPATCH_TOKEN");
    opt.token = *t;
    const auto s = parse_endpoints(server);
    if (!s) throw std::runtime_error("--server must be HOST:PORT[,HOST:PORT...], not " + server);
    opt.server = s->front();
    opt.servers = *s;
    if (!no_gpsd) {
      opt.gpsd = parse_endpoint(gpsd);
      if (!opt.gpsd) throw std::runtime_error("--gpsd must be HOST:PORT, not " + gpsd);
    }
    for (const auto& d : devices)
      if (!opt.devices.add(d)) throw std::runtime_error("--device must be PATH=UNIT, not " + d);
    if (!default_unit.empty()) opt.devices.set_default(default_unit);
    if (!nmea_listen.empty()) {
      opt.nmea_listen = parse_endpoint(nmea_listen);
      if (!opt.nmea_listen) throw std::runtime_error("--nmea-listen must be HOST:PORT, not " + nmea_listen);
    }
    if (!opt.gpsd && !opt.nmea_listen) throw std::runtime_error("no source: give --gpsd or --nmea-listen");
    opt.flush_interval = std::chrono::milliseconds(flush_ms);
    opt.backoff_min = std::chrono::milliseconds(backoff_min_ms);
    opt.backoff_max = std::chrono::milliseconds(backoff_max_ms);

    boost::asio::io_context ioc;
    AvlGateway gw(ioc, opt);
    gw.start();
    if (const auto ep = gw.nmea_endpoint()) {
      std::printf("nmea listening on %s\n", ep->str().c_str());
      std::fflush(stdout);
    }
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log("signal {}: stopping", sig);
      gw.stop(std::chrono::milliseconds(grace_ms));
    });
    ioc.run();
    const auto& st = gw.stats();
    log("stopped: {} positions received, {} confirmed by the server, {} dropped from a full backlog, {} unsent",
        st.received, st.confirmed, gw.backlog().dropped(), gw.backlog().size());
    return gw.backlog().empty() ? 0 : 3;
  } catch (const std::exception& e) {
    std::cerr << "dispatch-avl: " << e.what() << '\n';
    return 1;
  }
}
