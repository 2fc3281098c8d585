// dispatch-sim run, the fleet thread: movement, position frames (and --flood), crews, the
// console and insurers; and the gateway I/O thread, which stamps what it reads.
#include "sim/sim_run.hpp"

namespace dispatch::sim_run {

void Sim::tick() {
  const auto tp = std::chrono::steady_clock::now();
  const Millis now = now_ms();
  const bool ending = stopping_ || tp >= end_tp_;
  if (ending) {
    if (!drain_until_) drain_until_ = now + 2000;  // wait for answers in flight
    if (now >= drain_until_ || pending_reports() == 0) return shutdown();
  } else {
    if (tp >= next_pos_tp_) {
      Millis ts = std::max(now, last_pos_ms_ + 1);  // strictly increasing per unit
      const std::size_t slice = next_slice_;
      next_slice_ = (next_slice_ + 1) % opt_.slices;
      const double dt = static_cast<double>(ts - slice_last_ms_[slice]) / 1000.0;
      const std::int64_t round_us = mono_us();
      if (opt_.flood)
        ts = flood_send(ts);
      else
        move_and_send(ts, dt, slice);
      slice_last_ms_[slice] = ts;
      // positions <this round's start> <its last frame handed to the gateways>
      if (trace_)
        std::fprintf(trace_.get(), "positions\t%lld\t%lld\n", static_cast<long long>(round_us),
                     static_cast<long long>(mono_us()));
      last_pos_ms_ = ts;
      next_pos_tp_ += opt_.flood ? period_ : period_ / static_cast<std::int64_t>(opt_.slices);
      if (next_pos_tp_ < tp) next_pos_tp_ = tp;  // behind: send as fast as possible, no debt
    }
    if (now - last_crews_ms_ >= 5) {
      crews(now);
      console_duties(now);
      last_crews_ms_ = now;
    }
  }
  auto wake = std::min(next_pos_tp_, tp + std::chrono::milliseconds(5));
  if (ending) wake = tp + std::chrono::milliseconds(5);
  timer_.expires_at(wake);
  timer_.async_wait([this](beast::error_code ec) {
    if (!ec) tick();
  });
}

void Sim::shutdown() {
  // A timer's handler may already be queued (expired) when it is cancelled, and then
  // runs as if it had fired: the progress line must not arm itself again after this,
  // or ioc_ never runs out of work (the harness's rare 60 s hang).
  shut_down_ = true;
  for (auto& c : gateways_) c->close();
  for (auto& c : consoles_) c->close();
  for (auto& c : insurers_) c->close();
  asio::post(rep_ioc_, [this] {
    rep_timer_.cancel();
    for (auto& c : reporters_) c->close();
  });
  gw_work_.reset();
  rep_work_.reset();
  orc_work_.reset();
  timer_.cancel();
  progress_timer_.cancel();
  beast::error_code ignored;
  signals_.cancel(ignored);
}

std::uint64_t Sim::pending_reports() const {
  return reports_sent_.load() - std::min(reports_sent_.load(), accepted_count_.load());
}

void Sim::set_status(Unit& u, Status s) {
  u.status = s;
  if (s != Status::available && !busy_listed_[u.idx]) {
    busy_listed_[u.idx] = 1;
    busy_.push_back(static_cast<std::uint32_t>(u.idx));
  }
  // Availability with the time it last changed, so that the oracle (a little later, on
  // its own thread) can tell what it was at a report's send time.
  const std::uint64_t avail = s == Status::available ? 1 : 0;
  if ((free_[u.idx].load(std::memory_order_relaxed) & 1) != avail)
    free_[u.idx].store((static_cast<std::uint64_t>(mono_us()) << 1) | avail, std::memory_order_relaxed);
}

std::vector<char> Sim::blocked_gateways() {
  std::vector<char> blocked(gateways_.size());
  for (std::size_t g = 0; g < gateways_.size(); ++g)
    blocked[g] = gateways_[g]->queued_bytes() > (opt_.max_queue_mib << 20) || !gateways_[g]->open();
  return blocked;
}

void Sim::move_and_send(Millis now, double dt, std::size_t slice) {
  if (dt > 5) dt = 5;
  std::vector<std::string> frames(gateways_.size());
  std::vector<std::size_t> counts(gateways_.size());
  const auto blocked = blocked_gateways();
  std::uniform_real_distribution<double> turn(-20, 20), u01(0, 1);
  for (std::size_t i = slice; i < units_.size(); i += opt_.slices) {
    auto& u = units_[i];
    move(u, now, dt, turn, u01);
    if (blocked[u.gateway]) {
      ++positions_held_;
      continue;
    }
    auto& f = frames[u.gateway];
    f += f.empty() ? '[' : ',';
    fmt::format_to(std::back_inserter(f),
                   R"({{"type":"position","unit":"{}","lat":{:.6f},"lon":{:.6f},"ts":{},"speed_kmh":{:.1f},"heading":{:.0f}}})",
                   u.def.id, u.pos.lat, u.pos.lon, now, u.speed_mps * 3.6, u.heading);
    sent_[u.idx].store(pack(u.pos), std::memory_order_relaxed);
    positions_sent_.fetch_add(1, std::memory_order_relaxed);
    if (++counts[u.gateway] >= opt_.batch || f.size() > 56 * 1024) {  // frames stay under 64 KiB
      f += ']';
      gateways_[u.gateway]->send(std::move(f));
      f.clear();
      counts[u.gateway] = 0;
    }
  }
  for (std::size_t g = 0; g < frames.size(); ++g)
    if (!frames[g].empty()) {
      frames[g] += ']';
      gateways_[g]->send(std::move(frames[g]));
    }
}

void Sim::prepare_flood() {
  flood_.assign(gateways_.size(), {});
  std::vector<FloodFrame*> open(gateways_.size(), nullptr);
  std::vector<std::size_t> counts(gateways_.size());
  for (auto& u : units_) {
    auto& frames = flood_[u.gateway];
    if (!open[u.gateway] || counts[u.gateway] >= opt_.batch || open[u.gateway]->text.size() > 56 * 1024) {
      if (open[u.gateway]) open[u.gateway]->text += ']';
      frames.emplace_back();
      open[u.gateway] = &frames.back();
      counts[u.gateway] = 0;
    }
    auto& f = *open[u.gateway];
    f.text += f.text.size() ? ',' : '[';
    // Five decimals then the patched sixth, so that patching never carries.
    const double lat5 = std::floor(u.def.start.lat * 1e5) / 1e5, lon5 = std::floor(u.def.start.lon * 1e5) / 1e5;
    fmt::format_to(std::back_inserter(f.text), R"({{"type":"position","unit":"{}","lat":{:.5f})", u.def.id, lat5);
    f.lat_at.push_back(static_cast<std::uint32_t>(f.text.size()));
    fmt::format_to(std::back_inserter(f.text), R"(0,"lon":{:.5f})", lon5);
    f.lon_at.push_back(static_cast<std::uint32_t>(f.text.size()));
    f.text += R"(0,"ts":)";
    f.ts_at.push_back(static_cast<std::uint32_t>(f.text.size()));
    fmt::format_to(std::back_inserter(f.text), R"({},"speed_kmh":12.0,"heading":90}})", std::string(13, '0'));
    u.pos = {lat5, lon5};
    sent_[u.idx].store(pack(u.pos), std::memory_order_relaxed);
    ++counts[u.gateway];
  }
  for (auto* f : open)
    if (f) f->text += ']';
}

Millis Sim::flood_send(Millis ts) {
  // One jitter step (one coordinate, one unit of the sixth decimal: at most 0.11 m) about
  // every 10 ms, and never less than 2 ms after the previous fix: under 200 km/h at any
  // rate. A cycle of 8 steps.
  static constexpr char lat_wave[] = "01122110", lon_wave[] = "00112211";
  if (ts - flood_step_ts_ >= 10) {
    ts = std::max(ts, last_pos_ms_ + 2);
    flood_step_ts_ = ts;
    ++flood_step_;
  }
  const char dlat = lat_wave[flood_step_ % 8], dlon = lon_wave[flood_step_ % 8];
  const std::string tss = fmt::format("{:013d}", ts);
  const auto blocked = blocked_gateways();
  for (std::size_t g = 0; g < flood_.size(); ++g) {
    for (auto& f : flood_[g]) {
      if (blocked[g]) {
        positions_held_ += f.ts_at.size();
        continue;
      }
      for (auto at : f.ts_at) std::memcpy(f.text.data() + at, tss.data(), 13);
      for (auto at : f.lat_at) f.text[at] = dlat;
      for (auto at : f.lon_at) f.text[at] = dlon;
      gateways_[g]->send(f.text);
      positions_sent_.fetch_add(f.ts_at.size(), std::memory_order_relaxed);
    }
  }
  return ts;
}

template <class Turn, class U01>
void Sim::move(Unit& u, Millis now, double dt, Turn& turn, U01& u01) {
  const bool heli = u.def.kind == "heli";
  if (u.status == Status::en_route || (u.status == Status::assigned && !opt_.demo)) {
    // Straight to the target at working speed.
    u.speed_mps = heli ? 200 / 3.6 : (u.def.kind == "car" ? 45 / 3.6 : 40 / 3.6);
    if (!u.path.empty()) {  // along the roads: point after point of the route
      double left = u.speed_mps * dt;
      while (left > 0 && u.path_i < u.path.size()) {
        const geo::LatLon next = u.path[u.path_i];
        const double d = geo::distance_m(u.pos, next);
        if (d > 0.01)
          u.heading = std::fmod(geo::rad2deg(std::atan2(next.lon - u.pos.lon, next.lat - u.pos.lat)) + 360, 360);
        if (d <= left) {
          u.pos = next;
          left -= d;
          ++u.path_i;
        } else {
          u.pos.lat += (next.lat - u.pos.lat) * left / d;
          u.pos.lon += (next.lon - u.pos.lon) * left / d;
          left = 0;
        }
      }
      return;
    }
    const double d = geo::distance_m(u.pos, u.target);
    const double step = std::min(d, u.speed_mps * dt);
    if (d > 1) {
      const double f = step / d;
      u.pos.lat += (u.target.lat - u.pos.lat) * f;
      u.pos.lon += (u.target.lon - u.pos.lon) * f;
      u.heading = std::fmod(geo::rad2deg(std::atan2(u.target.lon - u.pos.lon, u.target.lat - u.pos.lat)) + 360, 360);
    }
    return;
  }
  if (heli || u.status != Status::available) {
    u.speed_mps = 0;
    return;
  }
  // Patrol: drift, stop now and then, stay near home.
  if (now < u.stop_until) {
    u.speed_mps = 0;
    return;
  }
  if (u01(rng_) < 0.01 * dt) {
    u.stop_until = now + static_cast<Millis>(10000 + u01(rng_) * 50000);
    u.speed_mps = 0;
    return;
  }
  u.speed_mps = (u.def.kind == "car" ? 35 : 28) / 3.6 * (0.6 + 0.8 * u01(rng_));
  u.heading = std::fmod(u.heading + turn(rng_) * dt + 360, 360);
  if (geo::distance_m(u.pos, u.def.start) > 4000)  // head home
    u.heading = std::fmod(geo::rad2deg(std::atan2(u.def.start.lon - u.pos.lon, u.def.start.lat - u.pos.lat)) + 360, 360);
  const double d = u.speed_mps * dt;
  u.pos.lat += d * std::cos(geo::deg2rad(u.heading)) / 111195.0;
  u.pos.lon += d * std::sin(geo::deg2rad(u.heading)) / (111195.0 * std::cos(geo::deg2rad(u.pos.lat)));
}

void Sim::crews(Millis now) {
  std::uniform_real_distribution<double> u01(0, 1);
  for (std::size_t k = 0; k < busy_.size();) {
    Unit& u = units_[busy_[k]];
    if (u.status == Status::available) {  // freed since the last round: off the list
      busy_listed_[u.idx] = 0;
      busy_[k] = busy_.back();
      busy_.pop_back();
      continue;
    }
    ++k;
    if (now < u.next_action) continue;
    auto& gw = *gateways_[u.gateway];
    if (u.status == Status::assigned) {
      if (u.will_decline) {
        gw.send(fmt::format(R"({{"type":"decline","assignment":"{}","reason":"sim: busy"}})", u.assignment));
        ++declines_;
        set_status(u, Status::available);
        u.assignment.clear();
        continue;
      }
      gw.send(fmt::format(R"({{"type":"ack","assignment":"{}"}})", u.assignment));
      set_status(u, Status::en_route);
      u.next_action = now + 500;
    } else if (u.status == Status::en_route) {
      if (geo::distance_m(u.pos, u.target) < 30 || (!opt_.demo && now - u.last_assign > 3000)) {
        gw.send(fmt::format(R"({{"type":"arrived","assignment":"{}"}})", u.assignment));
        set_status(u, Status::on_scene);
        u.next_action = now + static_cast<Millis>(opt_.demo ? 20000 + u01(rng_) * 60000 : 500 + u01(rng_) * 1500);
      } else {
        u.next_action = now + 500;
      }
    } else if (u.status == Status::on_scene) {
      gw.send(fmt::format(R"({{"type":"cleared","assignment":"{}"}})", u.assignment));
      set_status(u, Status::available);
      u.assignment.clear();
      u.incident.clear();
      ++cleared_;
    }
  }
}

void Sim::console_duties(Millis now) {
  // The dispatcher settles remote incidents: liability after a little while.
  while (!remote_queue_.empty() && remote_queue_.front().first <= now) {
    const auto [when, incident] = remote_queue_.front();
    remote_queue_.pop_front();
    auto it = remote_plate_.find(incident);
    if (!consoles_.empty() && it != remote_plate_.end())
      consoles_.front()->send(
          fmt::format(R"({{"type":"liability","incident":"{}","at_fault":"{}","note":"sim"}})", incident, it->second));
  }
  while (!pay_queue_.empty() && pay_queue_.front().first <= now) {
    auto [when, what] = pay_queue_.front();
    pay_queue_.pop_front();
    if (what.first->open())
      what.first->send(fmt::format(R"({{"type":"claim_paid","claim":"{}","amount":{}}})", what.second, 1000 + claims_ % 5000));
  }
}

void Sim::on_gateway_message(const json::object& m, std::int64_t arrival_us) {
  if (const auto* t = m.if_contains("type"); t && t->is_string() && t->as_string() == "assign") {
    // index_ and the units' kinds never change after construction: safe to read here.
    if (auto* un = m.if_contains("unit"); un && un->is_string()) {
      auto it = index_.find(std::string(un->as_string()));
      const auto* inc = m.if_contains("incident");
      if (it != index_.end() && is_moto_[it->second] && inc && inc->is_string()) {
        std::string incident(inc->as_string());
        bool first;
        {
          std::lock_guard lock(shared_mu_);
          first = first_assign_.emplace(incident, std::make_pair(arrival_us, std::string(un->as_string()))).second;
        }
        if (first) asio::post(rep_ioc_, [this, incident = std::move(incident)] { on_first_assign(incident); });
      }
    }
  }
  asio::post(ioc_, [this, m = json::object(m)] { on_unit_message(m); });
}

void Sim::on_unit_message(const json::object& m) {
  const std::string type(m.at("type").as_string());
  if (type == "error") return on_error(m);
  auto unit_it = m.if_contains("unit") ? index_.find(std::string(m.at("unit").as_string())) : index_.end();
  if (unit_it == index_.end()) return;
  Unit& u = units_[unit_it->second];
  const Millis now = now_ms();
  std::uniform_real_distribution<double> u01(0, 1);
  if (type == "assign") {
    assigns_.fetch_add(1, std::memory_order_relaxed);
    const std::string incident(m.at("incident").as_string());
    u.last_assign = now;
    u.assign_times.push_back(now);
    if (u.status != Status::available) {
      // The server sent a unit the simulator still thinks busy: report it.
      ++errors_;
      std::lock_guard lock(shared_mu_);
      if (error_samples_.size() < 10)
        error_samples_.push_back(fmt::format("assign {} to {} while it is busy with {}", incident, u.def.id, u.assignment));
    }
    set_status(u, Status::assigned);
    u.assignment = std::string(m.at("assignment").as_string());
    u.incident = incident;
    u.target = {m.at("lat").to_number<double>(), m.at("lon").to_number<double>()};
    u.path.clear();
    u.path_i = 0;
    if (roads_ && u.def.kind != "heli") {
      auto r = roads_->route(u.pos, u.target);
      if (r.found) u.path = std::move(r.points);
    }
    u.will_decline = u.def.kind == "moto" && u01(rng_) < 0.05;
    u.next_action = now + static_cast<Millis>(opt_.demo ? 2000 + u01(rng_) * 6000 : 50 + u01(rng_) * 300);
  } else if (type == "cancel") {
    u.last_assign = now;
    if (u.assignment == std::string(m.at("assignment").as_string())) {
      set_status(u, Status::available);
      u.assignment.clear();
      u.incident.clear();
    }
    ++cancels_;
  }
}

void Sim::on_console_message(const json::object& m) {
  const std::string type(m.at("type").as_string());
  if (type == "error") on_error(m);
}

void Sim::on_insurer_message(const std::shared_ptr<Conn>& c, const json::object& m) {
  const std::string type(m.at("type").as_string());
  if (type == "error") return on_error(m);
  if (type != "claim") return;
  ++claims_;
  std::uniform_real_distribution<double> u01(0, 1);
  pay_queue_.emplace_back(now_ms() + static_cast<Millis>(opt_.demo ? 30000 + u01(rng_) * 240000 : 100 + u01(rng_) * 400),
                          std::make_pair(c, std::string(m.at("claim").as_string())));
  std::sort(pay_queue_.begin(), pay_queue_.end(), [](auto& a, auto& b) { return a.first < b.first; });
}

void Sim::on_error(const json::object& m) {
  ++errors_;
  std::lock_guard lock(shared_mu_);
  if (error_samples_.size() < 10) error_samples_.push_back(json::serialize(m));
}

}  // namespace dispatch::sim_run
