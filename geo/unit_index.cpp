#include "geo/unit_index.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>

namespace dispatch::geo {

namespace {

constexpr double kPi = std::numbers::pi;
constexpr double kDeg = kPi / 180.0;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Every lower bound on a distance is lowered by this much (radians, about 0.06 mm), so
// that rounding in the cell arithmetic can never make a bound exceed a true distance.
constexpr double kSlack = 1e-11;

// Units stored inline in a cell (four in two 64-byte cache lines); more go to a spill
// vector. The grid is sized for about kUnitsPerCell units per cell: with 2 a cell spills
// in 5% of the cells of a uniform fleet. (Measured in bench_index against 2 inline at 1
// and 1.5 per cell and 4 inline at 3 per cell: all within the noise of each other for
// speed; 54 bytes per unit at 1M against 60, 55 and 49.)
constexpr std::uint32_t kInline = 4;
constexpr double kUnitsPerCell = 2.0;
// Below this many units there is no grid: a linear scan is as fast.
constexpr std::size_t kMinGrid = 32;

constexpr std::uint32_t kAbsent = 0xffffffffu;    // Loc::cell: not indexed
constexpr std::uint32_t kOverflow = 0xfffffffeu;  // Loc::cell: in the overflow list

struct Entry {
  double x, y, z;
  std::uint32_t id;
};

struct alignas(64) Cell {
  double x[kInline], y[kInline], z[kInline];
  std::uint32_t id[kInline];
  std::uint32_t count;
  std::uint32_t spill;  // 1 + index into spills, 0 when none
};

struct Loc {
  std::uint32_t cell;  // cell index, kOverflow or kAbsent
  std::uint32_t slot;  // position in the cell (inline, then spill) or the overflow list
};

double sq(double v) { return v * v; }

// Central angle from a chord on the unit sphere (the comparisons are on squared chords;
// bounds are angles).
double angle_of_c2(double c2) { return 2 * std::asin(std::min(1.0, std::sqrt(c2) / 2)); }

// Smallest angular difference in degrees (0..180) between a longitude and the interval
// [l1, l2] (l1 <= l2, possibly reaching beyond +-180), going round either way.
double lon_gap_deg(double lon, double l1, double l2) {
  double x = lon - l1;  // where lon is, east of l1, in [0, 360)
  x -= 360 * std::floor(x / 360);
  if (x <= l2 - l1) return 0;
  return std::min({x - (l2 - l1), 360 - x, 180.0});
}

// The query, with what every bound needs.
struct Query {
  double x, y, z;
  double lat, lon;   // degrees, valid
  double phi;        // latitude, radians
  double cos_phi;    // cos(latitude)
  double pole_gap;   // pi/2 - |phi|: distance to the nearer pole

  explicit Query(LatLon p) : lat(p.lat), lon(p.lon) {
    const Vec3 v = to_unit_vector(p);
    x = v.x, y = v.y, z = v.z;
    phi = lat * kDeg;
    cos_phi = std::cos(phi);
    pole_gap = kPi / 2 - std::abs(phi);
  }

