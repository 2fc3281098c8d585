#include "engine/signals.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace dispatch::engine {

namespace {

std::string pair_key(const std::string& a, const std::string& b) {
  std::string k = a < b ? a : b;
  k += '\n';
  k += a < b ? b : a;
  return k;
}

// "10 min", "2 h 30 min", "45 s".
std::string duration(Millis ms) {
  const long long s = (ms < 0 ? -ms : ms) / 1000;
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%lld s", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lld min", s / 60);
  else std::snprintf(buf, sizeof buf, "%lld h %lld min", s / 3600, (s % 3600) / 60);
  return buf;
}

std::string km(double m) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f km", m / 1000.0);
  return buf;
}

// "I-000001 (2026-11-02 10:00), I-000004 (2026-11-20 08:00) and this one"
template <class H>
std::string listing(const std::vector<const H*>& others) {
  std::string s;
  for (std::size_t i = 0; i < others.size(); ++i) {
    if (i) s += ", ";
    s += others[i]->incident + " (" + china_time(others[i]->ts) + ")";
  }
  return s + (others.empty() ? "this one" : " and this one");
}

}  // namespace

std::string china_time(Millis ts) {
  // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), at UTC+8.
  const long long t = ts / 1000 + 8 * 3600 - (ts % 1000 < 0 ? 1 : 0);
  long long days = t / 86400, secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  days += 719468;
  const long long era = (days >= 0 ? days : days - 146096) / 146097;
  const long long doe = days - era * 146097;
  const long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const long long mp = (5 * doy + 2) / 153;
  const long long d = doy - (153 * mp + 2) / 5 + 1;
  const long long m = mp < 10 ? mp + 3 : mp - 9;
  const long long y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lld %02lld:%02lld", y, m, d, secs / 3600, (secs % 3600) / 60);
  return buf;
}

SignalBook::SignalBook(SignalConfig config) : config_(config) {}

std::string SignalBook::normalize_plate(std::string_view plate) {
  std::string k;
  k.reserve(plate.size());
  for (std::size_t i = 0; i < plate.size(); ++i) {
    const char c = plate[i];
    if (c == ' ' || c == '.' || c == '-' || c == '\t') continue;
    // U+00B7 MIDDLE DOT (C2 B7) and U+30FB KATAKANA MIDDLE DOT (E3 83 BB), as in "渝A·12345".
    if (static_cast<unsigned char>(c) == 0xC2 && i + 1 < plate.size() &&
        static_cast<unsigned char>(plate[i + 1]) == 0xB7) {
      ++i;
      continue;
    }
    if (static_cast<unsigned char>(c) == 0xE3 && i + 2 < plate.size() &&
        static_cast<unsigned char>(plate[i + 1]) == 0x83 && static_cast<unsigned char>(plate[i + 2]) == 0xBB) {
      i += 2;
      continue;
    }
    k += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  return k;
}

std::uint32_t SignalBook::station_id(std::string_view s) {
  if (auto it = station_index_.find(s); it != station_index_.end()) return it->second;
  const auto id = static_cast<std::uint32_t>(stations_.size());
  stations_.emplace_back(s);
  station_index_.emplace(std::string(s), id);
  return id;
}

std::uint32_t SignalBook::plate_slot(const std::string& key) {
  if (auto it = by_plate_.find(key); it != by_plate_.end()) return it->second;
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot].key = key;
  by_plate_.emplace(key, slot);
  return slot;
}

const SignalBook::Plate* SignalBook::find_plate(std::string_view key) const {
  auto it = by_plate_.find(key);
  return it == by_plate_.end() ? nullptr : &slots_[it->second];
}

void SignalBook::release_if_empty(std::uint32_t slot) {
  Plate& p = slots_[slot];
  if (p.key.empty() || !p.seen.empty() || !p.incidents.empty()) return;
  by_plate_.erase(p.key);
  p.key.clear();
  p.seen = {};
  p.incidents = {};
  free_.push_back(slot);
}

void SignalBook::drop_oldest_seen(Plate& p) {
  if (p.seen.empty()) return;
  p.seen.erase(p.seen.begin());
  --sightings_;
}

bool SignalBook::add_sighting(std::string_view station, std::string_view plate, Millis ts, geo::LatLon at,
                              Millis now) {
  if (ts < now - config_.sighting_window_ms || ts > now + config_.sighting_window_ms) return false;
  const std::string key = normalize_plate(plate);
  if (key.empty()) return false;
  const std::uint32_t st = station_id(station);
  const std::uint32_t slot = plate_slot(key);
  Plate& p = slots_[slot];
  // Sorted by ts; sightings mostly arrive in order, so this is an append.
  auto pos = std::upper_bound(p.seen.begin(), p.seen.end(), ts, [](Millis t, const Seen& s) { return t < s.ts; });
  for (auto it = pos; it != p.seen.begin();) {
    --it;
    if (it->ts != ts) break;
    if (it->station == st) return false;  // the same sighting again
  }
  p.seen.insert(pos, Seen{ts, at, st});
  ++sightings_;
  seen_queue_.emplace_back(ts, slot);
  if (p.seen.size() > config_.max_per_plate) drop_oldest_seen(p);
  // Over the global bound, the oldest entries of the queue go first, whatever their time.
  while (sightings_ > config_.max_sightings && !seen_queue_.empty()) {
    const auto [t, s] = seen_queue_.front();
    seen_queue_.pop_front();
    (void)t;
    drop_oldest_seen(slots_[s]);
    release_if_empty(s);
  }
  return true;
}

