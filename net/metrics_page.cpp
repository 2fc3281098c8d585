// /metrics: the I/O side's counters (atomics, any thread) and the engine's figures (read
// on the engine thread, which the HTTP session asks by posting; nothing waits on it).

#include <fmt/format.h>

#include "net/listener.hpp"
#include "net/server_impl.hpp"

namespace dispatch::net {

std::string Server::Impl::render_io_metrics() const {
  std::string s;
  render_family_head(s, "dispatch_connections_total", "WebSocket connections accepted, by role");
  for (const auto& r : role_table)
    render_sample(s, "dispatch_connections_total", "role", r.name,
                  metrics.connections_by_role[static_cast<std::size_t>(r.role)].load());
  render_family_head(s, "dispatch_connections_open", "WebSocket connections open, by role", "gauge");
  for (const auto& r : role_table)
    render_sample(s, "dispatch_connections_open", "role", r.name,
                  metrics.open_by_role[static_cast<std::size_t>(r.role)].load());
  render_family_head(s, "dispatch_messages_in_total", "Messages received, by type");
  for (const auto& [type, c] : metrics.messages_in)
    render_sample(s, "dispatch_messages_in_total", "type", type, c.load());
  render_family_head(s, "dispatch_errors_total", "Error replies, by code");
  for (const auto& e : error_catalog)
    render_sample(s, "dispatch_errors_total", "code", e.metric, metrics.errors[index(e.code)].load());
  render_counter(s, "dispatch_frames_in_total", "WebSocket frames received", metrics.frames_in.load());
  render_counter(s, "dispatch_frames_dropped_total", "Frames dropped unread over the rate limit",
                 metrics.frames_dropped.load());
  render_counter(s, "dispatch_positions_in_total", "Position messages received", metrics.positions_in.load());
  render_counter(s, "dispatch_rate_limited_total", "Frames refused over the message rate limit",
                 metrics.rate_limited.load());
  render_counter(s, "dispatch_consoles_dropped_total", "Consoles disconnected for not keeping up",
                 metrics.consoles_dropped.load());
  render_counter(s, "dispatch_slow_connections_closed_total",
                 "Connections closed because their outgoing queue was over its bound", metrics.slow_closed.load());
  render_counter(s, "dispatch_http_requests_total", "HTTP requests", metrics.http_requests.load());
  render_counter(s, "dispatch_http_bad_requests_total", "Malformed HTTP requests answered 4xx",
                 metrics.http_bad_requests.load());
  render_counter(s, "dispatch_connections_refused_total", "Connections refused over the cap",
                 metrics.connections_refused.load());
  render_counter(s, "dispatch_connections_evicted_total",
                 "Connections without a valid token yet closed to make room",
                 listener ? listener->slots().evicted() : 0);
  render_counter(s, "dispatch_accept_backoffs_total", "Times accept backed off (out of file descriptors)",
                 metrics.accept_backoffs.load());
  render_counter(s, "dispatch_commands_refused_total", "Commands answered unavailable (store over its bound)",
                 metrics.commands_refused.load());
  metrics.assign_latency.render(s, "dispatch_report_to_assign_seconds",
                                "From a report's arrival to its first assign leaving the server");
  metrics.commit_latency.render(s, "dispatch_store_commit_seconds", "Store commit duration");
  metrics.stage_parse.render(s, "dispatch_stage_parse_seconds", "Stage: parsing a frame on an I/O thread");
  metrics.stage_engine_wait.render(s, "dispatch_stage_engine_wait_seconds",
                                   "Stage: a parsed frame waiting for the engine thread");
  metrics.stage_engine.render(s, "dispatch_stage_engine_seconds", "Stage: the engine handling a frame");
  metrics.stage_commit_wait.render(s, "dispatch_stage_commit_wait_seconds",
                                   "Stage: a rendered message waiting for the commit before it");
  metrics.stage_send.render(s, "dispatch_stage_send_seconds",
                            "Stage: rendering and fanning out one console position flush (consoles' thread)");
  const auto st = store->stats();
  render_counter(s, "dispatch_store_commits_total", "Store commits", st.commits);
  render_counter(s, "dispatch_store_writes_total", "Store writes committed", st.writes);
  render_counter(s, "dispatch_store_failures_total", "Store commits that failed", st.failures);
  render_counter(s, "dispatch_store_queued_writes", "Writes submitted and not yet committed", st.queued, "gauge");
  render_counter(s, "dispatch_store_dropped_total", "Optional writes (track points) dropped over the bound",
                 st.dropped);
  render_counter(s, "dispatch_store_healthy", "1 while the store can write", st.healthy ? 1 : 0, "gauge");
  return s;
}

std::string Server::Impl::render_engine_metrics() {
  std::string e;
  const auto& es = engine.stats();
  render_counter(e, "dispatch_positions_accepted_total", "Positions taken", es.positions);
  render_counter(e, "dispatch_positions_out_of_order_total", "Positions ignored as out of order",
                 es.positions_out_of_order);
  render_counter(e, "dispatch_positions_gps_jump_total", "Positions ignored as GPS jumps", es.positions_gps_jump);
  render_counter(e, "dispatch_reports_total", "Reports that made an incident", es.reports);
  render_counter(e, "dispatch_reports_duplicate_total", "Reports sent again with a known id", es.reports_duplicate);
  render_family_head(e, "dispatch_assignments_total", "Assignments, by outcome");
  render_sample(e, "dispatch_assignments_total", "outcome", "made", es.assignments);
  render_sample(e, "dispatch_assignments_total", "outcome", "declined", es.assignments_declined);
  render_sample(e, "dispatch_assignments_total", "outcome", "lapsed", es.assignments_lapsed);
  render_sample(e, "dispatch_assignments_total", "outcome", "cancelled", es.assignments_cancelled);
  render_sample(e, "dispatch_assignments_total", "outcome", "cleared", es.assignments_cleared);
  render_counter(e, "dispatch_incidents_closed_total", "Incidents closed", es.incidents_closed);
  render_counter(e, "dispatch_incidents_waiting", "Incidents waiting for a unit", engine.waiting_count(), "gauge");
  render_counter(e, "dispatch_pages_total", "Pages sent", es.pages);
  render_counter(e, "dispatch_pages_resent_total", "Pages sent again", es.pages_resent);
  render_counter(e, "dispatch_claims_total", "Claims handed to insurers", es.claims);
  render_counter(e, "dispatch_claims_paid_total", "Claims paid", es.claims_paid);
  // Rural stations (contract v2 section 10).
  render_counter(e, "dispatch_sightings_total", "Sightings logged by stations", es.sightings);
  render_counter(e, "dispatch_sightings_windowed", "Sightings held for the fraud signals' window",
                 engine.signal_book().sightings(), "gauge");
  render_counter(e, "dispatch_hazards_total", "Hazards reported", es.hazards);
  render_counter(e, "dispatch_incidents_signalled_total", "Incidents that got a fraud signal", es.signals_raised);
  render_family_head(e, "dispatch_overdue_total", "Clocks that ran out before they were met, by clock");
  for (std::size_t i = 0; i < engine::clock_names.size(); ++i)
    render_sample(e, "dispatch_overdue_total", "clock", engine::clock_names[i], es.overdue[i]);
  render_counter(e, "dispatch_release_held", "Messages held until the writes before them commit", gate.held(),
                 "gauge");
  render_family_head(e, "dispatch_service_level_seconds_sum",
                     "Service levels: total seconds, by stage, district and severity");
  render_family_head(e, "dispatch_service_level_seconds_count",
                     "Service levels: events, by stage, district and severity");
  for (const auto& [key, sl] : engine.service_levels()) {
    const auto bar = key.find('|');
    const std::string labels =
        fmt::format("district=\"{}\",severity=\"{}\"", key.substr(0, bar), key.substr(bar + 1));
    const std::pair<const char*, const engine::ServiceLevel*> stages[] = {
        {"assign", &sl.to_assign}, {"scene", &sl.to_scene}, {"liability", &sl.to_liability},
        {"claim_paid", &sl.to_claim_paid}, {"call_to_airborne", &sl.call_to_airborne},
        {"call_to_landed", &sl.call_to_landed}, {"call_to_hospital", &sl.call_to_hospital}};
    for (const auto& [stage, l] : stages) {
      fmt::format_to(std::back_inserter(e), "dispatch_service_level_seconds_sum{{stage=\"{}\",{}}} {}\n", stage,
                     labels, l->sum_s);
      fmt::format_to(std::back_inserter(e), "dispatch_service_level_seconds_count{{stage=\"{}\",{}}} {}\n", stage,
                     labels, l->count);
    }
  }
  std::size_t depth = 0;
  for (const auto& [id, w] : peers)
    if (auto p = w.lock()) depth += p->queued_bytes.load();
  render_counter(e, "dispatch_outgoing_queue_bytes", "Bytes queued to all connections", depth, "gauge");
  return e;
}

}  // namespace dispatch::net