  // Lower bound (radians) on the distance to any point whose latitude is in [a, b] degrees.
  double lat_bound(double a, double b) const {
    return std::max({0.0, a - lat, lat - b}) * kDeg - kSlack;
  }
  // Lower bound (radians) on the distance to any point whose longitude is in [l1, l2]:
  // a point d radians of longitude away is at least asin(sin d cos phi) away (its
  // distance to that meridian's great circle; from pi/2 on, the nearer pole's distance).
  // (d - d^3/6) cos phi <= sin d cos phi <= asin(sin d cos phi), and it is cheap.
  double lon_bound(double l1, double l2) const {
    const double d = lon_gap_deg(lon, l1, l2) * kDeg;
    if (d >= kPi / 2) return pole_gap - kSlack;
    return (d - d * d * d / 6) * cos_phi - kSlack;
  }
  // Central angle to the point (psi, L) in radians (haversine).
  double angle_to(double psi, double dlon) const {
    const double s1 = std::sin((psi - phi) / 2), s2 = std::sin(dlon / 2);
    return 2 * std::asin(std::min(1.0, std::sqrt(s1 * s1 + cos_phi * std::cos(psi) * s2 * s2)));
  }
  // The exact distance (radians, less the slack) from the query to the box
  // [a, b] x [l1, l2] in degrees. The nearest point of such a box is on one of its
  // meridian sides when the query's longitude is outside [l1, l2] (along a parallel the
  // distance grows with the longitude difference); along a half-meridian less than 90
  // degrees of longitude away the distance has one minimum, at the foot of the
  // perpendicular, and none inside it when more than 90 degrees away.
  double box_bound(double a, double b, double l1, double l2) const {
    const double lo = std::max(a, -90.0) * kDeg, hi = std::min(b, 90.0) * kDeg;
    const double gap = lon_gap_deg(lon, l1, l2);
    if (gap == 0) return lat_bound(a, b);
    auto side = [&](double L) {
      double d = std::abs(lon - L);
      d = std::min(std::fmod(d, 360.0), 360 - std::fmod(d, 360.0)) * kDeg;
      if (d <= kPi / 2) {
        const double foot = std::atan2(std::sin(phi), cos_phi * std::cos(d));
        return angle_to(std::clamp(foot, lo, hi), d);
      }
      return std::min(angle_to(lo, d), angle_to(hi, d));
    };
    return std::min(side(l1), side(l2)) - kSlack;
  }
};

// Keeps the best accepted candidate.
struct Best1 {
  double c2 = kInf;
  double angle = kInf;
  std::uint32_t id = 0;
  double limit_c2() const { return c2; }
  double limit_angle() const { return angle; }
  void offer(std::uint32_t i, double d2) {
    c2 = d2;
    id = i;
    angle = angle_of_c2(d2);
  }
};

// Keeps the k best accepted candidates in a max-heap.
struct BestK {
  std::size_t k;
  std::vector<std::pair<double, std::uint32_t>> heap;
  double c2 = kInf;
  double angle = kInf;
  double limit_c2() const { return c2; }
  double limit_angle() const { return angle; }
  void offer(std::uint32_t i, double d2) {
    if (heap.size() == k) {
      std::pop_heap(heap.begin(), heap.end());
      heap.pop_back();
    }
    heap.emplace_back(d2, i);
    std::push_heap(heap.begin(), heap.end());
    if (heap.size() == k) {
      c2 = heap.front().first;
      angle = angle_of_c2(c2);
    }
  }
};

}  // namespace

// A uniform grid in latitude and longitude over the box where the units are (chosen from
// the units themselves at each rebuild), cells about kUnitsPerCell units large and about
// square on the ground, each cell holding its units' 3-D unit vectors inline; units
// outside the box (or with invalid positions) in an overflow list that every query scans.
// The grid is rebuilt, in O(n), when the count doubles or falls to a quarter of what it
// was built for, and when the overflow has grown by 16 + n/64 units since. The search visits square rings of cells around
// the query's cell and stops when a lower bound on the great-circle distance to every
// cell not yet visited is no less than the best distance found.
struct UnitIndex::Impl {
  // The grid.
  double lat0 = 0, lon0 = 0, dlat = 1, dlon = 1, inv_dlat = 1, inv_dlon = 1;
  int nlat = 0, nlon = 0;
  std::vector<Cell> cells;
  std::vector<std::vector<Entry>> spills;
  std::vector<std::uint32_t> free_spills;
  std::vector<Entry> overflow;
  // By id.
  std::vector<Loc> loc;
  std::size_t count = 0;
  // When to rebuild.
  std::size_t built_count = 0;
  std::size_t overflow_limit = 0;

  std::uint32_t cell_of(LatLon p) const {
    if (cells.empty() || !valid(p)) return kOverflow;
    const double fi = (p.lat - lat0) * inv_dlat, fj = (p.lon - lon0) * inv_dlon;
    if (!(fi >= 0 && fi < nlat && fj >= 0 && fj < nlon)) return kOverflow;
    const int i = std::min(static_cast<int>(fi), nlat - 1), j = std::min(static_cast<int>(fj), nlon - 1);
    return static_cast<std::uint32_t>(i * nlon + j);
  }

  Entry get(const Cell& c, std::uint32_t s) const {
    if (s < kInline) return Entry{c.x[s], c.y[s], c.z[s], c.id[s]};
    return spills[c.spill - 1][s - kInline];
  }
  void set(Cell& c, std::uint32_t s, const Entry& e) {
    if (s < kInline) {
      c.x[s] = e.x, c.y[s] = e.y, c.z[s] = e.z, c.id[s] = e.id;
    } else {
      spills[c.spill - 1][s - kInline] = e;
    }
  }

