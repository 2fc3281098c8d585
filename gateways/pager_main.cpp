// dispatch-pager: the pager gateway (see docs/gateways.md).
#include <CLI/CLI.hpp>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "gateways/log.hpp"
#include "gateways/pager.hpp"
#include "gateways/token.hpp"

int main(int argc, char** argv) {
  using namespace dispatch::gateways;
  set_log_program("dispatch-pager");
  PagerOptions opt;
  std::string server = opt.server.str(), terminal = opt.terminal.str(), token, token_file;
  long step_ms = opt.snpp_step_timeout.count(), backoff_min_ms = opt.backoff_min.count(),
       backoff_max_ms = opt.backoff_max.count(), grace_ms = 5000;

  CLI::App app{
      "dispatch-pager: delivers dispatchd's pages (/ws/pager) to a paging terminal over SNPP\n"
      "(RFC 1861) and reports each one delivered once the terminal accepted it."};
  app.set_config("--config", "", "read these options from an INI/TOML file");
  app.add_option("--server", server, "dispatchd HOST:PORT, or several comma-separated (the active one is used)")->capture_default_str();
  app.add_option("--token", token, "pager token (prefer --token-file or $DISPATCH_TOKEN)");
  app.add_option("--token-file", token_file, "file whose first line is the pager token");
  app.add_option("--snpp", terminal, "paging terminal HOST:PORT (SNPP)")->capture_default_str();
  app.add_option("--state", opt.state_path,
                 "file of delivered page ids, so that a restart does not page a team twice");
  app.add_option("--snpp-timeout-ms", step_ms, "longest wait for each SNPP reply")->capture_default_str();
  app.add_option("--backoff-min-ms", backoff_min_ms, "first retry delay (server and terminal)")
      ->capture_default_str();
  app.add_option("--backoff-max-ms", backoff_max_ms, "longest retry delay")->capture_default_str();
  app.add_option("--shutdown-grace-ms", grace_ms, "on SIGTERM/SIGINT, time to finish the page under way")
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
    const auto term = parse_endpoint(terminal);
    if (!term) throw std::runtime_error("--snpp must be HOST:PORT, not " + terminal);
    opt.terminal = *term;
    opt.snpp_step_timeout = std::chrono::milliseconds(step_ms);
    opt.backoff_min = std::chrono::milliseconds(backoff_min_ms);
    opt.backoff_max = std::chrono::milliseconds(backoff_max_ms);

    boost::asio::io_context ioc;
    PagerGateway gw(ioc, opt);
    gw.start();
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      log("signal {}: stopping", sig);
      gw.stop(std::chrono::milliseconds(grace_ms));
    });
    ioc.run();
    const auto& st = gw.stats();
    log("stopped: {} pages received, {} delivered, {} failed attempts, {} acknowledgements sent", st.received,
        st.delivered, st.failures, st.acks_sent);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "dispatch-pager: " << e.what() << '\n';
    return 1;
  }
}
