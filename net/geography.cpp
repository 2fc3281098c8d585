#include "net/geography.hpp"

#include "geo/places.hpp"
#include "geo/zones.hpp"

namespace dispatch::net {

struct MapGeography::Impl {
  std::optional<geo::Zones> zones;
  std::optional<geo::Places> places;
};

MapGeography::MapGeography(const std::string& zones_path, bool zones_gcj02, std::vector<std::string> urban,
                           const std::string& places_path, std::vector<std::string>& warnings)
    : impl_(std::make_unique<Impl>()) {
  if (!zones_path.empty()) {
    geo::ZoneOptions o;
    o.gcj02 = zones_gcj02;
    o.urban = std::move(urban);
    impl_->zones.emplace(geo::Zones::load(zones_path, o, &warnings));
    districts_json_ = impl_->zones->to_geojson();
  }
  if (!places_path.empty()) {
    impl_->places.emplace(geo::Places::load(places_path));
    places_json_ = impl_->places->to_geojson();
  }
}

MapGeography::~MapGeography() = default;

std::size_t MapGeography::zone_count() const { return impl_->zones ? impl_->zones->size() : 0; }
std::size_t MapGeography::place_count() const {
  return impl_->places ? impl_->places->all().size() : 0;
}

std::optional<engine::DistrictRef> MapGeography::district(geo::LatLon p) const {
  if (!impl_->zones) return std::nullopt;
  auto i = impl_->zones->locate(p);
  if (!i) return std::nullopt;
  const auto& z = impl_->zones->zone(*i);
  return engine::DistrictRef{z.name, z.urban};
}

namespace {
std::optional<engine::PlaceRef> ref(const geo::Place* p) {
  if (!p) return std::nullopt;
  return engine::PlaceRef{p->id, p->name, p->pos};
}
}  // namespace

std::optional<engine::PlaceRef> MapGeography::trauma_hospital(geo::LatLon p) const {
  if (!impl_->places) return std::nullopt;
  return ref(impl_->places->nearest(p, geo::PlaceKind::hospital, true, false));
}
std::optional<engine::PlaceRef> MapGeography::helipad_hospital(geo::LatLon p) const {
  if (!impl_->places) return std::nullopt;
  return ref(impl_->places->nearest(p, geo::PlaceKind::hospital, true, true));  // a trauma centre with a helipad
}
std::optional<engine::PlaceRef> MapGeography::landing_zone(geo::LatLon p) const {
  if (!impl_->places) return std::nullopt;
  return ref(impl_->places->nearest(p, geo::PlaceKind::landing_zone));
}

std::optional<engine::PlaceRef> MapGeography::station(std::string_view id) const {
  if (!impl_->places) return std::nullopt;
  const geo::Place* p = impl_->places->by_id(id);
  return p && p->kind == geo::PlaceKind::station ? ref(p) : std::nullopt;
}

}  // namespace dispatch::net
