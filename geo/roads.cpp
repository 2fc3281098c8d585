#include "geo/roads.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace dispatch::geo {

namespace {

struct ClassInfo {
  RoadClass cls;
  const char* tag;
  double kmh;
};
// Urban speeds, below the limits: what a marked car or a motorcycle keeps in Chongqing's
// traffic with lights and hills. Tagged maxspeed replaces them (section "Roads" of
// docs/protocol.md).
constexpr ClassInfo class_table[] = {
    {RoadClass::motorway, "motorway", 80},         {RoadClass::trunk, "trunk", 60},
    {RoadClass::primary, "primary", 45},           {RoadClass::secondary, "secondary", 40},
    {RoadClass::tertiary, "tertiary", 35},         {RoadClass::unclassified, "unclassified", 30},
    {RoadClass::residential, "residential", 25},   {RoadClass::living_street, "living_street", 10},
    {RoadClass::service, "service", 15},           {RoadClass::motorway_link, "motorway_link", 45},
    {RoadClass::trunk_link, "trunk_link", 40},     {RoadClass::primary_link, "primary_link", 35},
    {RoadClass::secondary_link, "secondary_link", 30}, {RoadClass::tertiary_link, "tertiary_link", 25},
};

constexpr double inf = std::numeric_limits<double>::infinity();

std::uint32_t weight_ms(double metres, double kmh) {
  const double ms = metres / (kmh / 3.6) * 1000.0;
  return static_cast<std::uint32_t>(std::clamp(std::llround(ms), 1LL, 4'000'000'000LL));
}

}  // namespace

const char* road_class_name(RoadClass c) { return class_table[static_cast<int>(c)].tag; }

bool road_class_from_tag(const char* highway, RoadClass& out) {
  if (highway == nullptr) return false;
  for (const auto& ci : class_table) {
    if (std::strcmp(ci.tag, highway) == 0) {
      out = ci.cls;
      return true;
    }
  }
  return false;
}

double class_speed_kmh(RoadClass c) { return class_table[static_cast<int>(c)].kmh; }

double parse_maxspeed_kmh(const char* value) {
  if (value == nullptr) return 0;
  char* end = nullptr;
  const double v = std::strtod(value, &end);
  if (end == value || !std::isfinite(v) || v <= 0 || v > 300) return 0;
  while (*end == ' ') ++end;
  if (std::strncmp(end, "mph", 3) == 0) return v * 1.609344;
  if (*end == '\0' || *end == ';' || std::strncmp(end, "km/h", 4) == 0 || std::strncmp(end, "kmh", 3) == 0)
    return v;
  return 0;  // "walk", "knots", "none", "RU:urban"...: left to the class speed
}

struct RoadNetwork::Scratch {
  std::vector<double> dist;          // ms from the node to the target
  std::vector<std::int32_t> next;    // next node toward the target; -2: the target's segment
  std::vector<std::int32_t> next_seg;
  std::vector<std::uint8_t> need;
  std::vector<std::int32_t> touched;
  using Item = std::pair<double, std::int32_t>;
  std::vector<Item> heap;
  explicit Scratch(std::size_t n) : dist(n, inf), next(n, -1), next_seg(n, -1), need(n, 0) {}
  void reset() {
    for (auto v : touched) {
      dist[v] = inf;
      next[v] = -1;
      next_seg[v] = -1;
      need[v] = 0;
    }
    touched.clear();
    heap.clear();
  }
};

RoadNetwork::~RoadNetwork() = default;

std::unique_ptr<RoadNetwork> RoadNetwork::from_ways(const std::vector<RoadWay>& ways) {
  std::unique_ptr<RoadNetwork> net(new RoadNetwork());
  auto& n = *net;
  std::unordered_map<std::int64_t, std::int32_t> by_id;
  struct PairHash {
    std::size_t operator()(const std::pair<std::uint64_t, std::uint64_t>& k) const {
      return std::hash<std::uint64_t>()(k.first * 0x9E3779B97F4A7C15ULL ^ k.second);
    }
  };
  std::unordered_map<std::pair<std::uint64_t, std::uint64_t>, std::int32_t, PairHash> by_pos;
  auto node_of = [&](const RoadWay& w, std::size_t i) -> std::int32_t {
    const LatLon p = w.points[i];
    std::int32_t* slot = nullptr;
    if (!w.node_ids.empty()) {
      auto [it, fresh] = by_id.try_emplace(w.node_ids[i], static_cast<std::int32_t>(n.lat_.size()));
      slot = &it->second;
      if (!fresh) return *slot;
    } else {
      auto [it, fresh] = by_pos.try_emplace({std::bit_cast<std::uint64_t>(p.lat), std::bit_cast<std::uint64_t>(p.lon)},
                                            static_cast<std::int32_t>(n.lat_.size()));
      slot = &it->second;
      if (!fresh) return *slot;
    }
    n.lat_.push_back(p.lat);
    n.lon_.push_back(p.lon);
    return *slot;
  };
  n.way_begin_.push_back(0);
  for (const auto& w : ways) {
    if (w.points.size() < 2 || (!w.forward && !w.backward)) continue;
    if (!w.node_ids.empty() && w.node_ids.size() != w.points.size())
      throw std::invalid_argument("RoadWay: node_ids and points differ in size");
    const double kmh = w.speed_kmh > 0 ? w.speed_kmh : class_speed_kmh(w.cls);
    std::int32_t prev = -1;
    LatLon prev_p{};
    for (std::size_t i = 0; i < w.points.size(); ++i) {
      if (!valid(w.points[i])) {
        prev = -1;
        continue;
      }
      const std::int32_t cur = node_of(w, i);
      if (prev >= 0 && prev != cur) {
        const double len = distance_m(prev_p, w.points[i]);
        n.seg_a_.push_back(prev);
        n.seg_b_.push_back(cur);
        n.seg_len_m_.push_back(static_cast<float>(len));
        const std::uint32_t wt = weight_ms(len, kmh);
        n.seg_w_ab_.push_back(w.forward ? wt : 0);
        n.seg_w_ba_.push_back(w.backward ? wt : 0);
      }
      prev = cur;
      prev_p = w.points[i];
    }
    if (n.seg_a_.size() == n.way_begin_.back()) continue;  // nothing kept
    n.way_begin_.push_back(static_cast<std::uint32_t>(n.seg_a_.size()));
    n.way_class_.push_back(w.cls);
    n.way_dir_.push_back(static_cast<std::uint8_t>((w.forward ? 1 : 0) | (w.backward ? 2 : 0)));
  }
  if (n.seg_a_.empty()) throw std::runtime_error("no drivable road segment");
  n.build_graph();
  n.build_grid();
  n.scratch_ = std::make_unique<Scratch>(n.lat_.size());
  n.route_scratch_ = std::make_unique<Scratch>(n.lat_.size());
  return net;
}

void RoadNetwork::build_graph() {
  const std::size_t nodes = lat_.size();
  in_begin_.assign(nodes + 1, 0);
  for (std::size_t s = 0; s < seg_a_.size(); ++s) {
    if (seg_w_ab_[s]) ++in_begin_[seg_b_[s] + 1];
    if (seg_w_ba_[s]) ++in_begin_[seg_a_[s] + 1];
  }
  for (std::size_t v = 0; v < nodes; ++v) in_begin_[v + 1] += in_begin_[v];
  const std::size_t arcs = in_begin_[nodes];
  arc_from_.resize(arcs);
  arc_w_.resize(arcs);
  arc_seg_.resize(arcs);
  std::vector<std::uint32_t> fill(in_begin_.begin(), in_begin_.end() - 1);
  for (std::size_t s = 0; s < seg_a_.size(); ++s) {
    if (seg_w_ab_[s]) {
      const auto k = fill[seg_b_[s]]++;
      arc_from_[k] = seg_a_[s];
      arc_w_[k] = seg_w_ab_[s];
      arc_seg_[k] = static_cast<std::int32_t>(s);
    }
    if (seg_w_ba_[s]) {
      const auto k = fill[seg_a_[s]]++;
      arc_from_[k] = seg_b_[s];
      arc_w_[k] = seg_w_ba_[s];
      arc_seg_[k] = static_cast<std::int32_t>(s);
    }
  }
}

void RoadNetwork::build_grid() {
  double min_lat = inf, max_lat = -inf, min_lon = inf, max_lon = -inf;
  for (std::size_t i = 0; i < lat_.size(); ++i) {
    min_lat = std::min(min_lat, lat_[i]);
    max_lat = std::max(max_lat, lat_[i]);
    min_lon = std::min(min_lon, lon_[i]);
    max_lon = std::max(max_lon, lon_[i]);
  }
  lat0_ = min_lat;
  lon0_ = min_lon;
  ky_ = deg2rad(1.0) * earth_radius_m;
  kx_ = ky_ * std::cos(deg2rad((min_lat + max_lat) / 2));
  const double w = (max_lon - min_lon) * kx_, h = (max_lat - min_lat) * ky_;
  // About one segment per cell on average, never finer than 50 m nor over 4M cells.
  cell_m_ = std::max({50.0, std::sqrt(w * h / std::max<double>(1, static_cast<double>(seg_a_.size()))),
                      std::sqrt(w * h / 4e6)});
  gx_ = static_cast<int>(w / cell_m_) + 1;
  gy_ = static_cast<int>(h / cell_m_) + 1;
  const std::size_t cells = static_cast<std::size_t>(gx_) * static_cast<std::size_t>(gy_);
  auto cell_range = [&](std::size_t s, int& x0, int& x1, int& y0, int& y1) {
    const double xa = (lon_[seg_a_[s]] - lon0_) * kx_, ya = (lat_[seg_a_[s]] - lat0_) * ky_;
    const double xb = (lon_[seg_b_[s]] - lon0_) * kx_, yb = (lat_[seg_b_[s]] - lat0_) * ky_;
    x0 = std::clamp(static_cast<int>(std::min(xa, xb) / cell_m_), 0, gx_ - 1);
    x1 = std::clamp(static_cast<int>(std::max(xa, xb) / cell_m_), 0, gx_ - 1);
    y0 = std::clamp(static_cast<int>(std::min(ya, yb) / cell_m_), 0, gy_ - 1);
    y1 = std::clamp(static_cast<int>(std::max(ya, yb) / cell_m_), 0, gy_ - 1);
  };
  cell_begin_.assign(cells + 1, 0);
  int x0, x1, y0, y1;
  for (std::size_t s = 0; s < seg_a_.size(); ++s) {
    cell_range(s, x0, x1, y0, y1);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) ++cell_begin_[static_cast<std::size_t>(y) * gx_ + x + 1];
  }
  for (std::size_t c = 0; c < cells; ++c) cell_begin_[c + 1] += cell_begin_[c];
  cell_segs_.resize(cell_begin_[cells]);
  std::vector<std::uint32_t> fill(cell_begin_.begin(), cell_begin_.end() - 1);
  for (std::size_t s = 0; s < seg_a_.size(); ++s) {
    cell_range(s, x0, x1, y0, y1);
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x)
        cell_segs_[fill[static_cast<std::size_t>(y) * gx_ + x]++] = static_cast<std::int32_t>(s);
  }
}

