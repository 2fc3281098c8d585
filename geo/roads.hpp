// A road network for ground ETAs (wire contract v2 section 8): a compact directed graph of
// the drivable OpenStreetMap highways, points snapped to the nearest road segment, and a
// one-to-many Dijkstra from the target on the reversed graph (docs/performance.md, "Roads",
// says why not contraction hierarchies). libosmium stays in geo/osm_load.cpp.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "geo/geo.hpp"
#include "geo/travel_times.hpp"

namespace dispatch::geo {

// Road classes we drive on, fastest first; speeds per class in class_speed_kmh().
enum class RoadClass : std::uint8_t {
  motorway, trunk, primary, secondary, tertiary, unclassified, residential, living_street,
  service, motorway_link, trunk_link, primary_link, secondary_link, tertiary_link,
};
// The highway=* value for a class ("motorway", ...), and back (false: not drivable).
const char* road_class_name(RoadClass c);
bool road_class_from_tag(const char* highway, RoadClass& out);
// Assumed travel speed of a class where no maxspeed is tagged, km/h (urban Chongqing).
double class_speed_kmh(RoadClass c);
// Parses an OSM maxspeed value: "50", "50 km/h", "30 mph", "40;50" (first). 0 if unusable.
double parse_maxspeed_kmh(const char* value);

// Off-road legs (point to its snap on the road, at both ends) are timed at this speed: a
// vehicle leaving a yard or a car park, or a crew on foot for the last metres.
inline constexpr double access_speed_kmh = 10.0;
inline constexpr double access_speed_mps = access_speed_kmh / 3.6;

// One way of the input: its nodes' positions, class, speed and direction.
struct RoadWay {
  std::vector<LatLon> points;
  RoadClass cls = RoadClass::residential;
  double speed_kmh = 0;  // 0: the class speed
  bool forward = true;   // may drive points[i] -> points[i+1]
  bool backward = true;  // may drive points[i+1] -> points[i]
  std::vector<std::int64_t> node_ids;  // OSM ids (same size as points), shared at junctions;
                                       // empty: junctions by identical coordinates
};

struct RouteResult {
  bool found = false;
  double seconds = std::numeric_limits<double>::infinity();
  double metres = 0;
  std::vector<LatLon> points;  // from, snap, road nodes..., snap, to
};

class RoadNetwork final : public TravelTimes {
 public:
  // Reads .osm, .osm.bz2/.gz or .osm.pbf with libosmium (by file name). Throws
  // std::runtime_error with the path and the reason, also when no drivable road is found.
  static std::unique_ptr<RoadNetwork> load_osm(const std::string& path);
  // From ways already read (tests, the benchmark's synthetic grid).
  static std::unique_ptr<RoadNetwork> from_ways(const std::vector<RoadWay>& ways);

  RoadNetwork(const RoadNetwork&) = delete;
  RoadNetwork& operator=(const RoadNetwork&) = delete;
  ~RoadNetwork() override;

  std::size_t node_count() const { return lat_.size(); }
  std::size_t edge_count() const { return arc_from_.size(); }  // directed arcs
  std::size_t segment_count() const { return seg_a_.size(); }
  std::size_t memory_bytes() const;

  // Exact for every source whose road ETA is within prune_margin_s() of the fastest one;
  // a source certainly slower than that gets +infinity (as if unreachable: never chosen)
  // and the search stops early. That keeps a rural scene, whose K candidates lie far
  // apart, from searching half the graph (docs/performance.md, "Roads").
  void to_target(LatLon to, std::span<const LatLon> from, std::span<double> seconds) const override;
  // Default 1200 s; +infinity: every reachable source exact (the oracle test does both).
  void set_prune_margin_s(double s) { prune_margin_ms_ = s * 1000; }
  double prune_margin_s() const { return prune_margin_ms_ / 1000; }
  // The fastest route from `from` to `to` with its geometry. Thread-safe, also against
  // to_target (each has its own search state).
  RouteResult route(LatLon from, LatLon to) const;
  // The network as a GeoJSON FeatureCollection of LineStrings (one per input way), with
  // properties highway and oneway ("yes", "-1" or "no").
  std::string to_geojson() const;

  // Internal units, public for the tests: arc weights in milliseconds.
  struct Snap {
    std::int32_t seg = -1;     // segment index, -1: no road
    double frac = 0;           // 0 at seg_a, 1 at seg_b
    double offroad_m = 0;      // point to the snap, metres
    LatLon at;                 // the snapped position
  };
  Snap snap(LatLon p) const;
  // Segment data: ends, allowed directions with their weights (ms; 0 = not allowed).
  std::int32_t seg_a(std::int32_t s) const { return seg_a_[s]; }
  std::int32_t seg_b(std::int32_t s) const { return seg_b_[s]; }
  std::uint32_t seg_w_ab(std::int32_t s) const { return seg_w_ab_[s]; }
  std::uint32_t seg_w_ba(std::int32_t s) const { return seg_w_ba_[s]; }
  LatLon node(std::int32_t n) const { return {lat_[n], lon_[n]}; }

 private:
  RoadNetwork() = default;
  void build_graph();
  void build_grid();
  struct Scratch;
  // Reverse Dijkstra from the target until every node in `need` is settled (or the
  // reachable part is exhausted), or until `settled(v, d)`, called for each needed node as
  // it settles, returns the bound past which nothing matters (the search stops once the
  // next node is farther than that). Fills s.dist/s.next; needed nodes settled: s.need 2.
  // Returns the distance of the next unsettled node when the bound stopped it, else
  // +infinity (complete: every needed node settled or unreachable).
  template <class OnSettled>
  double reverse_search(const Snap& target, std::span<const std::int32_t> need, Scratch& s, OnSettled settled) const;

  // Nodes.
  std::vector<double> lat_, lon_;
  // Segments (one per consecutive pair of way points; both directions in one).
  std::vector<std::int32_t> seg_a_, seg_b_;
  std::vector<std::uint32_t> seg_w_ab_, seg_w_ba_;  // ms; 0 = that direction is not allowed
  std::vector<float> seg_len_m_;
  // Reversed graph in CSR: arcs into node v are in_begin_[v] .. in_begin_[v+1].
  std::vector<std::uint32_t> in_begin_;
  std::vector<std::int32_t> arc_from_;
  std::vector<std::uint32_t> arc_w_;
  std::vector<std::int32_t> arc_seg_;  // the segment an arc runs along (for geometry)
  // Ways for the GeoJSON layer: segments way_begin_[w] .. way_begin_[w+1], in order.
  std::vector<std::uint32_t> way_begin_;
  std::vector<RoadClass> way_class_;
  std::vector<std::uint8_t> way_dir_;  // 1 forward only, 2 backward only, 3 both
  // Spatial grid over segments in a local equirectangular plane (metres).
  double lat0_ = 0, lon0_ = 0, kx_ = 1, ky_ = 1;  // x = (lon-lon0)*kx, y = (lat-lat0)*ky
  double cell_m_ = 200;
  int gx_ = 0, gy_ = 0;
  std::vector<std::uint32_t> cell_begin_;
  std::vector<std::int32_t> cell_segs_;
  double prune_margin_ms_ = 1'200'000;

  // Search state: one for to_target (the engine thread), one for route() (REST, another
  // thread), so that the engine never waits behind a drawn route. Each has its own lock.
  mutable std::mutex scratch_mu_, route_mu_;
  mutable std::unique_ptr<Scratch> scratch_, route_scratch_;
};

}  // namespace dispatch::geo
