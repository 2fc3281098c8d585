// Pages: one per assignment to a unit with a capcode, resent until delivered.
#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/internal.hpp"

namespace dispatch::engine {

using namespace detail;

void Engine::pager_connected(ConnId conn, Output& out) {
  ++pagers_connected_;
  for (auto& p : pages_) {
    out.messages.push_back({Target::to(conn),
                            ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
  }
}

void Engine::page(const Assignment& a, const Unit& u, Millis now, Output& out) {
  const Incident& inc = *a.incident;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s %s %s %.5f,%.5f ETA%dmin %s", std::string(u.callsign()).c_str(),
                std::string(to_string(inc.rec.severity)).c_str(), inc.rec.id.c_str(),
                a.rec.lat, a.rec.lon, (a.rec.eta_s + 59) / 60, a.rec.id.c_str());
  rec::Page p;
  p.seq = ++page_seq_;
  p.id = make_id('P', p.seq);
  p.unit = u.id();
  p.capcode = u.capcode();
  p.assignment = a.rec.id;
  p.text = utf8_truncate(buf, 80);
  p.created_ts = now;
  ++stats_.pages;
  out.writes.push_back(p);
  out.messages.push_back({Target::pagers(),
                          ev::Page{p.id, p.unit, p.capcode, p.assignment, p.text}});
  pages_.push_back(PendingPage{std::move(p), now});
}

void Engine::on_delivered(const cmd::Delivered& c, const Origin& o, Millis now, Output& out) {
  auto it = std::find_if(pages_.begin(), pages_.end(),
                         [&](const PendingPage& p) { return p.rec.id == c.page; });
  if (it == pages_.end()) {
    // Delivered twice, or after a restart: harmless unless the page never existed.
    if (seq_of(c.page) == 0 || seq_of(c.page) > page_seq_)
      error(o, ErrorCode::bad_message, "no such page", c.page, out);
    return;
  }
  it->rec.delivered = true;
  it->rec.delivered_ts = now;
  out.writes.push_back(it->rec);
  if (Assignment* a = find_assignment(it->rec.assignment))
    timeline(*a->incident, now, "paged", it->rec.unit + " pager delivered " + it->rec.id,
             actor_of(o), out);
  pages_.erase(it);
  out.must_wait = true;
}

void Engine::resend_pages(Millis now, Output& out) {
  // Pages not delivered in time go out again, while a pager gateway is there to take
  // them; a page whose assignment has ended is not worth sending any more.
  std::erase_if(pages_, [&](const PendingPage& p) {
    const Assignment* a = find_assignment(p.rec.assignment);
    return !a || !is_active(a->rec.state);
  });
  if (pagers_connected_)
    for (auto& p : pages_)
      if (now - p.sent_ts >= config_.page_retry_ms) {
        p.sent_ts = now;
        ++stats_.pages_resent;
        out.messages.push_back({Target::pagers(),
                                ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
      }

}

}  // namespace dispatch::engine
