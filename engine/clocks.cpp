// The clocks that raise the alarm: liability (remote handling, from the accident), claim
// (from the first claim), and the air rescue stages (from the helicopter's call). Each
// clock is started once, met once; one that runs out first raises an overdue alert (a
// timeline line, a console message, a counter) exactly once, and never after a restart
// that finds the alert already in the timeline.
#include "engine/engine.hpp"

#include <algorithm>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

namespace {
std::size_t clock_index(std::string_view name) {
  return static_cast<std::size_t>(std::find(clock_names.begin(), clock_names.end(), name) - clock_names.begin());
}
}  // namespace

void Engine::start_clock(Incident& inc, std::string_view name, Millis start, Millis due) {
  const std::size_t i = clock_index(name);
  if (i == clock_names.size() || inc.clock(name)) return;
  inc.clocks.push_back(Clock{clock_names[i], start, due, 0, false});
  clocks_due_.emplace(due, inc.rec.id, clock_names[i]);
}

void Engine::meet_clock(Incident& inc, std::string_view name, Millis now) {
  for (auto& c : inc.clocks)
    if (c.name == name && !c.done_ts) {
      c.done_ts = now;
      clocks_due_.erase({c.due_ts, inc.rec.id, c.name});
    }
}

void Engine::check_clocks(Millis now, Output& out) {
  while (!clocks_due_.empty() && std::get<0>(*clocks_due_.begin()) <= now) {
    const auto [due, id, name] = *clocks_due_.begin();
    clocks_due_.erase(clocks_due_.begin());
    Incident* inc = find_incident(id);
    if (!inc) continue;  // left memory: the store has it
    auto it = std::find_if(inc->clocks.begin(), inc->clocks.end(), [&](const Clock& c) { return c.name == name; });
    if (it == inc->clocks.end() || it->done_ts || it->overdue) continue;
    // A closed incident's unmet clocks no longer matter, but for its unpaid claims.
    if (!is_open(inc->rec.state) && name != "claim") continue;
    it->overdue = true;
    ++stats_.overdue[clock_index(name)];
    timeline(*inc, now, "overdue", std::string(name), system_actor, out);
    out.messages.push_back({Target::consoles(), ev::Alert{"overdue", id, std::string(name), due, now}});
    out.must_wait = true;
  }
}

}  // namespace dispatch::engine
