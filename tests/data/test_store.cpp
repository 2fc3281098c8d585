// The store on a real SQLite file in a fresh temporary folder, or, with
// DISPATCH_TEST_BACKEND=postgresql, on a fresh database of the PostgreSQL server that
// libpq's environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD: ctest runs it under
// pg_virtualenv). Tests that only make sense on one backend say so and return.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/data/store_fixtures.hpp"

using namespace store_test;

TEST_CASE("round trip: every record kind through submit, commit, load and the reads") {
  TempDb t;
  // The records' times are from 1970: keep them when the store prunes as it opens.
  auto o = t.options();
  o.track_retention_ms = o.unit_event_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    s.add_units({unit("M1"), unit("H1", UnitKind::heli)});
    std::vector<Write> w;
    w.push_back(incident(1, "cc-1"));
    w.push_back(incident(2, "cc-2", IncidentState::closed));
    w.push_back(assignment(1, "I-1", "M1"));
    w.push_back(assignment(2, "I-2", "H1", AssignmentState::cleared));
    w.push_back(rec::Timeline{"I-1", 1001, "reported", "injury", "reporter", "cc"});
    w.push_back(rec::Timeline{"I-1", 1002, "assigned", "M1", "system", "dispatchd"});
    w.push_back(rec::UnitEvent{"M1", 2000, "assigned", "assigned A-1", "system", "dispatchd"});
    w.push_back(rec::TrackPoint{"M1", 5000, 29.5, 106.5});
    w.push_back(rec::TrackPoint{"M1", 6000, 29.51, 106.51});
    rec::Page p;
    p.seq = 7;
    p.id = "P-7";
    p.unit = "M1";
    p.capcode = "1200001";
    p.assignment = "A-1";
    p.text = "渝警保M1 injury";
    p.created_ts = 2000;
    w.push_back(p);
    rec::Claim c;
    c.seq = 3;
    c.id = "C-3";
    c.incident = "I-2";
    c.insurer = "PICC";
    c.plates = {"渝A12345"};
    c.created_ts = 3000;
    c.deadline_ts = 3000 + 900000;
    w.push_back(c);
    auto u = unit("M1");
    u.status = UnitStatus::assigned;
    u.updated_ts = 2000;
    w.push_back(u);
    std::atomic<bool> done{false};
    s.submit(std::move(w), [&] { done = true; });
    s.flush();
    CHECK(done);
  }
  data::Store s(o);
  auto snap = s.load();
  REQUIRE(snap.units.size() == 2);
  CHECK(snap.units[1].id == "M1");
  CHECK(snap.units[1].status == UnitStatus::assigned);
  CHECK(snap.units[1].capcode == "12000M1");
  REQUIRE(snap.open_incidents.size() == 1);
  const auto& i = snap.open_incidents[0];
  CHECK(i.id == "I-1");
  CHECK(i.note == "追尾 \"two\" cars");
  CHECK(i.district == "渝中区");
  CHECK(i.hospital == "西南医院");
  REQUIRE(i.vehicles.size() == 2);
  CHECK(i.vehicles[0].plate == "渝A12345");
  CHECK(i.vehicles[0].insurer == "PICC");
  REQUIRE(snap.assignments.size() == 1);
  CHECK(snap.assignments[0].unit == "M1");
  CHECK(snap.assignments[0].eta_s == 120);
  CHECK(snap.timeline.size() == 2);
  REQUIRE(snap.undelivered_pages.size() == 1);
  CHECK(snap.undelivered_pages[0].text == "渝警保M1 injury");
  REQUIRE(snap.report_ids.size() == 2);
  CHECK(snap.report_ids[0].source == "reporter:cc");
  CHECK(snap.report_ids[0].report_id == "cc-1");
  CHECK(snap.report_ids[0].incident == "I-1");
  CHECK(snap.max_incident_seq == 2);
  CHECK(snap.max_assignment_seq == 2);
  CHECK(snap.max_page_seq == 7);
  CHECK(snap.max_claim_seq == 3);
  REQUIRE(snap.claims.size() == 1);  // unpaid, although its incident is closed
  CHECK(snap.claims[0].plates == std::vector<std::string>{"渝A12345"});

  auto one = s.incident("I-2");
  REQUIRE(one);
  CHECK(one->incident.state == IncidentState::closed);
  CHECK(one->assignments.size() == 1);
  CHECK_FALSE(s.incident("I-404").has_value());
  CHECK(s.incidents({}).size() == 1);  // open only by default
  data::IncidentQuery all;
  all.open_only = false;
  CHECK(s.incidents(all).size() == 2);
  CHECK(s.incidents(all)[0].incident.id == "I-2");  // newest first
  CHECK(s.incidents(all)[0].assignments.size() == 1);
  CHECK(s.track("M1", 0, 0).size() == 2);
  CHECK(s.track("M1", 5500, 7000).size() == 1);
  CHECK(s.unit_events("M1").size() == 1);
}

