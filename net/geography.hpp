// The engine's Geography over real data: districts on GEOS (geo::Zones) and rescue places
// (geo::Places) loaded from GeoJSON.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/geography.hpp"

namespace dispatch::net {

class MapGeography : public engine::Geography {
 public:
  // Either path may be empty. Throws std::runtime_error on unreadable files; repairs and
  // other remarks go to `warnings`.
  MapGeography(const std::string& zones_path, bool zones_gcj02, std::vector<std::string> urban,
               const std::string& places_path, std::vector<std::string>& warnings);
  ~MapGeography() override;

  std::optional<engine::DistrictRef> district(geo::LatLon p) const override;
  std::optional<engine::PlaceRef> trauma_hospital(geo::LatLon p) const override;
  std::optional<engine::PlaceRef> helipad_hospital(geo::LatLon p) const override;
  std::optional<engine::PlaceRef> landing_zone(geo::LatLon p) const override;
  std::optional<engine::PlaceRef> station(std::string_view id) const override;

  // For the console's base layer: WGS84 GeoJSON ("{}" when not loaded).
  const std::string& districts_geojson() const { return districts_json_; }
  const std::string& places_geojson() const { return places_json_; }
  std::size_t zone_count() const;
  std::size_t place_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string districts_json_ = R"({"type":"FeatureCollection","features":[]})";
  std::string places_json_ = R"({"type":"FeatureCollection","features":[]})";
};

}  // namespace dispatch::net