std::size_t RoadNetwork::memory_bytes() const {
  auto b = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
  std::size_t total = b(lat_) + b(lon_) + b(seg_a_) + b(seg_b_) + b(seg_w_ab_) + b(seg_w_ba_) + b(seg_len_m_) +
                      b(in_begin_) + b(arc_from_) + b(arc_w_) + b(arc_seg_) + b(way_begin_) + b(way_class_) +
                      b(way_dir_) + b(cell_begin_) + b(cell_segs_);
  for (const auto* s : {scratch_.get(), route_scratch_.get()})
    if (s) total += b(s->dist) + b(s->next) + b(s->next_seg) + b(s->need) + b(s->touched) + b(s->heap);
  return total;
}

RoadNetwork::Snap RoadNetwork::snap(LatLon p) const {
  Snap best;
  if (!valid(p)) return best;
  const double px = (p.lon - lon0_) * kx_, py = (p.lat - lat0_) * ky_;
  const long cx = static_cast<long>(std::floor(px / cell_m_)), cy = static_cast<long>(std::floor(py / cell_m_));
  auto cheb = [&](long x, long y) { return std::max(std::labs(x - cx), std::labs(y - cy)); };
  const long r0 = std::max({0L, -cx, cx - (gx_ - 1), -cy, cy - (gy_ - 1)});
  const long r_max = std::max({cheb(0, 0), cheb(gx_ - 1, 0), cheb(0, gy_ - 1), cheb(gx_ - 1, gy_ - 1)});
  double best_d2 = inf, best_t = 0;
  auto consider_cell = [&](long x, long y) {
    if (x < 0 || y < 0 || x >= gx_ || y >= gy_) return;
    const std::size_t c = static_cast<std::size_t>(y) * gx_ + static_cast<std::size_t>(x);
    for (auto k = cell_begin_[c]; k < cell_begin_[c + 1]; ++k) {
      const std::int32_t s = cell_segs_[k];
      const double xa = (lon_[seg_a_[s]] - lon0_) * kx_, ya = (lat_[seg_a_[s]] - lat0_) * ky_;
      const double dx = (lon_[seg_b_[s]] - lon0_) * kx_ - xa, dy = (lat_[seg_b_[s]] - lat0_) * ky_ - ya;
      const double len2 = dx * dx + dy * dy;
      double t = len2 > 0 ? ((px - xa) * dx + (py - ya) * dy) / len2 : 0;
      t = std::clamp(t, 0.0, 1.0);
      const double ex = xa + t * dx - px, ey = ya + t * dy - py;
      const double d2 = ex * ex + ey * ey;
      if (d2 < best_d2 || (d2 == best_d2 && s < best.seg)) {
        best_d2 = d2;
        best.seg = s;
        best_t = t;
      }
    }
  };
  for (long r = r0; r <= r_max; ++r) {
    if (r == 0) {
      consider_cell(cx, cy);
    } else {
      for (long x = cx - r; x <= cx + r; ++x) {
        consider_cell(x, cy - r);
        consider_cell(x, cy + r);
      }
      for (long y = cy - r + 1; y <= cy + r - 1; ++y) {
        consider_cell(cx - r, y);
        consider_cell(cx + r, y);
      }
    }
    const double bound = static_cast<double>(r) * cell_m_;  // nearest any later ring can be
    if (best.seg >= 0 && best_d2 <= bound * bound) break;
  }
  if (best.seg < 0) return best;
  best.frac = best_t;
  const auto a = seg_a_[best.seg], b = seg_b_[best.seg];
  best.at = {lat_[a] + best_t * (lat_[b] - lat_[a]), lon_[a] + best_t * (lon_[b] - lon_[a])};
  best.offroad_m = distance_m(p, best.at);
  return best;
}