void SignalBook::insert_hist(std::vector<Hist>& v, Millis ts, std::string_view incident, std::size_t cap) {
  auto pos = std::lower_bound(v.begin(), v.end(), std::pair<Millis, std::string_view>(ts, incident),
                              [](const Hist& h, const std::pair<Millis, std::string_view>& k) {
                                return h.ts < k.first || (h.ts == k.first && h.incident < k.second);
                              });
  if (pos != v.end() && pos->ts == ts && pos->incident == incident) return;
  v.insert(pos, Hist{ts, std::string(incident)});
  if (v.size() > cap) v.erase(v.begin());
}

void SignalBook::add_incident(std::string_view incident, Millis reported_ts, std::span<const std::string> plates,
                              Millis now) {
  if (reported_ts < now - config_.history_ms || reported_ts > now + config_.sighting_window_ms) return;
  std::vector<std::string> keys;
  for (const auto& pl : plates) {
    std::string k = normalize_plate(pl);
    if (!k.empty() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(std::move(k));
  }
  for (const auto& k : keys) {
    const std::uint32_t slot = plate_slot(k);
    insert_hist(slots_[slot].incidents, reported_ts, incident, config_.max_history_per_key);
    hist_queue_.emplace_back(reported_ts, slot);
  }
  for (std::size_t i = 0; i < keys.size(); ++i)
    for (std::size_t j = i + 1; j < keys.size(); ++j) {
      std::string pk = pair_key(keys[i], keys[j]);
      insert_hist(pairs_[pk], reported_ts, incident, config_.max_history_per_key);
      pair_queue_.emplace_back(reported_ts, std::move(pk));
    }
}

void SignalBook::evict(Millis now) {
  const Millis seen_cut = now - config_.sighting_window_ms;
  while (!seen_queue_.empty() && seen_queue_.front().first < seen_cut) {
    const std::uint32_t slot = seen_queue_.front().second;
    seen_queue_.pop_front();
    Plate& p = slots_[slot];
    const auto keep = std::find_if(p.seen.begin(), p.seen.end(), [&](const Seen& s) { return s.ts >= seen_cut; });
    sightings_ -= static_cast<std::size_t>(keep - p.seen.begin());
    p.seen.erase(p.seen.begin(), keep);
    release_if_empty(slot);
  }
  const Millis hist_cut = now - config_.history_ms;
  auto drop_old = [&](std::vector<Hist>& v) {
    v.erase(v.begin(), std::find_if(v.begin(), v.end(), [&](const Hist& h) { return h.ts >= hist_cut; }));
  };
  while (!hist_queue_.empty() && hist_queue_.front().first < hist_cut) {
    const std::uint32_t slot = hist_queue_.front().second;
    hist_queue_.pop_front();
    drop_old(slots_[slot].incidents);
    release_if_empty(slot);
  }
  while (!pair_queue_.empty() && pair_queue_.front().first < hist_cut) {
    auto it = pairs_.find(pair_queue_.front().second);
    pair_queue_.pop_front();
    if (it == pairs_.end()) continue;
    drop_old(it->second);
    if (it->second.empty()) pairs_.erase(it);
  }
}

std::vector<SignalBook::Hist> SignalBook::window_of(const std::vector<Hist>& hist, std::string_view incident,
                                                    Millis reported_ts) const {
  // Every incident of the key and this one (at its current report time), by (ts, id);
  // then the window of history_ms holding this one with the most incidents in it (the
  // earliest such window on a tie).
  std::vector<Hist> all;
  all.reserve(hist.size() + 1);
  for (const auto& h : hist)
    if (h.incident != incident) all.push_back(h);
  all.push_back(Hist{reported_ts, std::string(incident)});
  std::sort(all.begin(), all.end(), [](const Hist& a, const Hist& b) {
    return a.ts < b.ts || (a.ts == b.ts && a.incident < b.incident);
  });
  std::size_t k = 0;
  while (all[k].incident != incident) ++k;
  std::size_t best_i = k, best_n = 1;
  for (std::size_t i = 0; i <= k; ++i) {
    if (all[i].ts < reported_ts - config_.history_ms) continue;
    const Millis end = all[i].ts + config_.history_ms;
    std::size_t j = k + 1;
    while (j < all.size() && all[j].ts <= end) ++j;
    if (j - i > best_n) {
      best_n = j - i;
      best_i = i;
    }
  }
  return {all.begin() + static_cast<std::ptrdiff_t>(best_i),
          all.begin() + static_cast<std::ptrdiff_t>(best_i + best_n)};
}

std::vector<Signal> SignalBook::check(std::string_view incident, geo::LatLon scene, Millis reported_ts,
                                      std::span<const std::string> plates) const {
  std::vector<Signal> out;
  // The incident's plates once each (as first written), with their keys.
  std::vector<std::pair<std::string, const std::string*>> ps;
  for (const auto& pl : plates) {
    std::string k = normalize_plate(pl);
    if (k.empty()) continue;
    if (std::none_of(ps.begin(), ps.end(), [&](const auto& e) { return e.first == k; }))
      ps.emplace_back(std::move(k), &pl);
  }
  const double speed_m_per_ms = config_.max_speed_kmh / 3.6 / 1000.0;
  auto self_only = [&](const std::vector<Hist>& w) {
    std::vector<const Hist*> others;
    for (const Hist& h : w)
      if (h.incident != incident) others.push_back(&h);
    return others;
  };

  // impossible_travel: the sighting that misses by most, per plate.
  for (const auto& [key, text] : ps) {
    const Plate* p = find_plate(key);
    if (!p) continue;
    const Seen* worst = nullptr;
    double worst_excess = 0, worst_d = 0;
    Millis worst_need = 0;
    for (const auto& s : p->seen) {
      const double d = geo::distance_m(s.pos, scene);
      const double eff = std::max(0.0, d - config_.position_slack_m);
      const double need = eff / speed_m_per_ms;
      const Millis gap = reported_ts > s.ts ? reported_ts - s.ts : s.ts - reported_ts;
      const double excess = need - static_cast<double>(gap);
      if (excess <= 0) continue;
      if (!worst || excess > worst_excess) {
        worst = &s;
        worst_excess = excess;
        worst_d = d;
        worst_need = static_cast<Millis>(std::ceil(need));
      }
    }
    if (!worst) continue;
    Signal sig;
    sig.kind = "impossible_travel";
    sig.plates = {*text};
    SignalSighting ev;
    ev.station = stations_[worst->station];
    ev.plate = *text;
    ev.ts = worst->ts;
    ev.lat = worst->pos.lat;
    ev.lon = worst->pos.lon;
    ev.distance_m = std::round(worst_d);
    ev.elapsed_ms = reported_ts > worst->ts ? reported_ts - worst->ts : worst->ts - reported_ts;
    ev.min_travel_ms = worst_need;
    char speed[32];
    std::snprintf(speed, sizeof speed, "%g km/h", config_.max_speed_kmh);
    sig.detail = *text + " was seen at station " + ev.station + " at " + china_time(ev.ts) + " (UTC+8), " +
                 duration(ev.elapsed_ms) + (worst->ts <= reported_ts ? " before" : " after") + " the report, " +
                 km(worst_d) + " from the scene: at " + speed + " that needs at least " + duration(worst_need);
    sig.sighting = std::move(ev);
    out.push_back(std::move(sig));
  }

  // repeat_plate
  for (const auto& [key, text] : ps) {
    const Plate* p = find_plate(key);
    static const std::vector<Hist> none;
    const auto w = window_of(p ? p->incidents : none, incident, reported_ts);
    if (w.size() < config_.repeat_plate_min) continue;
    const auto others = self_only(w);
    Signal sig;
    sig.kind = "repeat_plate";
    sig.plates = {*text};
    for (const Hist* h : others) sig.incidents.push_back(h->incident);
    sig.detail = *text + " is in " + std::to_string(w.size()) + " incidents within 30 days: " + listing(others);
    out.push_back(std::move(sig));
  }

  // repeat_pair
  for (std::size_t i = 0; i < ps.size(); ++i)
    for (std::size_t j = i + 1; j < ps.size(); ++j) {
      auto it = pairs_.find(pair_key(ps[i].first, ps[j].first));
      static const std::vector<Hist> none;
      const auto w = window_of(it == pairs_.end() ? none : it->second, incident, reported_ts);
      if (w.size() < config_.repeat_pair_min) continue;
      const auto others = self_only(w);
      Signal sig;
      sig.kind = "repeat_pair";
      sig.plates = {*ps[i].second, *ps[j].second};
      for (const Hist* h : others) sig.incidents.push_back(h->incident);
      sig.detail = *ps[i].second + " and " + *ps[j].second + " were together in " + std::to_string(w.size()) +
                   " incidents within 30 days: " + listing(others);
      out.push_back(std::move(sig));
    }
  return out;
}

std::vector<Signal> SignalBook::merge(const std::vector<Signal>& before, std::vector<Signal> now) {
  for (const auto& old : before) {
    const bool again = std::any_of(now.begin(), now.end(), [&](const Signal& s) {
      return s.kind == old.kind && s.plates == old.plates;
    });
    if (!again) now.push_back(old);
  }
  return now;
}

}  // namespace dispatch::engine
