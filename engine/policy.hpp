// The dispatch policy (wire-contract.md section 7) as a pure function: given an incident,
// the map and a way to find the nearest assignable unit of a kind, it returns a plan (the
// units the incident needs, where each is sent, the receiving hospital) and its reasons
// (timeline lines). It changes nothing; the engine applies the plan.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/geography.hpp"
#include "engine/records.hpp"
#include "engine/types.hpp"
#include "geo/geo.hpp"

namespace dispatch::engine::policy {

// A unit the fleet offers for a target: its slot, straight-line distance and ETA (road
// ETA for ground units when roads are loaded).
struct Choice {
  std::uint32_t unit = 0;
  double distance_m = 0;
  double eta_s = 0;
};

// A unit weighed for an assignment (the assignment's `candidates`): its slot,
// straight-line distance, ETA (+infinity: no road reaches the target; NaN: none, the unit
// was not assignable) and why it was or was not chosen (a wire word: chosen, farther,
// unreachable, declined, busy, stale, off_duty, manual).
struct Weighed {
  std::uint32_t unit = 0;
  double distance_m = 0;
  double eta_s = 0;
  const char* why = "";
};

// The most units an assignment's `candidates` keeps.
inline constexpr std::size_t max_candidates = 8;

// The nearest assignable unit of a kind for a target, by least ETA (ties: distance),
// skipping the given slots; nullopt when there is none.
using Nearest = std::function<std::optional<Choice>(UnitKind, geo::LatLon target,
                                                    const std::vector<std::uint32_t>& skip)>;

struct PlannedNeed {
  UnitKind kind = UnitKind::moto;
  std::optional<UnitKind> or_kind;  // taken when no unit of `kind` is assignable
  Task task = Task::scene;
  geo::LatLon target;
};

struct Reason {
  std::string event;
  std::string detail;
};

struct Plan {
  std::vector<PlannedNeed> needs;
  std::optional<PlaceRef> hospital;  // the receiving hospital (air or ground)
  // Air-ground rescue: a helicopter is sent, to the landing zone (when one lies within
  // lz_max_m of the scene) or to the scene.
  bool air = false;
  std::optional<PlaceRef> landing_zone;
  std::vector<Reason> reasons;       // timeline lines, in order
};

struct Inputs {
  const Geography* geography = nullptr;  // none: every scene is urban, no places
  Nearest nearest;
  double lz_max_m = 10'000;  // a landing zone farther from the scene is not used
  // Set: the air decision was already taken (at restore, from the timeline).
  std::optional<bool> air;
};

Plan plan(const rec::Incident& incident, const Inputs& in);

}  // namespace dispatch::engine::policy