template <class OnSettled>
double RoadNetwork::reverse_search(const Snap& target, std::span<const std::int32_t> need, Scratch& s,
                                   OnSettled settled) const {
  s.reset();
  std::size_t remaining = 0;
  for (auto v : need) {
    if (v < 0 || s.need[v]) continue;
    if (s.dist[v] == inf && s.next[v] == -1) s.touched.push_back(v);
    s.need[v] = 1;
    ++remaining;
  }
  auto greater = [](const Scratch::Item& x, const Scratch::Item& y) { return x.first > y.first; };
  auto push = [&](std::int32_t v, double d, std::int32_t next, std::int32_t seg) {
    if (d >= s.dist[v]) return;
    if (s.dist[v] == inf && s.next[v] == -1 && !s.need[v]) s.touched.push_back(v);
    s.dist[v] = d;
    s.next[v] = next;
    s.next_seg[v] = seg;
    s.heap.emplace_back(d, v);
    std::push_heap(s.heap.begin(), s.heap.end(), greater);
  };
  const auto ts = target.seg;
  // The target lies partway along its segment: reach it from a going a->b, or from b.
  if (seg_w_ab_[ts]) push(seg_a_[ts], target.frac * seg_w_ab_[ts], -2, ts);
  if (seg_w_ba_[ts]) push(seg_b_[ts], (1 - target.frac) * seg_w_ba_[ts], -2, ts);
  double bound = inf;
  while (!s.heap.empty()) {
    const auto [d, u] = s.heap.front();
    if (d > s.dist[u]) {  // stale entry
      std::pop_heap(s.heap.begin(), s.heap.end(), greater);
      s.heap.pop_back();
      continue;
    }
    if (remaining == 0) return inf;  // complete: every needed node settled
    if (d > bound) return d;
    std::pop_heap(s.heap.begin(), s.heap.end(), greater);
    s.heap.pop_back();
    if (s.need[u] == 1) {
      s.need[u] = 2;
      --remaining;
      bound = std::min(bound, settled(u, d));
    }
    for (auto k = in_begin_[u]; k < in_begin_[u + 1]; ++k) push(arc_from_[k], d + arc_w_[k], u, arc_seg_[k]);
  }
  return inf;
}