TEST_CASE("round trip: an assignment's candidates (JSON text) are stored, loaded and updated") {
  TempDb t;
  const std::string why =
      R"([{"unit":"M1","distance_m":812,"eta_s":95,"why":"chosen"},)"
      R"({"unit":"M2","distance_m":300,"eta_s":1210,"why":"farther"},)"
      R"({"unit":"渝M\"3","distance_m":500,"eta_s":null,"why":"busy"}])";
  {
    data::Store s(t.options());
    s.add_units({unit("M1"), unit("M2")});
    auto a = assignment(1, "I-1", "M1");
    a.candidates = why;
    auto b = assignment(2, "I-1", "M2");  // stored before candidates were kept: empty
    s.submit({incident(1, "cc-1"), a, b}, [] {});
    a.state = AssignmentState::en_route;  // an upsert keeps them
    a.acked_ts = 2100;
    s.submit({a}, [] {});
    s.flush();
  }
  data::Store s(t.options());
  const auto snap = s.load();
  REQUIRE(snap.assignments.size() == 2);
  CHECK(snap.assignments[0].state == AssignmentState::en_route);
  CHECK(snap.assignments[0].candidates == why);
  CHECK(snap.assignments[1].candidates == "");
  const auto one = s.incident("I-1");
  REQUIRE(one);
  REQUIRE(one->assignments.size() == 2);
  CHECK(one->assignments[0].candidates == why);
}

TEST_CASE("upserts are idempotent; add_units leaves stored units alone") {
  TempDb t;
  data::Store s(t.options());
  auto u = unit("M1");
  u.status = UnitStatus::off_duty;
  s.submit({u}, [] {});
  s.flush();
  s.add_units({unit("M1"), unit("M2")});  // M1 stays off duty
  auto i = incident(1, "cc-1");
  s.submit({i}, [] {});
  i.state = IncidentState::en_route;
  s.submit({i}, [] {});
  s.flush();
  CHECK(count(t.path, "SELECT count(*) FROM incidents") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM incidents WHERE state='en_route'") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM units WHERE id='M1' AND status='off_duty'") == 1);
  CHECK(count(t.path, "SELECT count(*) FROM units") == 2);
}

TEST_CASE("done runs after the commit, in submission order; writes are grouped into batches") {
  TempDb t;
  auto o = t.options();
  o.batch_delay = std::chrono::milliseconds(5);
  data::Store s(o);
  std::mutex m;
  std::vector<int> order;
  std::atomic<int> seen_on_disk{0};
  const int threads = 4, per = 100;
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; ++k)
    ts.emplace_back([&, k] {
      for (int j = 0; j < per; ++j) {
        const int n = k * per + j;
        const std::string id = "I-" + std::to_string(n + 1);
        s.submit({incident(static_cast<std::uint64_t>(n + 1), "r" + std::to_string(n))}, [&, n, id] {
          // On disk (seen by another connection) before anybody is told.
          if (count(t.path, "SELECT count(*) FROM incidents WHERE id='" + id + "'") == 1) ++seen_on_disk;
          std::lock_guard lk(m);
          order.push_back(n);
        });
      }
    });
  for (auto& th : ts) th.join();
  s.flush();
  CHECK(seen_on_disk == threads * per);
  CHECK(order.size() == static_cast<std::size_t>(threads * per));
  // Per submitting thread, dones run in that thread's submission order.
  for (int k = 0; k < threads; ++k) {
    int last = -1;
    for (int n : order)
      if (n / per == k) {
        CHECK(n > last);
        last = n;
      }
  }
  const auto st = s.stats();
  CHECK(st.writes == static_cast<std::uint64_t>(threads * per));
  CHECK(st.commits < st.writes);  // group commit
}

