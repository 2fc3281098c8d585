// REST for rural stations (contract v2 section 10), BasicHttpSession's members: the
// hazards and a vehicle's history, read from the store on the reads pool (committed state
// only). Included at the end of rest.ipp.

#pragma once

#include <limits>

#include "net/http_session.hpp"
#include "net/render_stations.hpp"

namespace dispatch::net {

// GET /api/hazards?state=open|all&limit=N: newest first, each with its history.
template <class Stream>
void BasicHttpSession<Stream>::get_hazards() {
  data::HazardQuery q;
  q.limit = 1000;
  if (const std::string* state = target_.param("state")) {
    if (*state == "all") q.open_only = false;
    else if (*state != "open") return respond_error(400, "bad_message", "state must be open or all");
  }
  if (const std::string* limit = target_.param("limit")) {
    const auto n = parse_integer(*limit, 1, 100000);
    if (!n) return respond_error(400, "bad_message", "limit must be a whole number from 1 to 100000");
    q.limit = static_cast<std::size_t>(*n);
  }
  waiting_ = self();
  auto s = self();
  asio::post(srv_.reads, [s, q] {
    s->respond_later(200, render_hazard_records(s->srv_.store->hazards(q)), "application/json");
  });
}

// GET /api/vehicles/{plate}?limit=N&before_ts=T: its sightings and incidents, newest first.
template <class Stream>
void BasicHttpSession<Stream>::get_vehicle(const std::string& plate) {
  if (plate.size() > 64) return respond_error(400, "bad_message", "plate is too long");
  data::VehicleQuery q;
  q.plate = plate;
  q.limit = 100;
  if (const std::string* limit = target_.param("limit")) {
    const auto n = parse_integer(*limit, 1, 10000);
    if (!n) return respond_error(400, "bad_message", "limit must be a whole number from 1 to 10000");
    q.limit = static_cast<std::size_t>(*n);
  }
  if (const std::string* before = target_.param("before_ts")) {
    const auto n = parse_integer(*before, 1, 253402300799999);
    if (!n) return respond_error(400, "bad_message", "before_ts must be epoch milliseconds");
    q.before_ts = *n;
  }
  waiting_ = self();
  auto s = self();
  asio::post(srv_.reads, [s, q = std::move(q)] {
    s->respond_later(200, render_vehicle(q.plate, s->srv_.store->vehicle(q)), "application/json");
  });
}

}  // namespace dispatch::net
