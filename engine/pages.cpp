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
  for (auto& [seq, p] : pages_) {
    const Assignment* a = find_assignment(p.rec.assignment);
    if (!a || !is_active(a->rec.state)) continue;  // dropped when next due
    out.messages.push_back({Target::to(conn),
                            ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
  }
}

void Engine::track_page(rec::Page p, Millis sent_ts) {
  // Due in send order: appending keeps pages_due_ sorted (the clock never goes back
  // here; a restored page is due at once).
  const Millis due = sent_ts + config_.page_retry_ms;
  const Millis at = pages_due_.empty() ? due : std::max(due, pages_due_.back().first);
  const std::uint64_t seq = p.seq;
  pages_.insert_or_assign(seq, PendingPage{std::move(p), sent_ts, at});
  pages_due_.emplace_back(at, seq);
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
  track_page(std::move(p), now);
}

void Engine::on_delivered(const cmd::Delivered& c, const Origin& o, Millis now, Output& out) {
  auto it = pages_.find(seq_of(c.page));
  if (it != pages_.end() && it->second.rec.id != c.page) it = pages_.end();  // P-7 and P-07
  if (it == pages_.end()) {
    // Delivered twice, or after a restart: harmless unless the page never existed.
    if (seq_of(c.page) == 0 || seq_of(c.page) > page_seq_)
      error(o, ErrorCode::bad_message, "no such page", c.page, out);
    return;
  }
  rec::Page& p = it->second.rec;
  p.delivered = true;
  p.delivered_ts = now;
  out.writes.push_back(p);
  if (Assignment* a = find_assignment(p.assignment))
    timeline(*a->incident, now, "paged", p.unit + " pager delivered " + p.id, actor_of(o), out);
  pages_.erase(it);  // its entry in pages_due_ is skipped when due
  out.must_wait = true;
}

void Engine::resend_pages(Millis now, Output& out) {
  // Pages not delivered in time go out again, while a pager gateway is there to take
  // them; a page whose assignment has ended is not worth sending any more. Only the
  // pages that are due are looked at.
  std::size_t n = pages_due_.size();  // each due entry once per tick
  while (n-- > 0 && !pages_due_.empty() && pages_due_.front().first <= now) {
    const auto [due, seq] = pages_due_.front();
    pages_due_.pop_front();
    auto it = pages_.find(seq);
    if (it == pages_.end() || it->second.due_ts != due) continue;  // delivered, or due later
    PendingPage& p = it->second;
    const Assignment* a = find_assignment(p.rec.assignment);
    if (!a || !is_active(a->rec.state)) {
      pages_.erase(it);
      continue;
    }
    if (pagers_connected_) {
      p.sent_ts = now;
      ++stats_.pages_resent;
      out.messages.push_back({Target::pagers(),
                              ev::Page{p.rec.id, p.rec.unit, p.rec.capcode, p.rec.assignment, p.rec.text}});
    }
    // Looked at again one retry period from now (resent then if a pager is there).
    p.due_ts = std::max(now + config_.page_retry_ms, pages_due_.empty() ? now : pages_due_.back().first);
    pages_due_.emplace_back(p.due_ts, seq);
  }
}

}  // namespace dispatch::engine