TEST_CASE("track retention deletes old points only") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 10'000;
  data::Store s(o);
  s.submit({rec::TrackPoint{"M1", 1'000, 29.5, 106.5}, rec::TrackPoint{"M1", 95'000, 29.5, 106.5},
            rec::TrackPoint{"M2", 99'000, 29.5, 106.5}},
           [] {});
  s.flush();
  CHECK(s.prune_tracks(100'000) == 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 2);
}

TEST_CASE("the same report id from two tokens is two incidents, loaded with their sources") {
  TempDb t;
  {
    data::Store s(t.options());
    auto a = incident(1, "cc-7");
    a.source = "reporter:callcentre";
    auto b = incident(2, "cc-7");
    b.source = "reporter:fastclaims";
    s.submit({a, b}, [] {});
    s.flush();
  }
  data::Store s(t.options());
  const auto snap = s.load();
  REQUIRE(snap.report_ids.size() == 2);
  CHECK(snap.report_ids[0].source == "reporter:callcentre");
  CHECK(snap.report_ids[0].report_id == "cc-7");
  CHECK(snap.report_ids[0].incident == "I-1");
  CHECK(snap.report_ids[1].source == "reporter:fastclaims");
  CHECK(snap.report_ids[1].report_id == "cc-7");
  CHECK(snap.report_ids[1].incident == "I-2");
}

TEST_CASE("unit_events retention: prune_tracks deletes old unit events too, in chunks") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 10'000;
  o.unit_event_retention_ms = 50'000;
  data::Store s(o);
  std::vector<Write> w;
  // More than one chunk (10,000) of old events, so that pruning has to go round.
  for (int k = 0; k < 25'000; ++k) w.push_back(rec::UnitEvent{"M1", 1'000 + k, "status", "", "", ""});
  w.push_back(rec::UnitEvent{"M1", 49'999, "old", "", "", ""});
  w.push_back(rec::UnitEvent{"M1", 50'000, "kept", "", "", ""});  // exactly the cutoff: kept
  w.push_back(rec::UnitEvent{"M2", 99'000, "kept", "", "", ""});
  w.push_back(rec::TrackPoint{"M1", 80'000, 29.5, 106.5});  // older than the tracks' 10 s
  w.push_back(rec::TrackPoint{"M1", 95'000, 29.5, 106.5});
  s.submit(std::move(w), [] {});
  s.flush();
  CHECK(s.prune_tracks(100'000) == 25'000 + 1 + 1);
  CHECK(count(t.path, "SELECT count(*) FROM unit_events") == 2);
  const auto m1 = s.unit_events("M1");
  REQUIRE(m1.size() == 1);
  CHECK(m1[0].event == "kept");
  CHECK(s.unit_events("M2").size() == 1);
  CHECK(count(t.path, "SELECT count(*) FROM tracks") == 1);
  CHECK(s.prune_tracks(100'000) == 0);
}

TEST_CASE("the store prunes old unit events and tracks by itself when it opens") {
  SQLITE_ONLY();
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 60'000;
  o.unit_event_retention_ms = 60'000;
  const Millis now = wall_now();
  {
    data::Store s(o);
    s.submit({rec::UnitEvent{"M1", now - 3'600'000, "ancient", "", "", ""},
              rec::UnitEvent{"M1", now, "recent", "", "", ""},
              rec::TrackPoint{"M1", now - 3'600'000, 29.5, 106.5},
              rec::TrackPoint{"M1", now, 29.5, 106.5}},
             [] {});
    s.flush();
    CHECK(count(t.path, "SELECT count(*) FROM unit_events") == 2);
  }
  data::Store s(o);
  const auto ev = s.unit_events("M1");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].event == "recent");
  CHECK(s.track("M1", 0, 0).size() == 1);
}

TEST_CASE("paging: 2,500 incidents in pages of 1,000, newest first, each exactly once") {
  TempDb t;
  data::Store s(t.options());
  std::vector<Write> w;
  for (std::uint64_t k = 1; k <= 2500; ++k)
    w.push_back(incident(k, "r" + std::to_string(k), k % 5 == 0 ? IncidentState::closed : IncidentState::assigned));
  s.submit(std::move(w), [] {});
  s.flush();

  data::IncidentQuery q;
  q.open_only = false;
  q.limit = 1000;
  std::set<std::string> seen;
  std::vector<std::size_t> sizes;
  std::uint64_t last_seq = UINT64_MAX;
  bool ordered = true;
  for (int page = 0; page < 10; ++page) {
    const auto got = s.incidents(q);
    sizes.push_back(got.size());
    if (got.empty()) break;
    for (const auto& r : got) {
      if (r.incident.seq >= last_seq) ordered = false;
      last_seq = r.incident.seq;
      seen.insert(r.incident.id);
    }
    q.before = got.back().incident.id;
  }
  CHECK(sizes == std::vector<std::size_t>{1000, 1000, 500, 0});
  CHECK(ordered);
  CHECK(seen.size() == 2500);
  CHECK(*seen.begin() == "I-1");

  // Open only: 2,000 of them, the same way.
  data::IncidentQuery open;
  open.limit = 1000;
  std::size_t open_seen = 0;
  std::set<std::string> open_ids;
  for (int page = 0; page < 10; ++page) {
    const auto got = s.incidents(open);
    if (got.empty()) break;
    for (const auto& r : got) {
      CHECK(r.incident.state != IncidentState::closed);
      open_ids.insert(r.incident.id);
      ++open_seen;
    }
    open.before = got.back().incident.id;
  }
  CHECK(open_seen == 2000);
  CHECK(open_ids.size() == 2000);

  // `before` names the boundary, not a position: the page starts right below it.
  data::IncidentQuery below;
  below.open_only = false;
  below.limit = 3;
  below.before = "I-2000";
  const auto page = s.incidents(below);
  REQUIRE(page.size() == 3);
  CHECK(page[0].incident.id == "I-1999");
  CHECK(page[2].incident.id == "I-1997");
  below.before = "I-1";
  CHECK(s.incidents(below).empty());
  below.before = "I-404404";  // unknown
  CHECK(s.incidents(below).empty());
  below.before = "";
  below.limit = 0;
  CHECK(s.incidents(below).empty());
}

TEST_CASE("paging never skips incidents that share a seq (rows migrated from version 1)") {
  TempDb t;
  data::Store s(t.options());
  std::vector<Write> w;
  for (const char* id : {"OLD-a", "OLD-b", "OLD-c", "OLD-d"}) {
    auto i = incident(0, id);
    i.id = id;  // no trailing number: seq 0 for them all
    w.push_back(i);
  }
  w.push_back(incident(1, "new"));
  s.submit(std::move(w), [] {});
  s.flush();
  data::IncidentQuery q;
  q.open_only = false;
  q.limit = 1;
  std::vector<std::string> ids;
  for (int k = 0; k < 10; ++k) {
    const auto got = s.incidents(q);
    if (got.empty()) break;
    ids.push_back(got[0].incident.id);
    q.before = got[0].incident.id;
  }
  CHECK(ids == std::vector<std::string>{"I-1", "OLD-d", "OLD-c", "OLD-b", "OLD-a"});
}

TEST_CASE("each unit is restored at its newest track point") {
  TempDb t;
  auto o = t.options();
  o.track_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    s.add_units({unit("M1"), unit("M2"), unit("M3")});
    s.submit({rec::TrackPoint{"M1", 5000, 29.5, 106.5}, rec::TrackPoint{"M1", 9000, 29.6, 106.6},
              rec::TrackPoint{"M2", 7000, 29.7, 106.7}, rec::TrackPoint{"M2", 6000, 29.1, 106.1}},
             [] {});
    s.flush();
  }
  data::Store s(o);
  auto snap = s.load();
  REQUIRE(snap.last_positions.size() == 2);  // M3 was never seen
  std::sort(snap.last_positions.begin(), snap.last_positions.end(),
            [](const auto& a, const auto& b) { return a.unit < b.unit; });
  CHECK(snap.last_positions[0].unit == "M1");
  CHECK(snap.last_positions[0].ts == 9000);
  CHECK(snap.last_positions[0].lat == 29.6);
  CHECK(snap.last_positions[1].unit == "M2");
  CHECK(snap.last_positions[1].ts == 7000);
  CHECK(snap.last_positions[1].lon == 106.7);
}


TEST_CASE("load: service samples from the history on disk, closed incidents included") {
  TempDb t;  // SQLite, or PostgreSQL under DISPATCH_TEST_BACKEND=postgresql
  auto o = t.options();
  o.track_retention_ms = o.unit_event_retention_ms = 100LL * 365 * 24 * 3600 * 1000;
  {
    data::Store s(o);
    std::vector<Write> w;
    rec::Incident i;
    i.seq = 1;
    i.id = "I-1";
    i.report_id = "r1";
    i.state = IncidentState::closed;
    i.severity = Severity::critical;
    i.district = "巫溪县";
    i.reported_ts = 1'000'000;
    i.received_ts = 1'002'000;
    i.liability_ts = 1'100'000;
    i.source = "reporter:cc";
    w.push_back(i);
    auto asg = [&](std::uint64_t seq, Task task, Millis assigned, Millis arrived) {
      rec::Assignment a;
      a.seq = seq;
      a.id = "A-" + std::to_string(seq);
      a.incident = "I-1";
      a.unit = "U" + std::to_string(seq);
      a.task = task;
      a.state = AssignmentState::cleared;
      a.assigned_ts = assigned;
      a.arrived_ts = arrived;
      return a;
    };
    w.push_back(asg(1, Task::scene, 1'005'000, 1'300'000));         // first assigned: 3 s
    w.push_back(asg(2, Task::secure_lz, 1'006'000, 1'200'000));     // at the LZ: not the scene
    w.push_back(asg(3, Task::landing_zone, 1'006'000, 1'250'000));  // the heli: not the scene
    w.push_back(asg(4, Task::scene, 1'007'000, 1'400'000));         // the second on scene
    auto line = [](Millis ts, const char* ev) { return rec::Timeline{"I-1", ts, ev, "", "gateway", "avl"}; };
    w.push_back(line(1'006'000, "heli_called"));
    w.push_back(line(1'066'000, "airborne"));
    w.push_back(line(1'070'000, "airborne"));  // an old duplicate: the first counts
    w.push_back(line(1'250'000, "landed"));
    w.push_back(line(2'006'000, "transferred"));
    rec::Claim c;
    c.seq = 1;
    c.id = "C-1";
    c.incident = "I-1";
    c.insurer = "PICC";
    c.created_ts = 1'100'000;
    c.deadline_ts = 2'000'000;
    c.paid = true;
    c.paid_ts = 1'600'000;
    w.push_back(c);
    s.submit(std::move(w), [] {});
    s.flush();
  }
  data::Store s(o);
  const Snapshot snap = s.load();
  CHECK(snap.open_incidents.empty());
  std::map<std::string, std::vector<double>> by_stage;
  for (const auto& x : snap.service_samples) {
    CHECK(x.district == "巫溪县");
    CHECK(x.severity == Severity::critical);
    by_stage[x.stage].push_back(x.seconds);
  }
  CHECK(by_stage["to_assign"] == std::vector<double>{3});
  CHECK(by_stage["to_scene"] == std::vector<double>{298});
  CHECK(by_stage["to_liability"] == std::vector<double>{100});
  CHECK(by_stage["to_claim_paid"] == std::vector<double>{600});
  CHECK(by_stage["airborne"] == std::vector<double>{60});
  CHECK(by_stage["landed"] == std::vector<double>{244});
  CHECK(by_stage["transferred"] == std::vector<double>{1000});

  // The engine counts them as it would have live.
  Engine e;
  e.restore(snap, 3'000'000);
  const auto& sl = e.service_levels().at("巫溪县|critical");
  CHECK(sl.to_scene.count == 1);
  CHECK(sl.to_scene.max_s == doctest::Approx(298));
  CHECK(sl.call_to_hospital.sum_s == doctest::Approx(1000));
  s.close();
}

TEST_CASE("history filters: time range, district, severity, state, plate; combined; paged with before") {
  TempDb t;
  data::Store s(t.options());
  // 300 incidents: reported a minute apart; districts, severities and states in cycles;
  // every seventh with the plate 渝C77777 (written "渝c 77777" on some).
  const char* districts[] = {"渝中区", "江北区", "沙坪坝区"};
  const Severity severities[] = {Severity::minor, Severity::injury, Severity::critical, Severity::minor};
  const IncidentState states[] = {IncidentState::closed, IncidentState::assigned, IncidentState::remote,
                                  IncidentState::cancelled, IncidentState::on_scene};
  const std::int64_t t0 = 1'700'000'000'000;
  std::vector<Write> w;
  for (std::uint64_t k = 1; k <= 300; ++k) {
    auto i = incident(k, "r" + std::to_string(k), states[k % 5]);
    i.district = districts[k % 3];
    i.severity = severities[k % 4];
    i.reported_ts = t0 + static_cast<std::int64_t>(k) * 60'000;
    i.vehicles = {{"渝A" + std::to_string(10000 + k), "PICC"}};
    if (k % 7 == 0) i.vehicles.push_back({k % 2 ? "渝c 77777" : "渝C77777", "平安"});
    w.push_back(std::move(i));
  }
  s.submit(std::move(w), [] {});
  s.flush();

  // Every id the query gives, paging through with `before` in pages of `page`.
  auto all_pages = [&](data::IncidentQuery q, std::size_t page) {
    q.limit = page;
    std::vector<std::uint64_t> seqs;
    for (int n = 0; n < 1000; ++n) {
      const auto got = s.incidents(q);
      CHECK(got.size() <= page);
      for (const auto& r : got) seqs.push_back(r.incident.seq);
      if (got.size() < page) break;
      q.before = got.back().incident.id;
    }
    return seqs;
  };
  auto expect = [](auto pred) {
    std::vector<std::uint64_t> seqs;
    for (std::uint64_t k = 300; k >= 1; --k)
      if (pred(k)) seqs.push_back(k);
    return seqs;
  };
  data::IncidentQuery base;
  base.open_only = false;

  SUBCASE("from and to are inclusive") {
    auto q = base;
    q.from = t0 + 10 * 60'000;
    q.to = t0 + 20 * 60'000;
    CHECK(all_pages(q, 4) == expect([](auto k) { return k >= 10 && k <= 20; }));
    q.to.reset();
    CHECK(all_pages(q, 50) == expect([](auto k) { return k >= 10; }));
    q.from.reset();
    q.to = t0 + 60'000;
    CHECK(all_pages(q, 50) == std::vector<std::uint64_t>{1});
  }
  SUBCASE("district exact") {
    auto q = base;
    q.district = "江北区";
    CHECK(all_pages(q, 17) == expect([](auto k) { return k % 3 == 1; }));
    q.district = "江北";
    CHECK(all_pages(q, 17).empty());
  }
  SUBCASE("severity") {
    auto q = base;
    q.severity = "critical";
    CHECK(all_pages(q, 9) == expect([](auto k) { return k % 4 == 2; }));
  }
  SUBCASE("state: one state, or open only") {
    auto q = base;
    q.state = "remote";
    CHECK(all_pages(q, 11) == expect([](auto k) { return k % 5 == 2; }));
    auto open = base;
    open.open_only = true;
    open.district = "渝中区";  // filtered: through the filtered statement
    CHECK(all_pages(open, 11) == expect([](auto k) { return k % 3 == 0 && k % 5 != 0 && k % 5 != 3; }));
    open.state = "closed";  // open and closed: nothing
    CHECK(all_pages(open, 11).empty());
  }
  SUBCASE("plate: any vehicle of the incident, spaces and case ignored") {
    auto q = base;
    q.plate = "渝C77777";
    CHECK(all_pages(q, 5) == expect([](auto k) { return k % 7 == 0; }));
    q.plate = "渝c 77777";
    CHECK(all_pages(q, 5) == expect([](auto k) { return k % 7 == 0; }));
    q.plate = "渝A10123";
    CHECK(all_pages(q, 5) == std::vector<std::uint64_t>{123});
    q.plate = "渝A1012";  // not a prefix search
    CHECK(all_pages(q, 5).empty());
    q.plate = "渝A1012_";  // LIKE's wildcards are plain characters here
    CHECK(all_pages(q, 5).empty());
    q.plate = "%";
    CHECK(all_pages(q, 5).empty());
    q.plate = "PICC";  // an insurer is not a plate
    CHECK(all_pages(q, 5).empty());
  }
  SUBCASE("all combined, and a page boundary inside the matches") {
    auto q = base;
    q.from = t0 + 50 * 60'000;
    q.to = t0 + 280 * 60'000;
    q.district = "渝中区";
    q.severity = "minor";
    q.state = "closed";
    // k % 3 == 0, k % 4 in {0, 3}, k % 5 == 0, 50 <= k <= 280
    const auto want =
        expect([](auto k) { return k >= 50 && k <= 280 && k % 3 == 0 && (k % 4 == 0 || k % 4 == 3) && k % 5 == 0; });
    REQUIRE(want.size() >= 4);
    CHECK(all_pages(q, 1) == want);
    CHECK(all_pages(q, 2) == want);
    CHECK(all_pages(q, 1000) == want);
    q.plate = "渝C77777";
    CHECK(all_pages(q, 2) ==
          expect([](auto k) { return k >= 50 && k <= 280 && k % 3 == 0 && (k % 4 == 0 || k % 4 == 3) && k % 5 == 0 && k % 7 == 0; }));
  }
  SUBCASE("the records carry their assignments like unfiltered pages") {
    s.submit({assignment(1, "I-7", "M1")}, [] {});
    s.flush();
    auto q = base;
    q.plate = "渝C77777";
    q.limit = 300;
    const auto got = s.incidents(q);
    REQUIRE(!got.empty());
    CHECK(got.back().incident.id == "I-7");
    CHECK(got.back().assignments.size() == 1);
    CHECK(got.back().incident.vehicles.size() == 2);
  }
}
