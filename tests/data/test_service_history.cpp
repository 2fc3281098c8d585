// Service levels from what is on disk: the store's load hands the engine one sample per
// event of the whole history (closed incidents too), as the engine counts them live.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "data/store.hpp"
#include "engine/engine.hpp"

using namespace dispatch;
using namespace dispatch::engine;
namespace fs = std::filesystem;

TEST_CASE("load: service samples from the history on disk, closed incidents included") {
  char tmpl[] = "/tmp/dispatch-history-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const fs::path dir = tmpl;
  data::StoreOptions o;
  o.path = (dir / "dispatch.db").string();
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
  std::error_code ec;
  fs::remove_all(dir, ec);
}
