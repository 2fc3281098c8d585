// The router: everything that runs on the engine thread. It hands frames to the engine,
// renders what the engine says from the values of that moment, and routes the text to the
// sessions once every write made before it is durable (the release gate).

#include <fmt/format.h>

#include <algorithm>

#include "net/json_writer.hpp"
#include "net/render_stations.hpp"
#include "net/server_impl.hpp"

namespace dispatch::net {

namespace {
// Above this many messages held behind the gate, console position flushes wait.
constexpr std::size_t max_held = 10000;
}  // namespace

void Server::Impl::register_peer(std::shared_ptr<Peer> p) {
  asio::post(engine_ioc, [this, p] {
    peers[p->id] = p;
    switch (p->role) {
      case Role::console:
        feed.add(p->id, p->batch_frames);
        // The snapshot shows the state of this moment, once that state is durable.
        release_to(p, std::make_shared<const std::string>(render_snapshot(engine, wall_now(), console_config)),
                   true);
        break;
      case Role::pager:
        pagers.push_back(p->id);
        engine.pager_connected(p->id, out);
        apply();
        break;
      case Role::unit:
        engine.unit_connected(p->id, *p->who);
        break;
      case Role::insurer:
        insurers[p->who->insurer].push_back(p->id);
        engine.insurer_connected(p->id, p->who->insurer, out);
        apply();
        break;
      case Role::gateway:
      case Role::reporter:
      case Role::station:
        break;
    }
  });
}

void Server::Impl::unregister_peer(ConnId id, Role role) {
  // A gateway's or unit's goodbye follows its frames on the bulk lane (it must not overtake
  // positions that name this connection as the unit's way out).
  if (role == Role::gateway || role == Role::unit) {
    push_bulk({nullptr, nullptr, 0, id, role});
    return;
  }
  asio::post(engine_ioc, [this, id, role] { forget_peer(id, role); });
}

void Server::Impl::forget_peer(ConnId id, Role role) {
  peers.erase(id);
  feed.remove(id);
  if (std::erase(pagers, id)) engine.pager_disconnected();
  for (auto it = insurers.begin(); it != insurers.end();) {
    std::erase(it->second, id);
    it = it->second.empty() ? insurers.erase(it) : std::next(it);
  }
  // Only a unit's or gateway's connection can be a unit's way out (a scan of the fleet).
  if (role == Role::unit || role == Role::gateway) engine.disconnected(id);
}

void Server::Impl::on_frame(const std::shared_ptr<Peer>& p, ParsedFrame& f, std::int64_t posted_us) {
  const auto t0 = mono_us();
  metrics.stage_engine_wait.observe_us(t0 - posted_us);
  const Millis now = wall_now();
  const engine::Origin origin = origin_of(*p);
  for (auto& e : f.errors) {
    metrics.error(e.code);
    out.messages.push_back({engine::Target::to(p->id), std::move(e)});
  }
  if (!f.positions.empty()) {
    inc(metrics.positions_in, f.positions.size());
    engine.positions(f.positions, origin, now, out);
  }
  for (auto& c : f.commands) handle_command(std::move(c), origin, now, f.read_us, t0);
  metrics.stage_engine.observe_us(mono_us() - t0);
  apply();
  p->frame_taken();
}

void Server::Impl::post_frame(std::shared_ptr<Peer> p, std::shared_ptr<ParsedFrame> f, std::int64_t posted_us,
                              bool bulk) {
  if (!bulk) {
    asio::post(engine_ioc, [this, p = std::move(p), f = std::move(f), posted_us] {
      on_frame(p, *f, posted_us);
      frames_to_engine.fetch_sub(1);
    });
    return;
  }
  push_bulk({std::move(p), std::move(f), posted_us, 0, Role::gateway});
}

void Server::Impl::push_bulk(BulkFrame b) {
  bool schedule;
  {
    std::lock_guard lock(bulk_mu);
    bulk_frames.push_back(std::move(b));
    schedule = !std::exchange(bulk_scheduled, true);
  }
  if (schedule) asio::post(engine_ioc, [this] { take_bulk(); });
}

void Server::Impl::take_bulk() {
  BulkFrame b;
  {
    std::lock_guard lock(bulk_mu);
    if (bulk_frames.empty()) {
      bulk_scheduled = false;
      return;
    }
    b = std::move(bulk_frames.front());
    bulk_frames.pop_front();
  }
  if (b.frame) {
    on_frame(b.peer, *b.frame, b.posted_us);
    frames_to_engine.fetch_sub(1);
  } else {
    forget_peer(b.gone, b.gone_role);
  }
  // Behind whatever was posted while this frame ran.
  bool more;
  {
    std::lock_guard lock(bulk_mu);
    more = !bulk_frames.empty();
    if (!more) bulk_scheduled = false;
  }
  if (more) asio::post(engine_ioc, [this] { take_bulk(); });
}

namespace {
std::string ref_of(const engine::Command& c) {
  return std::visit(
      [](const auto& m) -> std::string {
        using M = std::decay_t<decltype(m)>;
        if constexpr (requires { m.id; }) return m.id;
        else if constexpr (requires { m.assignment; }) return m.assignment;
        else if constexpr (requires { m.unit; }) return m.unit;
        else if constexpr (requires { m.incident; }) return m.incident;
        else if constexpr (requires { m.page; }) return m.page;
        else if constexpr (requires { m.claim; }) return m.claim;
        else if constexpr (requires { m.hazard; }) return m.hazard;
        else {
          (void)sizeof(M);
          return {};
        }
      },
      c);
}
}  // namespace

void Server::Impl::handle_command(engine::Command c, const engine::Origin& origin, Millis now, std::int64_t read_us,
                                  std::int64_t took_us) {
  // Every command may write. Over the store's bound, or while it cannot commit, nothing
  // new is taken: the sender hears `unavailable` and may send it again (positions still
  // update memory: they are not commands).
  if (!store->has_room()) {
    inc(metrics.commands_refused);
    metrics.error(engine::ErrorCode::unavailable);
    out.messages.push_back({engine::Target::to(origin.conn),
                            engine::ev::Error{engine::ErrorCode::unavailable,
                                              "the store cannot take writes now; try again", ref_of(c)}});
    return;
  }
  if (auto* r = std::get_if<engine::cmd::Report>(&c)) {
    // One name per insurer, so that each gets its claims whatever the reporter wrote.
    for (auto& v : r->vehicles)
      if (auto it = insurer_alias.find(v.insurer); it != insurer_alias.end()) v.insurer = it->second;
    const std::size_t before = out.messages.size();
    engine.handle(c, origin, now, out);
    for (std::size_t i = before; i < out.messages.size(); ++i)
      if (auto* a = std::get_if<engine::ev::Accepted>(&out.messages[i].payload)) {
        const auto at = mono_us();
        report_started_us.emplace(a->incident, at);
        // report <id> <incident> <frame read> <engine took it> <accepted> (an HTTP report
        // has no frame: 0 0)
        if (trace)
          std::fprintf(trace.get(), "report\t%s\t%s\t%lld\t%lld\t%lld\n", a->report_id.c_str(), a->incident.c_str(),
                       static_cast<long long>(read_us), static_cast<long long>(took_us),
                       static_cast<long long>(at));
      }
    if (report_started_us.size() > 100000) report_started_us.clear();  // waiting ones: no figure
    return;
  }
  engine.handle(c, origin, now, out);
}

namespace {
Text render_payload(const engine::Engine& engine, const engine::Payload& p, Millis now) {
  return std::visit(
      [&](const auto& ev) -> Text {
        using E = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<E, engine::ev::Accepted>)
          return std::make_shared<const std::string>(render_accepted(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Assign>)
          return std::make_shared<const std::string>(render_assign(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Cancel>)
          return std::make_shared<const std::string>(render_cancel(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Page>)
          return std::make_shared<const std::string>(render_page(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Error>)
          return std::make_shared<const std::string>(render_error(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Alert>)
          return std::make_shared<const std::string>(render_alert(ev));
        else if constexpr (std::is_same_v<E, engine::ev::Claim>) {
          const engine::rec::Claim* c = engine.claim(ev.claim);
          if (!c) return nullptr;
          const engine::Incident* inc = engine.incident(c->incident);
          return std::make_shared<const std::string>(
              render_claim(*c, inc ? &inc->rec : nullptr, inc ? &inc->signals : nullptr));
        } else if constexpr (std::is_same_v<E, engine::ev::HazardAccepted>) {
          return std::make_shared<const std::string>(render_hazard_accepted(ev));
        } else if constexpr (std::is_same_v<E, engine::ev::SightingAccepted>) {
          return std::make_shared<const std::string>(render_sighting_accepted(ev));
        } else if constexpr (std::is_same_v<E, engine::ev::HazardChanged>) {
          const engine::rec::Hazard* h = engine.hazard(ev.hazard);
          if (!h) return nullptr;
          return std::make_shared<const std::string>(render_hazard(*h));
        } else if constexpr (std::is_same_v<E, engine::ev::UnitChanged>)
          return std::make_shared<const std::string>(render_unit(engine, engine.units()[ev.unit], now));
        else {
          const engine::Incident* inc = engine.incident(ev.incident);
          if (!inc) return nullptr;
          return std::make_shared<const std::string>(render_incident(engine, *inc, now));
        }
      },
      p);
}

bool only_track_points(const std::vector<engine::Write>& writes) {
  return std::all_of(writes.begin(), writes.end(),
                     [](const engine::Write& w) { return std::holds_alternative<engine::rec::TrackPoint>(w); });
}
}  // namespace

void Server::Impl::apply() {
  if (out.empty()) return;
  const Millis now = wall_now();
  const auto t = mono_us();
  // Render now, from the state of this moment: what leaves later is what was true when
  // these writes were made, never a later (not yet durable) state.
  std::vector<Outgoing> rendered;
  rendered.reserve(out.messages.size());
  for (auto& m : out.messages) {
    Outgoing o;
    o.text = render_payload(engine, m.payload, now);
    if (!o.text) continue;
    o.made_us = t;
    if (auto* a = std::get_if<engine::ev::Assign>(&m.payload)) o.assign_incident = a->incident;
    if (m.to.kind == engine::Target::Kind::conn) o.payload = std::move(m.payload);
    o.to = std::move(m.to);
    rendered.push_back(std::move(o));
  }
  if (!out.writes.empty()) {
    if (only_track_points(out.writes) && !out.must_wait) {
      // Downsampled tracks: nobody waits for them; over the store's bound they are dropped.
      store->submit_optional(std::move(out.writes));
    } else {
      const std::uint64_t seq = gate.submitted();
      // On the writer thread, right after the commit: what waited for it goes to the
      // sessions from there (no hop back to the engine thread).
      store->submit(std::move(out.writes), [this, seq] { gate.committed(seq, [this](Release& r) { deliver(r); }); });
    }
  }
  for (auto& o : rendered) {
    // An error says nothing about the state: it goes at once (and so a failing disk cannot
    // make error replies pile up behind the gate).
    const bool stateless = o.payload && std::holds_alternative<engine::ev::Error>(*o.payload);
    if (stateless) send(o);
    else hold(std::move(o));
  }
  out.clear();
}

void Server::Impl::hold(Outgoing o) {
  gate.release(resolve(o), [this](Release& r) { deliver(r); });
}

void Server::Impl::release_to(const std::shared_ptr<Peer>& p, Text text, bool snapshot) {
  Outgoing o;
  o.snapshot = snapshot;
  o.to = engine::Target::to(p->id);
  o.text = std::move(text);
  o.made_us = mono_us();
  hold(std::move(o));
}

void Server::Impl::send(Outgoing& o) {
  Release r = resolve(o);
  r.made_us = 0;  // not held: no commit wait to count
  deliver(r);
}

Release Server::Impl::resolve(Outgoing& o) {
  Release r;
  r.text = std::move(o.text);
  r.payload = std::move(o.payload);
  r.snapshot = o.snapshot;
  r.made_us = o.made_us;
  if (!o.assign_incident.empty()) {
    if (auto it = report_started_us.find(o.assign_incident); it != report_started_us.end()) {
      r.report_us = it->second;
      report_started_us.erase(it);
      if (trace) r.traced_incident = o.assign_incident;
    }
  }
  auto add = [&](ConnId id) {
    if (auto it = peers.find(id); it != peers.end()) r.more.push_back(it->second);
  };
  switch (o.to.kind) {
    case engine::Target::Kind::conn:
      if (auto it = peers.find(o.to.conn); it != peers.end()) r.to = it->second;
      break;
    case engine::Target::Kind::consoles:
      if (o.flush) {
        r.flush = std::move(o.flush);
        break;
      }
      // Resolved now: a console that opens later has this in its snapshot (held after it).
      r.to_consoles = true;
      r.more.reserve(feed.size());
      for (ConnId id : feed.ids()) add(id);
      break;
    case engine::Target::Kind::insurer:
      if (auto it = insurers.find(o.to.insurer); it != insurers.end())
        for (ConnId id : it->second) add(id);
      break;
    case engine::Target::Kind::pagers:
      for (ConnId id : pagers) add(id);
      break;
  }
  return r;
}

void Server::Impl::deliver(Release& r) {
  if (!serving()) return;  // a standby, or an active whose lease may have lapsed: says nothing
  const auto now_us = mono_us();
  if (r.made_us) metrics.stage_commit_wait.observe_us(now_us - r.made_us);
  if (r.report_us) metrics.assign_latency.observe_us(now_us - r.report_us);
  // assign <incident> <released to its session>: the report's first assign
  if (!r.traced_incident.empty() && trace)
    std::fprintf(trace.get(), "assign\t%s\t%lld\n", r.traced_incident.c_str(), static_cast<long long>(now_us));
  if (r.flush) {
    asio::post(console_strand, [this, job = std::move(r.flush)] { run_console_flush(*job); });
    return;
  }
  const engine::Payload* payload = r.payload ? &*r.payload : nullptr;
  if (auto p = r.to.lock()) {
    if (r.snapshot) p->deliver_snapshot(std::move(r.text));
    else p->deliver(std::move(r.text), payload);
    return;
  }
  if (r.more.empty()) return;
  if (r.to_consoles) {
    // Fanned out on the console strand, in order with the position flushes. (A console
    // over its queue bound is closed by its own session, like every connection.)
    asio::post(console_strand, [to = std::move(r.more), text = std::move(r.text)] {
      for (const auto& w : to)
        if (auto p = w.lock()) p->deliver(text, nullptr);
    });
    return;
  }
  for (const auto& w : r.more)
    if (auto p = w.lock()) p->deliver(r.text, payload);
}

void Server::Impl::drop_console(ConnId id) {
  feed.remove(id);
  auto it = peers.find(id);
  if (it == peers.end()) return;
  auto p = it->second.lock();
  if (!p) return;
  log_line(fmt::format("console {} dropped: it does not keep up ({} bytes queued)", id,
                       p->queued_bytes.load()));
  p->drop("too slow: outgoing queue over its limit");
}

// Plans the flush here (which units, which consoles: no rendering), copies each unit's
// state of this moment, and leaves the rendering and fan-out to the console strand. The
// flush passes the gate like every other word about the state.
void Server::Impl::flush_consoles() {
  moved.clear();
  engine.take_moved(moved);
  feed.moved(moved);
  // While the store is far behind (a failing disk), positions wait coalesced in the feed
  // instead of piling up behind the gate.
  if (feed.size() == 0 || gate.held() > max_held) return;
  const auto t0 = mono_us();
  ConsoleFeed::Plan& plan = flush_plan;
  auto peer = [this](ConnId id) -> std::shared_ptr<Peer> {
    auto it = peers.find(id);
    return it == peers.end() ? nullptr : it->second.lock();
  };
  feed.plan(
      [&](ConnId id) -> std::size_t {
        auto p = peer(id);
        if (!p) return 0;
        const std::size_t q = p->queued_bytes.load(std::memory_order_relaxed);
        const std::size_t snap = p->snapshot_bytes.load(std::memory_order_relaxed);
        return q > snap ? q - snap : 0;
      },
      // One flush per console on its way (held at the gate, or rendering): while the
      // store is slow to commit, the next positions wait coalesced here, one per unit,
      // instead of as more copies of every unit's state behind the gate.
      [&](ConnId id) {
        auto p = peer(id);
        return !p || !p->flush_in_flight.load(std::memory_order_acquire);
      },
      plan);
  for (ConnId id : plan.dropped) drop_console(id);
  if (plan.sends.empty()) return;
  const Millis now = wall_now();
  auto job = std::make_shared<ConsoleFlush>();
  job->batch_frame_bytes = feed.batch_frame_bytes();
  job->views.reserve(plan.slots.size());
  if (view_of_slot.size() < engine.units().size()) view_of_slot.resize(engine.units().size());
  for (auto slot : plan.slots) {
    view_of_slot[slot] = static_cast<std::uint32_t>(job->views.size());
    job->views.push_back(unit_view(engine, engine.units()[slot], now));
  }
  for (auto& send : plan.sends) {
    auto p = peer(send.console);
    if (!p) continue;
    ConsoleFlush::Send s;
    s.console = p;
    s.batch = send.batch;
    s.index.reserve(send.slots.size());
    for (auto slot : send.slots) s.index.push_back(view_of_slot[slot]);
    p->flush_in_flight.store(true, std::memory_order_relaxed);
    job->sends.push_back(std::move(s));
  }
  Outgoing o;
  o.to = engine::Target::consoles();
  o.flush = std::move(job);
  o.made_us = t0;
  hold(std::move(o));
}

// Every unit of the flush rendered once, back to back into one buffer; each console's
// messages are spans of it (or, for ?batch=1 consoles, arrays built from it).
void Server::Impl::run_console_flush(ConsoleFlush& job) {
  const auto t0 = mono_us();
  RenderedUnits units;
  {
    std::string text;
    text.reserve(job.views.size() * 200);
    units.begin.reserve(job.views.size() + 1);
    for (const auto& v : job.views) {
      units.begin.push_back(static_cast<std::uint32_t>(text.size()));
      append_unit_view(text, v);
    }
    units.begin.push_back(static_cast<std::uint32_t>(text.size()));
    units.text = std::make_shared<const std::string>(std::move(text));
  }
  for (auto& s : job.sends) {
    auto p = s.console.lock();
    if (!p) continue;
    auto run = std::make_shared<const FrameRun>(ConsoleFeed::run(units, s.index, s.batch, job.batch_frame_bytes));
    if (run->size() != 0) p->deliver_run(std::move(run));
  }
  metrics.stage_send.observe_us(mono_us() - t0);
}

void Server::Impl::arm_tick() {
  tick_timer.expires_after(opt.tick);
  tick_timer.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping) return;
    engine.tick(wall_now(), out);
    apply();
    arm_tick();
  });
}

void Server::Impl::arm_flush() {
  flush_timer.expires_after(opt.console_flush);
  flush_timer.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping) return;
    flush_consoles();
    arm_flush();
  });
}

}  // namespace dispatch::net