  void place(std::uint32_t where, const Entry& e) {
    if (where == kOverflow) {
      loc[e.id] = Loc{kOverflow, static_cast<std::uint32_t>(overflow.size())};
      overflow.push_back(e);
      return;
    }
    Cell& c = cells[where];
    const std::uint32_t s = c.count++;
    if (s < kInline) {
      set(c, s, e);
    } else {
      if (c.spill == 0) {
        if (free_spills.empty()) {
          spills.emplace_back();
          c.spill = static_cast<std::uint32_t>(spills.size());
        } else {
          c.spill = free_spills.back() + 1;
          free_spills.pop_back();
        }
      }
      spills[c.spill - 1].push_back(e);
    }
    loc[e.id] = Loc{where, s};
  }

  void erase(Loc l) {
    if (l.cell == kOverflow) {
      if (l.slot + 1 != overflow.size()) {
        overflow[l.slot] = overflow.back();
        loc[overflow[l.slot].id].slot = l.slot;
      }
      overflow.pop_back();
      return;
    }
    Cell& c = cells[l.cell];
    const std::uint32_t last = --c.count;
    if (l.slot != last) {
      const Entry moved = get(c, last);
      set(c, l.slot, moved);
      loc[moved.id].slot = l.slot;
    }
    if (last >= kInline) {
      auto& v = spills[c.spill - 1];
      v.pop_back();
      if (v.empty()) {
        free_spills.push_back(c.spill - 1);
        c.spill = 0;
      }
    }
  }

  void maybe_rebuild() {
    const bool want = cells.empty() ? count >= kMinGrid && count > 2 * built_count
                                    : (count > 2 * built_count || count * 4 < built_count ||
                                       overflow.size() > overflow_limit);
    if (want) rebuild();
  }

  // Chooses the box and the cell size from the units indexed now, and places them again.
  void rebuild() {
    std::vector<Entry> all;
    all.reserve(count);
    for (const Cell& c : cells) {
      for (std::uint32_t s = 0; s < c.count; ++s) all.push_back(get(c, s));
    }
    all.insert(all.end(), overflow.begin(), overflow.end());
    cells.clear();
    cells.shrink_to_fit();
    spills.clear();
    free_spills.clear();
    overflow.clear();

    // Positions back from the unit vectors (atan2 is well conditioned everywhere). The
    // box's quantiles are taken from a sample of at most about 64k units.
    std::vector<LatLon> pos(all.size());
    std::vector<double> lats, lons;
    const std::size_t stride = all.size() / 65536 + 1;
    lats.reserve(all.size() / stride + 1);
    lons.reserve(all.size() / stride + 1);
    double lat_min = kInf, lat_max = -kInf, lon_min = kInf, lon_max = -kInf;
    std::size_t valid_count = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const Entry& e = all[i];
      pos[i] = LatLon{std::atan2(e.z, std::sqrt(e.x * e.x + e.y * e.y)) / kDeg, std::atan2(e.y, e.x) / kDeg};
      if (!valid(pos[i])) continue;
      ++valid_count;
      lat_min = std::min(lat_min, pos[i].lat), lat_max = std::max(lat_max, pos[i].lat);
      lon_min = std::min(lon_min, pos[i].lon), lon_max = std::max(lon_max, pos[i].lon);
      if (i % stride == 0) {
        lats.push_back(pos[i].lat);
        lons.push_back(pos[i].lon);
      }
    }