namespace {
// Best time (ms along the roads) from a source snapped at (seg, frac), given the search.
// `via` gets the first road node (-1: straight along the shared segment, -3: none).
template <class Net, class S>
double source_cost(const Net& n, const RoadNetwork::Snap& src, const RoadNetwork::Snap& tgt, const S& s,
                   std::int32_t& via) {
  double best = inf;
  via = -3;
  const auto g = src.seg;
  const auto a = n.seg_a(g), b = n.seg_b(g);
  if (n.seg_w_ab(g) && s.need[b] == 2) {
    const double c = (1 - src.frac) * n.seg_w_ab(g) + s.dist[b];
    if (c < best) best = c, via = b;
  }
  if (n.seg_w_ba(g) && s.need[a] == 2) {
    const double c = src.frac * n.seg_w_ba(g) + s.dist[a];
    if (c < best) best = c, via = a;
  }
  if (g == tgt.seg) {
    double c = inf;
    if (src.frac <= tgt.frac && n.seg_w_ab(g)) c = (tgt.frac - src.frac) * n.seg_w_ab(g);
    if (src.frac >= tgt.frac && n.seg_w_ba(g)) c = std::min(c, (src.frac - tgt.frac) * n.seg_w_ba(g));
    if (c <= best) best = c, via = -1;
  }
  return best;
}
}  // namespace

