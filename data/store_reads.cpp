// The store's reads (recovery, REST, history), written once over any backend. The Store
// serialises them and calls them only while its read side is open.
#include <chrono>
#include <limits>

#include "data/backend.hpp"
#include "data/stations_store.hpp"

namespace dispatch::data::reads {

using rows::R;

namespace {

void read_children(Backend& m, IncidentRecord& r) {
  r.signals = stations::signals_of(m, r.incident.id);  // rural stations' fraud signals
  m.read(R::assignments_of, params(r.incident.id),
         [&](const Row& q) { r.assignments.push_back(rows::read_assignment(q)); });
  m.read(R::timeline_of, params(r.incident.id), [&](const Row& q) { r.timeline.push_back(rows::read_timeline(q)); });
}

}  // namespace

engine::Snapshot load(Backend& m) {
  engine::Snapshot s;
  const Params none;
  m.read(R::units, none, [&](const Row& q) { s.units.push_back(rows::read_unit(q)); });
  m.read(R::last_positions, none, [&](const Row& q) { s.last_positions.push_back(rows::read_track_point(q)); });
  m.read(R::open_incidents, none, [&](const Row& q) { s.open_incidents.push_back(rows::read_incident(q)); });
  m.read(R::open_assignments, none, [&](const Row& q) { s.assignments.push_back(rows::read_assignment(q)); });
  m.read(R::open_timeline, none, [&](const Row& q) { s.timeline.push_back(rows::read_timeline(q)); });
  m.read(R::undelivered_pages, none, [&](const Row& q) { s.undelivered_pages.push_back(rows::read_page(q)); });
  m.read(R::report_ids, none, [&](const Row& q) {
    s.report_ids.push_back(engine::Snapshot::ReportKey{q.text(0), q.text(1), q.text(2)});
  });
  m.read(R::live_claims, none, [&](const Row& q) { s.claims.push_back(rows::read_claim(q)); });
  m.read(R::service_samples, none, [&](const Row& q) {
    engine::Snapshot::ServiceSample x;
    x.district = q.text(0);
    x.severity = engine::parse_severity(q.text(1)).value_or(engine::Severity::minor);
    x.stage = q.text(2);
    x.seconds = static_cast<double>(q.int64(3)) / 1000.0;
    s.service_samples.push_back(std::move(x));
  });
  m.read(R::max_seqs, none, [&](const Row& q) {
    s.max_incident_seq = static_cast<std::uint64_t>(q.int64(0));
    s.max_assignment_seq = static_cast<std::uint64_t>(q.int64(1));
    s.max_page_seq = static_cast<std::uint64_t>(q.int64(2));
    s.max_claim_seq = static_cast<std::uint64_t>(q.int64(3));
  });
  // Rural stations: the signals' windows as of now, hazards, open incidents' signals.
  stations::load(m, s.stations,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
  return s;
}

std::optional<IncidentRecord> incident(Backend& m, const std::string& id) {
  std::optional<IncidentRecord> r;
  m.read(R::incident, params(id), [&](const Row& q) { r = IncidentRecord{rows::read_incident(q), {}, {}}; });
  if (r) read_children(m, *r);
  return r;
}

std::vector<IncidentRecord> incidents(Backend& m, const IncidentQuery& query) {
  std::vector<IncidentRecord> out;
  if (query.limit == 0) return out;
  // The page starts after (seq, id) of `before`; the first page after everything.
  std::int64_t before_seq = std::numeric_limits<std::int64_t>::max();
  if (!query.before.empty()) {
    bool known = false;
    m.read(R::seq_of, params(query.before), [&](const Row& q) {
      known = true;
      before_seq = q.int64(0);
    });
    if (!known) return out;  // an id we do not know: no page
  }
  const auto limit = static_cast<std::int64_t>(
      std::min<std::size_t>(query.limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
  const auto each = [&](const Row& q) { out.push_back(IncidentRecord{rows::read_incident(q), {}, {}}); };
  if (!query.filtered()) {
    m.read(query.open_only ? R::newest_open : R::newest, params(before_seq, query.before, limit), each);
  } else {
    // The history filters: every value bound, unset ones as NULL (rows.cpp, newest_filtered).
    auto unless_empty = [](const std::string& v) { return v.empty() ? std::nullopt : std::optional<std::string>(v); };
    std::string plate;
    for (const char c : query.plate) {
      if (c == ' ') continue;
      if (c == '%' || c == '_' || c == '\\') plate += '\\';
      plate += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    }
    m.read(R::newest_filtered,
           params(before_seq, query.before, limit, query.open_only, query.from, query.to, unless_empty(query.district),
                  unless_empty(query.severity), unless_empty(query.state), unless_empty(plate)),
           each);
  }
  for (auto& r : out) read_children(m, r);
  return out;
}

std::vector<engine::rec::TrackPoint> track(Backend& m, const std::string& unit, engine::Millis since,
                                           engine::Millis until) {
  std::vector<engine::rec::TrackPoint> out;
  m.read(R::track,
         params(unit, static_cast<std::int64_t>(since),
                static_cast<std::int64_t>(until == 0 ? std::numeric_limits<std::int64_t>::max() : until)),
         [&](const Row& q) { out.push_back(rows::read_track_point(q)); });
  return out;
}

std::vector<engine::rec::UnitEvent> unit_events(Backend& m, const std::string& unit) {
  std::vector<engine::rec::UnitEvent> out;
  m.read(R::unit_events, params(unit), [&](const Row& q) { out.push_back(rows::read_unit_event(q)); });
  return out;
}

}  // namespace dispatch::data::reads
