// A dynamic spatial index of units: insert, move and remove by a dense integer id,
// and "nearest accepted id" queries that are exact on the sphere.
//
// Positions are stored as 3-D unit vectors (the Euclidean chord between two points on the
// unit sphere orders exactly as their great-circle distance does) in a uniform
// latitude/longitude grid sized to the units' density over the box where they are, with
// an overflow list for units outside it. A query searches rings of cells around its own
// and stops on a lower bound of the great-circle distance to every cell not yet searched,
// so the nearest is the true nearest anywhere on Earth (poles and antimeridian included).
// A move within a cell is a write in place. Details in unit_index.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "geo/geo.hpp"

namespace dispatch::geo {

// A non-owning, non-allocating reference to a callable bool(uint32_t).
class IdFilter {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, IdFilter>)
  IdFilter(F&& f)  // NOLINT: implicit on purpose, like std::function_ref
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, std::uint32_t id) { return (*static_cast<std::remove_reference_t<F>*>(o))(id); }) {}
  bool operator()(std::uint32_t id) const { return call_(obj_, id); }

 private:
  void* obj_;
  bool (*call_)(void*, std::uint32_t);
};

class UnitIndex {
 public:
  using Id = std::uint32_t;
  struct Hit {
    Id id;
    double distance_m;
  };

  UnitIndex();
  ~UnitIndex();
  UnitIndex(UnitIndex&&) noexcept;
  UnitIndex& operator=(UnitIndex&&) noexcept;

  // Inserts the id at p, or moves it there when it is already indexed.
  void upsert(Id id, LatLon p);
  // Removes the id; false when it was not indexed.
  bool remove(Id id);
  bool contains(Id id) const;
  std::size_t size() const;

  // The nearest indexed id for which accept(id) is true, with its great-circle distance.
  std::optional<Hit> nearest(LatLon p, IdFilter accept) const;
  std::optional<Hit> nearest(LatLon p) const {
    return nearest(p, [](Id) { return true; });
  }
  // Up to k nearest accepted ids, nearest first.
  std::vector<Hit> nearest_k(LatLon p, std::size_t k, IdFilter accept) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dispatch::geo