void RoadNetwork::to_target(LatLon to, std::span<const LatLon> from, std::span<double> seconds) const {
  std::fill(seconds.begin(), seconds.end(), inf);
  const Snap t = snap(to);
  if (t.seg < 0) return;
  std::vector<Snap> snaps(from.size());
  std::vector<std::int32_t> need;
  need.reserve(from.size() * 2);
  // Sources by the road node they wait for, to price them as it settles (the bound).
  std::vector<std::pair<std::int32_t, std::uint32_t>> waits;
  waits.reserve(from.size() * 2);
  double best_ms = inf;  // the fastest source known so far, off-road leg included
  for (std::size_t i = 0; i < from.size(); ++i) {
    snaps[i] = snap(from[i]);
    const auto g = snaps[i].seg;
    if (g < 0) continue;
    if (seg_w_ab_[g]) need.push_back(seg_b_[g]), waits.emplace_back(seg_b_[g], static_cast<std::uint32_t>(i));
    if (seg_w_ba_[g]) need.push_back(seg_a_[g]), waits.emplace_back(seg_a_[g], static_cast<std::uint32_t>(i));
    if (g == t.seg) {  // straight along the target's own segment
      double c = inf;
      if (snaps[i].frac <= t.frac && seg_w_ab_[g]) c = (t.frac - snaps[i].frac) * seg_w_ab_[g];
      if (snaps[i].frac >= t.frac && seg_w_ba_[g]) c = std::min(c, (snaps[i].frac - t.frac) * seg_w_ba_[g]);
      best_ms = std::min(best_ms, c + snaps[i].offroad_m / access_speed_mps * 1000);
    }
  }
  std::sort(waits.begin(), waits.end());
  std::lock_guard lock(scratch_mu_);
  auto& s = *scratch_;
  const double margin = prune_margin_ms_;
  const double next = reverse_search(t, need, s, [&](std::int32_t v, double d) {
    auto it = std::lower_bound(waits.begin(), waits.end(), std::pair<std::int32_t, std::uint32_t>{v, 0});
    for (; it != waits.end() && it->first == v; ++it) {
      const Snap& sn = snaps[it->second];
      const auto g = sn.seg;
      const double part = v == seg_b_[g] ? (1 - sn.frac) * seg_w_ab_[g] : sn.frac * seg_w_ba_[g];
      best_ms = std::min(best_ms, part + d + sn.offroad_m / access_speed_mps * 1000);
    }
    return best_ms + margin;
  });
  for (std::size_t i = 0; i < from.size(); ++i) {
    if (snaps[i].seg < 0) continue;
    std::int32_t via;
    const double ms = source_cost(*this, snaps[i], t, s, via);
    // Stopped early: a value past the next unsettled node might still improve through an
    // end not yet settled; but then it is slower than the bound: certainly not wanted.
    if (!(ms < inf) || (next < inf && ms > next)) continue;
    seconds[i] = (snaps[i].offroad_m + t.offroad_m) / access_speed_mps + ms / 1000.0;
  }
}

