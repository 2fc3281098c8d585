#include "geo/unit_index.hpp"

#include <boost/geometry.hpp>
#include <boost/geometry/index/rtree.hpp>
#include <algorithm>
#include <boost/function_output_iterator.hpp>
#include <cmath>

namespace bg = boost::geometry;
namespace bgi = boost::geometry::index;

namespace dispatch::geo {

namespace {
using Point = bg::model::point<double, 3, bg::cs::cartesian>;
using Value = std::pair<Point, UnitIndex::Id>;

Point to_point(LatLon p) {
  const Vec3 v = to_unit_vector(p);
  return Point(v.x, v.y, v.z);
}
double chord(const Point& a, const Point& b) {
  const double dx = a.get<0>() - b.get<0>(), dy = a.get<1>() - b.get<1>(),
               dz = a.get<2>() - b.get<2>();
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}
}  // namespace

struct UnitIndex::Impl {
  // quadratic split: cheaper inserts than R*, which matters for a moving fleet.
  bgi::rtree<Value, bgi::quadratic<16>> tree;
  std::vector<Point> where;    // by id: the point stored in the tree
  std::vector<bool> present;   // by id
};

UnitIndex::UnitIndex() : impl_(std::make_unique<Impl>()) {}
UnitIndex::~UnitIndex() = default;
UnitIndex::UnitIndex(UnitIndex&&) noexcept = default;
UnitIndex& UnitIndex::operator=(UnitIndex&&) noexcept = default;

void UnitIndex::upsert(Id id, LatLon p) {
  auto& m = *impl_;
  if (id >= m.where.size()) {
    m.where.resize(id + 1);
    m.present.resize(id + 1, false);
  }
  const Point pt = to_point(p);
  if (m.present[id]) {
    const Point& old = m.where[id];
    if (old.get<0>() == pt.get<0>() && old.get<1>() == pt.get<1>() && old.get<2>() == pt.get<2>())
      return;
    m.tree.remove(Value(old, id));
  }
  m.tree.insert(Value(pt, id));
  m.where[id] = pt;
  m.present[id] = true;
}

bool UnitIndex::remove(Id id) {
  auto& m = *impl_;
  if (id >= m.present.size() || !m.present[id]) return false;
  m.tree.remove(Value(m.where[id], id));
  m.present[id] = false;
  return true;
}

bool UnitIndex::contains(Id id) const {
  return id < impl_->present.size() && impl_->present[id];
}

std::size_t UnitIndex::size() const { return impl_->tree.size(); }

std::optional<UnitIndex::Hit> UnitIndex::nearest(LatLon p, IdFilter accept) const {
  const Point q = to_point(p);
  // A k=1 nearest query with the filter applied during the search (not an incremental
  // iterator, which keeps a large queue): the cost is a few node visits.
  const Value* found = nullptr;
  impl_->tree.query(bgi::nearest(q, 1) && bgi::satisfies([&](const Value& v) { return accept(v.second); }),
                    boost::make_function_output_iterator([&](const Value& v) { found = &v; }));
  if (!found) return std::nullopt;
  return Hit{found->second, chord_to_m(chord(q, found->first))};
}

std::vector<UnitIndex::Hit> UnitIndex::nearest_k(LatLon p, std::size_t k, IdFilter accept) const {
  std::vector<Hit> out;
  if (k == 0) return out;
  const Point q = to_point(p);
  impl_->tree.query(bgi::nearest(q, static_cast<unsigned>(k)) &&
                        bgi::satisfies([&](const Value& v) { return accept(v.second); }),
                    boost::make_function_output_iterator(
                        [&](const Value& v) { out.push_back(Hit{v.second, chord_to_m(chord(q, v.first))}); }));
  std::sort(out.begin(), out.end(), [](const Hit& a, const Hit& b) { return a.distance_m < b.distance_m; });
  return out;
}

}  // namespace dispatch::geo
