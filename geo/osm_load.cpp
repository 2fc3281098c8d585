// Reading OpenStreetMap data with libosmium: the only file that includes it.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <osmium/handler.hpp>
#include <osmium/handler/node_locations_for_ways.hpp>
#include <osmium/index/map/flex_mem.hpp>
#include <osmium/io/any_input.hpp>
#include <osmium/osm/way.hpp>
#include <osmium/visitor.hpp>

#include "geo/roads.hpp"

namespace dispatch::geo {

namespace {

bool is_one_of(const char* v, std::initializer_list<const char*> options) {
  if (v == nullptr) return false;
  for (const char* o : options)
    if (std::strcmp(v, o) == 0) return true;
  return false;
}

class WayCollector : public osmium::handler::Handler {
 public:
  std::vector<RoadWay> ways;
  std::size_t skipped_locations = 0;

  void way(const osmium::Way& w) {
    const auto& tags = w.tags();
    RoadWay rw;
    if (!road_class_from_tag(tags["highway"], rw.cls)) return;
    if (is_one_of(tags["area"], {"yes"})) return;
    const char* oneway = tags["oneway"];
    const char* junction = tags["junction"];
    bool forward_only = rw.cls == RoadClass::motorway || rw.cls == RoadClass::motorway_link ||
                        is_one_of(junction, {"roundabout", "circular"});
    bool backward_only = false;
    if (is_one_of(oneway, {"yes", "1", "true"})) forward_only = true;
    else if (is_one_of(oneway, {"-1", "reverse"})) forward_only = false, backward_only = true;
    else if (is_one_of(oneway, {"no", "0", "false"})) forward_only = false;
    rw.forward = !backward_only;
    rw.backward = !forward_only;
    rw.speed_kmh = parse_maxspeed_kmh(tags["maxspeed"]);
    for (const auto& nr : w.nodes()) {
      if (!nr.location().valid()) {
        ++skipped_locations;
        continue;
      }
      rw.points.push_back({nr.location().lat(), nr.location().lon()});
      rw.node_ids.push_back(nr.positive_ref());
    }
    if (rw.points.size() >= 2) ways.push_back(std::move(rw));
  }
};

}  // namespace

std::unique_ptr<RoadNetwork> RoadNetwork::load_osm(const std::string& path) {
  try {
    using Index = osmium::index::map::FlexMem<osmium::unsigned_object_id_type, osmium::Location>;
    Index index;
    osmium::handler::NodeLocationsForWays<Index> locations{index};
    locations.ignore_errors();  // a way whose node is missing keeps its other nodes
    WayCollector collector;
    osmium::io::Reader reader{path, osmium::osm_entity_bits::node | osmium::osm_entity_bits::way};
    osmium::apply(reader, locations, collector);
    reader.close();
    if (collector.ways.empty()) throw std::runtime_error("no drivable highway (motorway..service) in it");
    return from_ways(collector.ways);
  } catch (const std::exception& e) {
    throw std::runtime_error("roads " + path + ": " + e.what());
  }
}

}  // namespace dispatch::geo