RouteResult RoadNetwork::route(LatLon from, LatLon to) const {
  RouteResult r;
  const Snap t = snap(to), src = snap(from);
  if (t.seg < 0 || src.seg < 0) return r;
  std::vector<std::int32_t> need;
  const auto g = src.seg;
  if (seg_w_ab_[g]) need.push_back(seg_b_[g]);
  if (seg_w_ba_[g]) need.push_back(seg_a_[g]);
  std::lock_guard lock(route_mu_);
  auto& s = *route_scratch_;
  reverse_search(t, need, s, [](std::int32_t, double) { return inf; });
  std::int32_t via;
  const double ms = source_cost(*this, src, t, s, via);
  if (!(ms < inf)) return r;
  r.found = true;
  r.seconds = (src.offroad_m + t.offroad_m) / access_speed_mps + ms / 1000.0;
  r.points.push_back(from);
  r.points.push_back(src.at);
  double metres = src.offroad_m + t.offroad_m;
  if (via == -1) {
    metres += std::abs(t.frac - src.frac) * seg_len_m_[g];
  } else {
    metres += (via == seg_b_[g] ? 1 - src.frac : src.frac) * seg_len_m_[g];
    for (std::int32_t v = via; v >= 0; v = s.next[v]) {
      r.points.push_back(node(v));
      const auto sg = s.next_seg[v];
      if (s.next[v] == -2) metres += (v == seg_a_[sg] ? t.frac : 1 - t.frac) * seg_len_m_[sg];
      else metres += seg_len_m_[sg];
    }
  }
  r.points.push_back(t.at);
  r.points.push_back(to);
  r.metres = metres;
  return r;
}

std::string RoadNetwork::to_geojson() const {
  std::string out = R"({"type":"FeatureCollection","features":[)";
  out.reserve(seg_a_.size() * 48 + 64);
  char buf[64];
  for (std::size_t w = 0; w + 1 < way_begin_.size(); ++w) {
    if (w) out += ',';
    out += R"({"type":"Feature","properties":{"highway":")";
    out += road_class_name(way_class_[w]);
    out += R"(","oneway":")";
    out += way_dir_[w] == 1 ? "yes" : way_dir_[w] == 2 ? "-1" : "no";
    out += R"("},"geometry":{"type":"LineString","coordinates":[)";
    auto add = [&](std::int32_t v, bool first) {
      const int k = std::snprintf(buf, sizeof buf, "%s[%.7f,%.7f]", first ? "" : ",", lon_[v], lat_[v]);
      out.append(buf, static_cast<std::size_t>(k));
    };
    add(seg_a_[way_begin_[w]], true);
    std::int32_t last = seg_a_[way_begin_[w]];
    for (auto sg = way_begin_[w]; sg < way_begin_[w + 1]; ++sg) {
      if (seg_a_[sg] != last) add(seg_a_[sg], false);  // a gap (invalid point) in the way
      add(seg_b_[sg], false);
      last = seg_b_[sg];
    }
    out += "]}}";
  }
  out += "]}";
  return out;
}

}  // namespace dispatch::geo
