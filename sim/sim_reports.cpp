// dispatch-sim run, the report thread: reports at their Poisson times, their answers, and
// the oracle thread's brute-force nearest each assignment is judged against.
#include "sim/sim_run.hpp"

namespace dispatch::sim_run {

void Sim::schedule_next_report() {
  std::exponential_distribution<double> gap(opt_.reports_per_s > 0 ? opt_.reports_per_s : 1e-9);
  next_report_tp_ += std::chrono::microseconds(static_cast<std::int64_t>(std::min(gap(report_rng_), 1e6) * 1e6));
}

void Sim::report_tick() {
  if (opt_.reports_per_s <= 0 || units_.empty()) return;
  const auto tp = std::chrono::steady_clock::now();
  if (stopping_ || tp >= end_tp_) return;
  if (tp >= next_report_tp_) {
    // Every report due now goes in one frame (normally one: the timer wakes at its time).
    std::vector<ReportInfo> batch;
    std::string frame;
    const Millis now = now_ms();
    while (next_report_tp_ <= tp) {
      report_lag_.add(std::chrono::duration_cast<std::chrono::microseconds>(tp - next_report_tp_).count());
      frame += frame.empty() ? '[' : ',';
      frame += make_report(now, batch.emplace_back());
      schedule_next_report();
    }
    frame += ']';
    const std::int64_t sent_us = mono_us();
    reporters_[next_reporter_++ % reporters_.size()]->send(std::move(frame));
    reports_sent_.fetch_add(batch.size(), std::memory_order_relaxed);
    // The oracle runs on its own thread (its brute force over 100k units takes
    // milliseconds, which would delay the next reports), as of the send time, and only
    // once the report's first assign is in (resolve): run at the send, it took a core
    // away from the server for the very report being timed (0.3 ms at 10k units, 3-5 ms
    // at 100k), on the two cores both share.
    for (auto& r : batch) {
      r.sent_us = sent_us;
      if (!r.remote && checks_this_second(now)) r.oracle_pending = r.oracle_wanted = true;
      std::string id = r.id;
      reports_.emplace(std::move(id), std::move(r));
    }
  }
  rep_timer_.expires_at(next_report_tp_);
  rep_timer_.async_wait([this](beast::error_code ec) {
    if (!ec) report_tick();
  });
}

std::string Sim::make_report(Millis now, ReportInfo& r) {
  std::uniform_real_distribution<double> u01(0, 1);
  r.id = fmt::format("sim-{}-{}", opt_.seed, ++report_no_);
  const double s = u01(report_rng_);
  r.severity = s < 0.80 ? "minor" : s < 0.97 ? "injury" : "critical";
  r.remote = r.severity == "minor" && u01(report_rng_) < 0.6;
  // Near a random unit (accidents happen where the patrols are), up to 3 km away.
  const auto near_i = static_cast<std::size_t>(u01(report_rng_) * static_cast<double>(units_.size())) % units_.size();
  const geo::LatLon near = unpack(sent_[near_i].load(std::memory_order_relaxed));
  const double ang = u01(report_rng_) * 2 * std::numbers::pi, dist = u01(report_rng_) * 3000;
  r.at = {near.lat + dist * std::cos(ang) / 111195.0,
          near.lon + dist * std::sin(ang) / (111195.0 * std::cos(geo::deg2rad(near.lat)))};
  const int nveh = r.severity == "critical" ? 1 : 1 + static_cast<int>(u01(report_rng_) * 2);
  for (int i = 0; i < nveh; ++i) {
    std::string plate = fmt::format("渝{}{}", plate_letters[static_cast<int>(u01(report_rng_) * 7)],
                                    10000 + static_cast<int>(u01(report_rng_) * 89999));
    r.vehicles.emplace_back(plate, insurers[static_cast<int>(u01(report_rng_) * std::size(insurers)) % std::size(insurers)]);
  }
  r.sent_ms = now;
  json::array veh;
  for (auto& [p, i] : r.vehicles) veh.push_back(json::object{{"plate", p}, {"insurer", i}});
  json::object o{{"type", "report"}, {"id", r.id}, {"lat", r.at.lat}, {"lon", r.at.lon}, {"ts", now},
                 {"severity", r.severity}, {"injured", r.severity == "minor" ? 0 : 1},
                 {"drivable", r.remote}, {"parties_agree", r.remote}, {"vehicles", std::move(veh)}};
  return json::serialize(o);
}

bool Sim::checks_this_second(Millis now) {
  if (now / 1000 != check_second_) {
    check_second_ = now / 1000;
    checks_in_second_ = 0;
  }
  return ++checks_in_second_ <= 50;  // the oracle's brute force is bounded in cost
}

std::pair<std::size_t, double> Sim::oracle(geo::LatLon at, std::int64_t as_of) const {
  double best_d = std::numeric_limits<double>::infinity();
  std::size_t best = units_.size();
  if (roads_) {  // with --roads, "best" is least road ETA (seconds), over every free unit
    std::vector<std::size_t> idx;
    std::vector<geo::LatLon> from;
    for (std::size_t i = 0; i < units_.size(); ++i) {
      if (!is_moto_[i]) continue;
      const std::uint64_t f = free_[i].load(std::memory_order_relaxed);
      const bool changed_since = static_cast<std::int64_t>(f >> 1) > as_of;
      if (((f & 1) != 0) == changed_since) continue;
      idx.push_back(i);
      from.push_back(unpack(sent_[i].load(std::memory_order_relaxed)));
    }
    std::vector<double> secs(from.size());
    roads_->to_target(at, from, secs);
    for (std::size_t k = 0; k < secs.size(); ++k)
      if (secs[k] < best_d) best_d = secs[k], best = idx[k];
    return {best, best_d};
  }
  for (std::size_t i = 0; i < units_.size(); ++i) {
    if (!is_moto_[i]) continue;
    const std::uint64_t f = free_[i].load(std::memory_order_relaxed);
    const bool changed_since = static_cast<std::int64_t>(f >> 1) > as_of;
    if (((f & 1) != 0) == changed_since) continue;  // not available at as_of
    const double d = geo::distance_m(unpack(sent_[i].load(std::memory_order_relaxed)), at);
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return {best, best_d};
}

void Sim::on_oracle(const std::string& id, std::size_t best, double best_d) {
  auto it = reports_.find(id);
  if (it == reports_.end()) return;
  ReportInfo& r = it->second;
  r.oracle_pending = false;
  if (best < units_.size()) {
    r.checked = true;
    r.best = units_[best].def.id;  // ids never change: safe to read
    r.best_d = best_d;
  }
  verdict(r);
}

void Sim::on_report_message(const json::object& m, std::int64_t arrival_us) {
  const std::string type(m.at("type").as_string());
  if (type == "error") return on_error(m);
  if (type != "accepted") return;
  const std::string id(m.at("id").as_string()), incident(m.at("incident").as_string());
  auto it = reports_.find(id);
  if (it == reports_.end() || !accepted_.insert(id).second) return;
  accepted_count_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(shared_mu_);
    accepted_lat_.add(arrival_us - it->second.sent_us);
  }
  incident_report_[incident] = id;
  it->second.incident = incident;
  if (it->second.remote) {
    std::uniform_real_distribution<double> u01(0, 1);
    const Millis when = now_ms() + static_cast<Millis>(opt_.demo ? 10000 + u01(report_rng_) * 60000 : 200 + u01(report_rng_) * 800);
    asio::post(ioc_, [this, incident, plate = it->second.vehicles.front().first, when] {
      remote_plate_[incident] = plate;
      remote_queue_.emplace_back(when, incident);
    });
  }
  bool assigned;
  {
    std::lock_guard lock(shared_mu_);
    assigned = first_assign_.count(incident) != 0;
  }
  if (assigned) resolve(id, incident);
}

void Sim::on_first_assign(const std::string& incident) {
  if (auto it = incident_report_.find(incident); it != incident_report_.end()) resolve(it->second, incident);
}

void Sim::resolve(const std::string& report_id, const std::string& incident) {
  auto rit = reports_.find(report_id);
  if (rit == reports_.end() || rit->second.resolved) return;
  ReportInfo& r = rit->second;
  r.resolved = true;
  std::int64_t at_us;
  std::string unit;
  {
    std::lock_guard lock(shared_mu_);
    const auto& fa = first_assign_.at(incident);
    at_us = fa.first;
    unit = fa.second;
    assign_lat_.add(at_us - r.sent_us);
  }
  // report <id> <incident> <sent> <first assign arrived>
  if (trace_)
    std::fprintf(trace_.get(), "report\t%s\t%s\t%lld\t%lld\n", report_id.c_str(), incident.c_str(),
                 static_cast<long long>(r.sent_us), static_cast<long long>(at_us));
  r.assigned = unit;
  if (r.oracle_wanted) {
    r.oracle_wanted = false;
    asio::post(orc_ioc_, [this, id = r.id, at = r.at, sent_us = r.sent_us] {
      auto [best, best_d] = oracle(at, sent_us);
      asio::post(rep_ioc_, [this, id, best, best_d] { on_oracle(id, best, best_d); });
    });
  }
  verdict(r);
}

void Sim::verdict(const ReportInfo& r) {
  if (!r.resolved || r.oracle_pending || !r.checked) return;
  ++checked_;
  if (r.assigned == r.best) return;
  const geo::LatLon got_pos = unpack(sent_[index_.at(r.assigned)].load(std::memory_order_relaxed));
  double got_d = geo::distance_m(got_pos, r.at);
  if (roads_) roads_->to_target(r.at, std::span(&got_pos, 1), std::span(&got_d, 1));  // seconds by road
  // Positions moved while the report was in flight: a little slack (metres, or seconds by road).
  if (got_d <= r.best_d + (roads_ ? 15 : 60)) return;
  // Perhaps the oracle's favourite was busy on the server's side: assigned elsewhere
  // just before, or by an assign still on its way. Judged at the end of the run.
  suspects_.push_back(Suspect{r.id, r.incident, r.assigned, got_d, r.best, r.best_d, r.sent_ms});
}

void Sim::judge_suspects() {
  for (const auto& s : suspects_) {
    const Unit& best = units_[index_.at(s.best)];
    const bool busy = std::any_of(best.assign_times.begin(), best.assign_times.end(), [&](Millis t) {
      return t >= s.sent_ms - 5000 && t <= s.sent_ms + 10000;
    });
    if (busy) continue;
    ++mismatches_;
    if (mismatch_list_.size() < 20)
      mismatch_list_.push_back(fmt::format("{} ({}): got {} at {:.0f} {}, nearest {} at {:.0f}", s.report, s.incident,
                                           s.got, s.got_d, roads_ ? "s by road" : "m", s.best, s.best_d));
  }
}

}  // namespace dispatch::sim_run
