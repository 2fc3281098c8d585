// REST handlers, BasicHttpSession's members (the route table is in routes.hpp). Reads of engine state are rendered on
// the engine thread and pass the release gate; reads of the store run on the reads pool
// and show only what is committed.

#pragma once

#include <fmt/format.h>
#include <limits>

#include "net/http_session.hpp"
#include "net/json_writer.hpp"

namespace dispatch::net {

template <class Stream>
void BasicHttpSession<Stream>::route(const RouteMatch& m, std::shared_ptr<const engine::Principal> principal) {
  switch (m.route->id) {
    case RouteId::healthz: {
      const bool ok = srv_.store->healthy();
      return respond(ok ? 200 : 503, ok ? "ok\n" : "store unavailable\n", "text/plain");
    }
    case RouteId::metrics: return get_metrics();
    case RouteId::geo_districts:
    case RouteId::geo_places:
      if (!srv_.geography) return respond_error(404, "not_found", "no map loaded");
      return respond(200,
                     m.route->id == RouteId::geo_districts ? srv_.geography->districts_geojson()
                                                            : srv_.geography->places_geojson(),
                     "application/geo+json");
    case RouteId::api_units: return get_engine_view(false);
    case RouteId::api_stats: return get_engine_view(true);
    case RouteId::api_incidents: return get_incidents(false);
    case RouteId::api_incidents_csv: return get_incidents(true);
    case RouteId::api_incident: return get_incident(m.captures.at(0));
    case RouteId::api_unit_track: return get_track(m.captures.at(0));
    case RouteId::post_incident: return post_incident(std::move(principal));
    case RouteId::api_hazards: return get_hazards();
    case RouteId::api_vehicle: return get_vehicle(m.captures.at(0));
    case RouteId::geo_roads:
      if (!srv_.roads_geojson) return respond_error(404, "not_found", "no road network loaded (--roads)");
      return respond(200, *srv_.roads_geojson, "application/geo+json");
    case RouteId::api_assignment_route: return get_route(m.captures.at(0));
    case RouteId::api_config: return respond(200, srv_.console_config, "application/json");
  }
  respond_error(404, "not_found", "no such path");
}

// The I/O side's figures now, the engine's from the engine thread: posted there and back,
// so an engine stall delays this answer and blocks nobody.
template <class Stream>
void BasicHttpSession<Stream>::get_metrics() {
  waiting_ = self();
  auto s = self();
  asio::post(srv_.engine_ioc, [s] {
    std::string body = s->srv_.render_io_metrics();
    body += s->srv_.render_engine_metrics();
    s->respond_later(200, std::move(body), "text/plain; version=0.0.4");
  });
}

// /api/units and /api/stats: the engine's state of this moment, once it is durable.
template <class Stream>
void BasicHttpSession<Stream>::get_engine_view(bool stats) {
  id = srv_.next_conn.fetch_add(1);
  waiting_ = self();
  auto s = self();
  asio::post(srv_.engine_ioc, [s, stats] {
    auto& srv = s->srv_;
    srv.peers[s->id] = s;
    auto text = std::make_shared<const std::string>(stats ? render_service_levels(srv.engine)
                                                          : render_units(srv.engine, wall_now()));
    srv.release_to(s, std::move(text));
  });
}

template <class Stream>
struct BasicHttpSession<Stream>::CsvExport {
  data::IncidentQuery query;
  std::size_t remaining = 0;  // rows still wanted (limit)
  bool first = true;
  std::shared_ptr<http::response<http::empty_body>> res;
  std::shared_ptr<http::response_serializer<http::empty_body>> sr;
};

// GET /api/incidents: newest first; `state` (open | all | one incident state), `limit` and
// `before` (contract v2), and the history filters `from`, `to` (reported_ts in ms,
// inclusive), `district`, `severity`, `plate`; `format=csv` (or /api/incidents.csv) for the
// CSV export of every match.
template <class Stream>
void BasicHttpSession<Stream>::get_incidents(bool csv) {
  constexpr std::int64_t max_ts = 253402300799999;  // 9999-12-31
  data::IncidentQuery q;
  q.open_only = true;
  q.limit = std::numeric_limits<std::size_t>::max();  // the contract: every one, unless paged
  if (const std::string* state = target_.param("state")) {
    if (*state == "all") q.open_only = false;
    else if (*state == "open") q.open_only = true;
    else if (engine::parse_incident_state(*state)) {
      q.open_only = false;
      q.state = *state;
    } else {
      return respond_error(400, "bad_message",
                           "state must be open, all or an incident state (reported, remote, dispatching, "
                           "assigned, en_route, on_scene, closed, cancelled)");
    }
  }
  if (const std::string* limit = target_.param("limit")) {
    const auto n = parse_integer(*limit, 1, 100000);
    if (!n) return respond_error(400, "bad_message", "limit must be a whole number from 1 to 100000");
    q.limit = static_cast<std::size_t>(*n);
  }
  if (const std::string* before = target_.param("before")) {
    if (before->empty() || before->size() > 128) return respond_error(400, "bad_message", "before must be an incident id");
    q.before = *before;
  }
  for (auto [name, field] : {std::pair{"from", &q.from}, std::pair{"to", &q.to}}) {
    if (const std::string* v = target_.param(name)) {
      const auto n = parse_integer(*v, 0, max_ts);
      if (!n) return respond_error(400, "bad_message", "from and to are epoch milliseconds (reported_ts)");
      *field = *n;
    }
  }
  if (q.from && q.to && *q.from > *q.to) return respond_error(400, "bad_message", "from is after to");
  if (const std::string* v = target_.param("district")) {
    if (v->empty() || v->size() > 128) return respond_error(400, "bad_message", "district must be a district's name");
    q.district = *v;
  }
  if (const std::string* v = target_.param("severity")) {
    if (!engine::parse_severity(*v)) return respond_error(400, "bad_message", "severity must be minor, injury or critical");
    q.severity = *v;
  }
  if (const std::string* v = target_.param("plate")) {
    if (v->empty() || v->size() > 64) return respond_error(400, "bad_message", "plate must be a licence plate");
    q.plate = *v;
  }
  if (const std::string* v = target_.param("format")) {
    if (*v == "csv") csv = true;
    else if (*v != "json") return respond_error(400, "bad_message", "format must be json or csv");
  }
  waiting_ = self();
  auto s = self();
  if (csv) {
    auto x = std::make_shared<CsvExport>();
    x->remaining = q.limit;
    x->query = std::move(q);
    x->res = std::make_shared<http::response<http::empty_body>>(http::status::ok, req_.version());
    auto& res = *x->res;
    res.set(http::field::server, "dispatchd");
    res.set(http::field::content_type, "text/csv; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::content_disposition,
            "attachment; filename=\"incidents-" + csv_file_stamp(wall_now()) + ".csv\"");
    res.keep_alive(keep_alive_);
    res.chunked(true);
    x->sr = std::make_shared<http::response_serializer<http::empty_body>>(res);
    Ops::expires_after(stream_, std::chrono::seconds(30));
    // HEAD: the header alone (no chunks, not even the last one).
    return http::async_write_header(stream_, *x->sr, [s, x](error_code ec, std::size_t) {
      if (ec) return s->waiting_.reset();
      if (!s->head_) return s->csv_next_page(x);
      s->waiting_.reset();
      if (!s->keep_alive_) return Ops::shutdown_send(s->stream_);
      s->do_read();
    });
  }
  asio::post(srv_.reads, [s, q = std::move(q)] {
    const auto rows = s->srv_.store->incidents(q);
    std::string body;
    JsonWriter w(body);
    w.begin_array();
    const auto liability_ms = s->srv_.engine.config().remote_liability_ms;  // fixed at start
    for (const auto& r : rows)
      w.raw(render_incident_record(r.incident, r.assignments, r.timeline, liability_ms, r.signals));
    w.end_array();
    s->respond_later(200, std::move(body), "application/json");
  });
}

// One page of the export: read on the reads pool (a page at a time, so that memory stays
// bounded and other reads interleave), written as one chunk; the next page is read only
// once this one is written (a slow reader holds nothing but its page).
template <class Stream>
void BasicHttpSession<Stream>::csv_next_page(std::shared_ptr<CsvExport> x) {
  static constexpr std::size_t page = 500;
  auto s = self();
  asio::post(srv_.reads, [s, x] {
    auto q = x->query;
    q.limit = std::min(page, x->remaining);
    auto data = std::make_shared<std::string>();
    if (x->first) *data = render_incidents_csv_header();
    x->first = false;
    std::size_t got = 0;
    if (q.limit > 0) {
      const auto rows = s->srv_.store->incidents(q);
      got = rows.size();
      data->reserve(data->size() + rows.size() * 200);
      for (const auto& r : rows) append_incident_csv(*data, r.incident, r.assignments);
      if (!rows.empty()) x->query.before = rows.back().incident.id;
    }
    x->remaining -= got;
    const bool done = got < q.limit || x->remaining == 0;
    asio::post(s->stream_.get_executor(), [s, x, data, done] {
      if (data->empty()) return s->csv_finish();  // an empty chunk would end the body
      Ops::expires_after(s->stream_, std::chrono::seconds(30));
      asio::async_write(s->stream_, http::make_chunk(asio::buffer(*data)), [s, x, data, done](error_code ec, std::size_t) {
        if (ec) return s->waiting_.reset();
        if (done) return s->csv_finish();
        s->csv_next_page(x);
      });
    });
  });
}

template <class Stream>
void BasicHttpSession<Stream>::csv_finish() {
  auto s = self();
  Ops::expires_after(stream_, std::chrono::seconds(30));
  asio::async_write(stream_, http::make_chunk_last(), [s](error_code ec, std::size_t) {
    s->waiting_.reset();
    if (ec) return;
    if (!s->keep_alive_) return Ops::shutdown_send(s->stream_);
    s->do_read();
  });
}

template <class Stream>
void BasicHttpSession<Stream>::get_incident(const std::string& iid) {
  waiting_ = self();
  auto s = self();
  asio::post(srv_.reads, [s, iid] {
    auto r = s->srv_.store->incident(iid);
    if (!r) return s->respond_later(404, json_error_body("unknown_incident", "no such incident"), "application/json");
    s->respond_later(200,
                     render_incident_record(r->incident, r->assignments, r->timeline,
                                            s->srv_.engine.config().remote_liability_ms, r->signals),
                     "application/json");
  });
}

template <class Stream>
void BasicHttpSession<Stream>::get_track(const std::string& unit) {
  std::int64_t since = 0, until = 0;
  constexpr std::int64_t max_ts = 253402300799999;  // 9999-12-31
  if (const std::string* v = target_.param("since")) {
    const auto n = parse_integer(*v, 0, max_ts);
    if (!n) return respond_error(400, "bad_message", "since and until are epoch milliseconds");
    since = *n;
  }
  if (const std::string* v = target_.param("until")) {
    const auto n = parse_integer(*v, 0, max_ts);
    if (!n) return respond_error(400, "bad_message", "since and until are epoch milliseconds");
    until = *n;
  }
  waiting_ = self();
  auto s = self();
  asio::post(srv_.engine_ioc, [s, unit, since, until] {
    const bool known = s->srv_.engine.unit(unit) != nullptr;
    if (!known) return s->respond_later(404, json_error_body("unknown_unit", "no such unit"), "application/json");
    asio::post(s->srv_.reads, [s, unit, since, until] {
      // A GeoJSON Feature: the track as a LineString, with each point's time.
      std::string body;
      JsonWriter w(body);
      const auto points = s->srv_.store->track(unit, since, until);
      w.begin_object().field("type", "Feature");
      w.key("properties").begin_object().field("unit", unit).key("times").begin_array();
      for (const auto& p : points) w.value(p.ts);
      w.end_array().end_object();
      w.key("geometry").begin_object().field("type", "LineString").key("coordinates").begin_array();
      for (const auto& p : points) {
        w.begin_array();
        w.coord(p.lon);
        w.coord(p.lat);
        w.end_array();
      }
      w.end_array().end_object().end_object();
      s->respond_later(200, std::move(body), "application/geo+json");
    });
  });
}

// A GeoJSON Feature: the unit's way from where it is now to where the assignment sends it,
// along the roads when --roads is loaded (computed on the reads thread, so that a long
// search never holds the engine up), else the straight line. Released through the gate
// like every read of engine state.
template <class Stream>
void BasicHttpSession<Stream>::get_route(const std::string& assignment) {
  id = srv_.next_conn.fetch_add(1);
  waiting_ = self();
  auto s = self();
  asio::post(srv_.engine_ioc, [s, assignment] {
    auto& srv = s->srv_;
    const engine::Assignment* found = nullptr;
    for (const auto* inc : srv.engine.open_incidents()) {
      for (const auto& a : inc->assignments)
        if (a->rec.id == assignment) found = a.get();
      if (found) break;
    }
    if (!found)
      return s->respond_later(404, json_error_body("unknown_assignment", "no such assignment open"), "application/json");
    const auto& u = srv.engine.units().at(found->unit);
    if (!u.has_pos)
      return s->respond_later(404, json_error_body("unknown_unit", "the unit has no position yet"), "application/json");
    struct Job {
      std::string assignment, unit, incident;
      geo::LatLon from, to;
      bool ground;
    };
    Job job{found->rec.id, std::string(u.id()), found->rec.incident, u.pos, {found->rec.lat, found->rec.lon},
            u.kind != engine::UnitKind::heli};
    srv.peers[s->id] = s;
    asio::post(srv.reads, [s, job = std::move(job)] {
      const auto* roads = s->srv_.roads.get();
      geo::RouteResult r;
      if (job.ground && roads) r = roads->route(job.from, job.to);
      const bool road = r.found;
      if (!road) {
        const double m = geo::distance_m(job.from, job.to);
        r.points = {job.from, job.to};
        r.metres = m;
        r.seconds = job.ground ? geo::ground_eta_s(m) : geo::air_eta_s(m);
      }
      std::string body;
      JsonWriter w(body);
      w.begin_object().field("type", "Feature");
      w.key("properties").begin_object().field("assignment", job.assignment).field("unit", job.unit)
          .field("incident", job.incident).field("road", road)
          .field("eta_s", static_cast<std::int64_t>(std::lround(r.seconds)))
          .field("distance_m", static_cast<std::int64_t>(std::lround(r.metres))).end_object();
      w.key("geometry").begin_object().field("type", "LineString").key("coordinates").begin_array();
      for (const auto& p : r.points) {
        w.begin_array();
        w.coord(p.lon);
        w.coord(p.lat);
        w.end_array();
      }
      w.end_array().end_object().end_object();
      auto text = std::make_shared<const std::string>(std::move(body));
      asio::post(s->srv_.engine_ioc, [s, text = std::move(text)]() mutable { s->srv_.release_to(s, std::move(text)); });
    });
  });
}

template <class Stream>
void BasicHttpSession<Stream>::post_incident(std::shared_ptr<const engine::Principal> principal) {
  engine::cmd::Report rep;
  engine::ev::Error err;
  if (!parse_report(req_.body(), rep, err)) {
    srv_.metrics.error(err.code);
    return respond_error(info(err.code).http_status, info(err.code).wire, err.message);
  }
  who = std::move(principal);
  role = Role::reporter;
  id = srv_.next_conn.fetch_add(1);
  waiting_ = self();  // alive until the engine answers (only weak references elsewhere)
  auto s = self();
  asio::post(srv_.engine_ioc, [s, rep = std::move(rep)]() mutable {
    auto& srv = s->srv_;
    srv.peers[s->id] = s;
    srv.handle_command(engine::Command(std::move(rep)), engine::Origin{s->id, s->who.get()}, wall_now());
    srv.apply();
  });
}

}  // namespace dispatch::net

#include "net/rest_stations.ipp"
