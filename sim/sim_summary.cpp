// dispatch-sim run: the progress line, the server's /metrics, and the summary at the end.
#include <fstream>

#include "sim/sim_run.hpp"

namespace dispatch::sim_run {

void Sim::progress() {
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](beast::error_code ec) {
    if (ec || shut_down_) return;
    const auto secs = static_cast<double>(now_ms() - started_ms_) / 1000.0;
    double p99;
    {
      std::lock_guard lock(shared_mu_);
      p99 = static_cast<double>(assign_lat_.percentile(0.99)) / 1000.0;
    }
    const auto sent = positions_sent_.load();
    std::cerr << fmt::format(
        "\r[{:6.1f}s] positions {} ({:.0f}/s)  reports {}  accepted {}  assigns {}  assign p99 {:.1f} ms  mismatches {}  errors {}   ",
        secs, sent, static_cast<double>(sent) / std::max(secs, 0.001), reports_sent_.load(), accepted_count_.load(),
        assigns_.load(), p99, mismatches_, errors_.load());
    if (opt_.demo) std::cerr << '\n';
    progress();
  });
}

std::string Sim::fetch_metrics() {
  try {
    return http_get(host_, port_, "/metrics");
  } catch (const std::exception&) {
    return {};
  }
}

int Sim::summary(double secs) {
  std::cerr << "\n";
  judge_suspects();
  const std::string end_metrics = fetch_metrics();
  auto delta = [&](const char* name) { return metric(end_metrics, name) - metric(start_metrics_, name); };
  const double taken = delta("dispatch_positions_accepted_total");
  const double ooo = delta("dispatch_positions_out_of_order_total"), jumps = delta("dispatch_positions_gps_jump_total");
  const double active = std::max(0.001, std::min(secs, opt_.duration > 0 ? opt_.duration : secs));
  auto ms = [](std::int64_t us) { return static_cast<double>(us) / 1000.0; };
  std::uint64_t console_bytes = 0;
  std::uint64_t console_frames = 0;
  for (auto& c : consoles_) {
    console_bytes += c->bytes_read();
    console_frames += c->frames_read();
  }
  json::object s{{"duration_s", active},
                 {"units", units_.size()},
                 {"gateways", gateways_.size()},
                 {"reporters", reporters_.size()},
                 {"consoles", consoles_.size()},
                 {"console_bytes", console_bytes},
                 {"console_frames", console_frames},
                 {"console_batch", opt_.console_batch},
                 {"slices", opt_.slices},
                 {"flood", opt_.flood},
                 {"realtime_priority", realtime_threads_.load() == 2 ? opt_.realtime_priority : 0},
                 {"positions_sent", positions_sent_.load()},
                 {"positions_held", positions_held_},
                 {"positions_taken", taken},
                 {"positions_per_s", taken / active},
                 {"positions_out_of_order", ooo},
                 {"positions_gps_jump", jumps},
                 {"positions_applied_per_s", (taken - ooo - jumps) / active},
                 {"reports", reports_sent_.load()},
                 {"reports_per_s", static_cast<double>(reports_sent_.load()) / active},
                 {"accepted", accepted_.size()},
                 {"assigns", assigns_.load()},
                 {"declines", declines_},
                 {"cancels", cancels_},
                 {"cleared", cleared_},
                 {"claims", claims_},
                 {"report_lag_p99_ms", ms(report_lag_.percentile(0.99))},
                 {"report_lag_max_ms", ms(report_lag_.max())},
                 {"accepted_p50_ms", ms(accepted_lat_.percentile(0.5))},
                 {"accepted_p90_ms", ms(accepted_lat_.percentile(0.9))},
                 {"accepted_p99_ms", ms(accepted_lat_.percentile(0.99))},
                 {"accepted_max_ms", ms(accepted_lat_.max())},
                 {"assign_count", assign_lat_.count()},
                 {"assign_p50_ms", ms(assign_lat_.percentile(0.5))},
                 {"assign_p90_ms", ms(assign_lat_.percentile(0.9))},
                 {"assign_p99_ms", ms(assign_lat_.percentile(0.99))},
                 {"assign_max_ms", ms(assign_lat_.max())},
                 {"checked", checked_},
                 {"mismatches", mismatches_},
                 {"errors", errors_.load()}};
  // The server's own histograms over the run, so that a tail can be attributed to a stage.
  const auto h_end = parse_histograms(end_metrics), h_start = parse_histograms(start_metrics_);
  const std::pair<const char*, const char*> families[] = {
      {"stage_parse", "dispatch_stage_parse_seconds"},
      {"stage_engine_wait", "dispatch_stage_engine_wait_seconds"},
      {"stage_engine", "dispatch_stage_engine_seconds"},
      {"stage_commit_wait", "dispatch_stage_commit_wait_seconds"},
      {"stage_send", "dispatch_stage_send_seconds"},
      {"server_assign", "dispatch_report_to_assign_seconds"},
      {"store_commit", "dispatch_store_commit_seconds"}};
  for (const auto& [field, name] : families) {
    auto it = h_end.find(name);
    if (it == h_end.end()) continue;
    auto st = h_start.find(name);
    const auto h = histogram_delta(it->second, st == h_start.end() ? nullptr : &st->second);
    s[fmt::format("{}_count", field)] = h.count;
    s[fmt::format("{}_mean_ms", field)] = h.count > 0 ? h.sum / h.count * 1000.0 : 0.0;
    s[fmt::format("{}_p50_ms", field)] = histogram_quantile(h, 0.5) * 1000.0;
    s[fmt::format("{}_p99_ms", field)] = histogram_quantile(h, 0.99) * 1000.0;
  }
  json::array ml, el;
  for (auto& m : mismatch_list_) ml.push_back(json::string(m));
  for (auto& e : error_samples_) el.push_back(json::string(e));
  s["mismatch_list"] = std::move(ml);
  s["error_samples"] = std::move(el);
  const std::string text = json::serialize(s);
  std::cout << text << std::endl;
  if (!opt_.json_out.empty()) std::ofstream(opt_.json_out) << text << '\n';
  return 0;
}

}  // namespace dispatch::sim_run
