#include "net/render_stations.hpp"

#include "net/json_writer.hpp"

namespace dispatch::net {

using namespace engine;

void signals_field(JsonWriter& w, const std::vector<Signal>& signals) {
  w.key("signals").begin_array();
  for (const auto& s : signals) {
    w.begin_object().field("kind", s.kind).field("detail", s.detail);
    w.key("plates").begin_array();
    for (const auto& p : s.plates) w.value(p);
    w.end_array();
    if (s.sighting) {
      const auto& e = *s.sighting;
      w.key("sighting").begin_object().field("station", e.station).field("plate", e.plate).field("ts", e.ts);
      w.key("lat").coord(e.lat);
      w.key("lon").coord(e.lon);
      w.field("distance_m", e.distance_m)
          .field("elapsed_s", static_cast<double>(e.elapsed_ms) / 1000.0)
          .field("min_travel_s", static_cast<double>(e.min_travel_ms) / 1000.0);
      w.end_object();
    }
    if (s.kind != "impossible_travel") {
      w.key("incidents").begin_array();
      for (const auto& i : s.incidents) w.value(i);
      w.end_array();
    }
    w.end_object();
  }
  w.end_array();
}

void hazard_fields(JsonWriter& w, const rec::Hazard& h) {
  w.field("hazard", h.id);
  w.key("station").string_or_null(h.station);
  w.key("lat").coord(h.lat);
  w.key("lon").coord(h.lon);
  w.field("ts", h.ts).field("kind", h.kind).field("note", h.note);
  w.field("state", h.cleared ? "cleared" : "open");
  w.key("cleared_ts").time_or_null(h.cleared_ts);
  w.field("report_id", h.report_id).field("received_ts", h.received_ts);
  w.key("by").value(h.source);
  w.key("cleared_by").string_or_null(h.cleared_by);
}

void open_hazards_field(JsonWriter& w, const Engine& e) {
  w.key("hazards").begin_array();
  for (const rec::Hazard* h : e.open_hazards()) {
    w.begin_object();
    hazard_fields(w, *h);
    w.end_object();
  }
  w.end_array();
}

std::string render_hazard(const rec::Hazard& h) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "hazard");
  hazard_fields(w, h);
  w.end_object();
  return s;
}

std::string render_hazard_accepted(const ev::HazardAccepted& a) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "accepted").field("id", a.report_id).field("hazard", a.hazard).end_object();
  return s;
}

std::string render_sighting_accepted(const ev::SightingAccepted& a) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("type", "accepted").field("id", a.id).field("plate", a.plate).field("ts", a.ts).end_object();
  return s;
}

std::string render_hazard_records(const std::vector<data::HazardRecord>& hazards) {
  std::string s;
  JsonWriter w(s);
  w.begin_array();
  for (const auto& r : hazards) {
    w.begin_object();
    hazard_fields(w, r.hazard);
    w.key("events").begin_array();
    for (const auto& e : r.events) {
      w.begin_object().field("ts", e.ts).field("event", e.event).field("detail", e.detail);
      w.key("by").value(e.actor_role + ":" + e.actor_name);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  return s;
}

std::string render_vehicle(const std::string& plate, const data::VehicleHistory& v) {
  std::string s;
  JsonWriter w(s);
  w.begin_object().field("plate", plate);
  w.key("sightings").begin_array();
  for (const auto& x : v.sightings) {
    w.begin_object().field("station", x.station);
    w.key("lat").coord(x.lat);
    w.key("lon").coord(x.lon);
    w.field("ts", x.ts);
    w.key("direction").string_or_null(x.direction);
    w.key("note").string_or_null(x.note);
    w.field("plate", x.plate);
    w.end_object();
  }
  w.end_array();
  w.key("incidents").begin_array();
  for (const auto& i : v.incidents) {
    w.begin_object().field("id", i.id).field("reported_ts", i.reported_ts).field("severity", i.severity);
    w.field("state", i.state);
    w.key("lat").coord(i.lat);
    w.key("lon").coord(i.lon);
    w.key("district").string_or_null(i.district);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return s;
}

}  // namespace dispatch::net