    if (all.size() >= kMinGrid && valid_count >= kMinGrid && !lats.empty()) {
      // The box: the 0.1% and 99.9% quantiles on each axis, widened by a quarter of their
      // span but not beyond the extreme units; the few units outside go to the overflow.
      auto range = [](std::vector<double>& v, double mn, double mx) {
        const std::size_t lo = v.size() / 1000, hi = v.size() - 1 - lo;
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
        const double qlo = v[lo];
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(hi), v.end());
        const double qhi = v[hi];
        const double span = qhi - qlo;
        const double a = std::max(mn, qlo - span / 4), b = std::min(mx, qhi + span / 4);
        const double pad = std::max((b - a) * 1e-3, 1e-4);  // at least about 10 m
        return std::pair{a - pad, b + pad};
      };
      const auto [la, lb] = range(lats, lat_min, lat_max);
      const auto [oa, ob] = range(lons, lon_min, lon_max);
      const double mid = std::clamp((la + lb) / 2, -89.0, 89.0);
      const double c = std::max(std::cos(mid * kDeg), 0.01);
      const double target = std::max(1.0, static_cast<double>(all.size()) / kUnitsPerCell);
      const double side = std::sqrt((lb - la) * (ob - oa) * c / target);  // degrees of latitude
      nlat = static_cast<int>(std::clamp(std::ceil((lb - la) / side), 1.0, target));
      nlon = static_cast<int>(std::clamp(std::ceil((ob - oa) * c / side), 1.0, target));
      lat0 = la;
      lon0 = oa;
      dlat = (lb - la) / nlat;
      dlon = (ob - oa) / nlon;
      inv_dlat = 1 / dlat;
      inv_dlon = 1 / dlon;
      cells.assign(static_cast<std::size_t>(nlat) * static_cast<std::size_t>(nlon), Cell{});
    } else {
      nlat = nlon = 0;
    }
    for (std::size_t i = 0; i < all.size(); ++i) place(cell_of(pos[i]), all[i]);
    built_count = count;
    overflow_limit = overflow.size() + 16 + count / 64;
  }

  template <class Accept, class Collector>
  void scan(const Entry* b, const Entry* e, const Query& q, Accept& accept, Collector& best) const {
    for (; b != e; ++b) {
      const double d2 = sq(b->x - q.x) + sq(b->y - q.y) + sq(b->z - q.z);
      if (d2 < best.limit_c2() && accept(b->id)) best.offer(b->id, d2);
    }
  }

  template <class Accept, class Collector>
  void scan_cell(std::size_t ci, const Query& q, Accept& accept, Collector& best) const {
    const Cell& c = cells[ci];
    const std::uint32_t n = std::min(c.count, kInline);
    for (std::uint32_t s = 0; s < n; ++s) {
      const double d2 = sq(c.x[s] - q.x) + sq(c.y[s] - q.y) + sq(c.z[s] - q.z);
      if (d2 < best.limit_c2() && accept(c.id[s])) best.offer(c.id[s], d2);
    }
    if (c.count > kInline) {
      const auto& v = spills[c.spill - 1];
      scan(v.data(), v.data() + v.size(), q, accept, best);
    }
  }

  template <class Accept, class Collector>
  void search(LatLon p, Accept& accept, Collector& best) const {
    if (!valid(p)) {
      if (!std::isfinite(p.lat) || !std::isfinite(p.lon)) return;
      const Vec3 v = to_unit_vector(p);  // e.g. a longitude of 200: the same point, normalised
      p = LatLon{std::atan2(v.z, std::hypot(v.x, v.y)) / kDeg, std::atan2(v.y, v.x) / kDeg};
    }
    const Query q(p);
    scan(overflow.data(), overflow.data() + overflow.size(), q, accept, best);
    if (cells.empty()) return;

    const double fi = std::floor((q.lat - lat0) * inv_dlat), fj = std::floor((q.lon - lon0) * inv_dlon);
    const int i0 = static_cast<int>(std::clamp(fi, 0.0, nlat - 1.0));
    const int j0 = static_cast<int>(std::clamp(fj, 0.0, nlon - 1.0));
    const bool inside = fi >= 0 && fi < nlat && fj >= 0 && fj < nlon;
    auto row_lo = [&](int i) { return lat0 + i * dlat; };
    auto col_lo = [&](int j) { return lon0 + j * dlon; };
    // A lower bound for the units in rows [ia, ib] and columns [ja, jb].
    auto region_bound = [&](int ia, int ib, int ja, int jb) {
      const double a = row_lo(ia), b = row_lo(ib + 1), l1 = col_lo(ja), l2 = col_lo(jb + 1);
      const double cheap = std::max(q.lat_bound(a, b), q.lon_bound(l1, l2));
      if (inside || cheap >= best.limit_angle()) return cheap;
      return std::max(cheap, q.box_bound(a, b, l1, l2));
    };

    scan_cell(static_cast<std::size_t>(i0) * nlon + j0, q, accept, best);
    const int rmax = std::max({i0, nlat - 1 - i0, j0, nlon - 1 - j0});
    for (int r = 1; r <= rmax; ++r) {
      // Everything outside the square of radius r - 1 is unvisited: stop when it cannot
      // hold anything nearer.
      {
        const int ia = std::max(0, i0 - r + 1), ib = std::min(nlat - 1, i0 + r - 1);
        double bound = kInf;
        if (i0 - r >= 0) bound = std::min(bound, region_bound(0, i0 - r, 0, nlon - 1));
        if (i0 + r < nlat) bound = std::min(bound, region_bound(i0 + r, nlat - 1, 0, nlon - 1));
        if (j0 - r >= 0) bound = std::min(bound, region_bound(ia, ib, 0, j0 - r));
        if (j0 + r < nlon) bound = std::min(bound, region_bound(ia, ib, j0 + r, nlon - 1));
        if (bound >= best.limit_angle()) break;
      }
      const int ja = std::max(0, j0 - r), jb = std::min(nlon - 1, j0 + r);
      for (const int i : {i0 - r, i0 + r}) {
        if (i < 0 || i >= nlat) continue;
        const double lb = q.lat_bound(row_lo(i), row_lo(i + 1));
        if (lb >= best.limit_angle()) continue;
        const std::size_t base = static_cast<std::size_t>(i) * nlon;
        for (int j = ja; j <= jb; ++j) {
          if (std::max(lb, q.lon_bound(col_lo(j), col_lo(j + 1))) < best.limit_angle())
            scan_cell(base + j, q, accept, best);
        }
      }
      const int ia = std::max(0, i0 - r + 1), ib = std::min(nlat - 1, i0 + r - 1);
      for (const int j : {j0 - r, j0 + r}) {
        if (j < 0 || j >= nlon) continue;
        const double lb = q.lon_bound(col_lo(j), col_lo(j + 1));
        if (lb >= best.limit_angle()) continue;
        for (int i = ia; i <= ib; ++i) {
          if (std::max(lb, q.lat_bound(row_lo(i), row_lo(i + 1))) < best.limit_angle())
            scan_cell(static_cast<std::size_t>(i) * nlon + j, q, accept, best);
        }
      }
    }
  }
};

UnitIndex::UnitIndex() : impl_(std::make_unique<Impl>()) {}
UnitIndex::~UnitIndex() = default;
UnitIndex::UnitIndex(UnitIndex&&) noexcept = default;
UnitIndex& UnitIndex::operator=(UnitIndex&&) noexcept = default;

void UnitIndex::upsert(Id id, LatLon p) {
  auto& m = *impl_;
  if (id >= m.loc.size()) m.loc.resize(static_cast<std::size_t>(id) + 1, Loc{kAbsent, 0});
  const Vec3 v = to_unit_vector(p);
  const Entry e{v.x, v.y, v.z, id};
  const std::uint32_t where = m.cell_of(p);
  const Loc l = m.loc[id];
  if (l.cell == where) {  // the same cell (or the overflow): in place
    if (where == kOverflow) {
      m.overflow[l.slot] = e;
    } else {
      m.set(m.cells[where], l.slot, e);
    }
    return;
  }
  if (l.cell != kAbsent) {
    m.erase(l);
  } else {
    ++m.count;
  }
  m.place(where, e);
  m.maybe_rebuild();
}

bool UnitIndex::remove(Id id) {
  auto& m = *impl_;
  if (id >= m.loc.size() || m.loc[id].cell == kAbsent) return false;
  m.erase(m.loc[id]);
  m.loc[id].cell = kAbsent;
  --m.count;
  m.maybe_rebuild();
  return true;
}

bool UnitIndex::contains(Id id) const { return id < impl_->loc.size() && impl_->loc[id].cell != kAbsent; }

std::size_t UnitIndex::size() const { return impl_->count; }

std::optional<UnitIndex::Hit> UnitIndex::nearest(LatLon p, IdFilter accept) const {
  Best1 best;
  impl_->search(p, accept, best);
  if (best.c2 == kInf) return std::nullopt;
  return Hit{best.id, chord_to_m(std::sqrt(best.c2))};
}

std::vector<UnitIndex::Hit> UnitIndex::nearest_k(LatLon p, std::size_t k, IdFilter accept) const {
  std::vector<Hit> out;
  if (k == 0) return out;
  BestK best{k, {}};
  best.heap.reserve(std::min<std::size_t>(k, 1024));
  impl_->search(p, accept, best);
  std::sort_heap(best.heap.begin(), best.heap.end());
  out.reserve(best.heap.size());
  for (const auto& [c2, id] : best.heap) out.push_back(Hit{id, chord_to_m(std::sqrt(c2))});
  return out;
}

}  // namespace dispatch::geo
