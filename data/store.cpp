// The store's core, whichever database is behind it (data/backend.hpp): the bounded
// queue, the writer thread with group commit, retries and health, fencing, pruning, and
// the reads' logic. The SQL itself is in rows.cpp; the backends run it.
#include "data/store.hpp"

#include <pthread.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <type_traits>
#include <utility>

#include "data/backend.hpp"
#include "data/schema.hpp"
#include "data/stations_store.hpp"

namespace dispatch::data {

namespace rec = engine::rec;
using Clock = std::chrono::steady_clock;
using engine::Millis;
using rows::R;
using rows::W;

namespace {

// How often the writer deletes old track points and unit events, and how many per
// transaction: the writer runs one chunk between two batches, so that a large backlog
// never holds the queue up for long.
constexpr auto prune_every = std::chrono::minutes(5);
constexpr std::int64_t prune_chunk = 10000;

// Optional writes (downsampled track points) go into a commit at most this many at a time
// while somebody waits for a write queued with them: a report's commit never carries a few
// hundred track points (2-4 ms instead of 0.3). With nobody waiting they go up to
// optional_alone a commit, so that a burst (every unit's first point) drains at the
// rate of large transactions, and a report that comes meanwhile waits for at most one of
// them (about 1-2 ms).
constexpr std::size_t optional_per_batch = 32;
constexpr std::size_t optional_alone = 256;

void log_line(const std::string& line) { std::fprintf(stderr, "dispatch store: %s\n", line.c_str()); }

// One submit(): its writes go into one transaction together, its done runs after it.
struct Job {
  std::vector<engine::Write> writes;
  // Or a slice of an optional submission's writes, shared by its slices: one large
  // vector (freed with its last slice) rather than a copy in many small ones, which
  // would stay on the heap after a burst.
  std::shared_ptr<const std::vector<engine::Write>> shared;
  std::size_t from = 0, to = 0;
  std::span<const engine::Write> items() const {
    if (shared) return {shared->data() + from, to - from};
    return writes;
  }
  std::function<void()> done;
  Clock::time_point queued;
  bool insert_only = false;  // add_units: a unit already stored stays as it is
  bool barrier = false;      // flush, add_units: committed after everything queued before it
  std::uint64_t seq = 0;     // queue order (a barrier's optional predecessors have lower ones)
};

std::int64_t micros_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

Millis wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One round of pruning: tracks, then unit events, then sightings, a chunk at a time.
struct PruneRound {
  Millis track_cutoff = 0;
  Millis event_cutoff = 0;
  Millis sighting_cutoff = 0;
  bool tracks_left = false;
  bool events_left = false;
  bool sightings_left = false;
  bool active() const { return tracks_left || events_left || sightings_left; }
};

}  // namespace

struct Store::Impl {
  explicit Impl(StoreOptions o) : options(std::move(o)) {
    if (options.batch_max == 0) options.batch_max = 1;
    db = is_postgres_url(options.path) ? open_postgres(options) : open_sqlite(options, deadline);
    // The prune "at start" runs here, before anything can be submitted: the writer's own
    // rounds come every prune_every after it, so a point submitted now is never pruned
    // by surprise before then. A shared database is pruned only by the active server.
    if (!db->shared()) prune_all(wall_ms());
    writer = std::thread([this] {
      pthread_setname_np(pthread_self(), "writer");
      run();
    });
  }

  ~Impl() { close(); }

  // ---- shutdown ----

  bool close() {
    std::lock_guard cl(close_mu);
    if (closed) return !gave_up.load();
    if (writer.joinable() && std::this_thread::get_id() == writer.get_id()) {
      log_line("close called on the writer thread (from a completion); not closing");
      return false;
    }
    {
      std::lock_guard lk(mu);
      stop = true;
      stop_deadline = Clock::now() + options.close_deadline;
      deadline.deadline_ns.store(stop_deadline.time_since_epoch().count());
      deadline.stopping.store(true);
    }
    cv.notify_all();
    if (writer.joinable()) writer.join();
    {
      // Readers wait for the read in progress.
      std::lock_guard rl(read_mu);
      db->close_reader();
      reads_closed = true;
    }
    db->close_writer();
    closed = true;
    return !gave_up.load();
  }

  // ---- the writer thread ----

  void run_controls(std::unique_lock<std::mutex>& lk) {
    while (!controls.empty()) {
      auto f = std::move(controls.front());
      controls.pop_front();
      lk.unlock();
      f();
      lk.lock();
    }
  }

  bool may_prune() const { return !db->shared() || epoch.load() != 0; }

  void run() {
    auto last_prune = Clock::now();  // the constructor pruned
    PruneRound prune;
    std::vector<Job> batch;
    std::unique_lock lk(mu);
    for (;;) {
      run_controls(lk);
      if ((stop && !queues_empty() && Clock::now() >= stop_deadline) || (fenced.load() && !queues_empty())) {
        // Healthy but slow (a long queue): what the deadline did not reach is given up.
        // Fenced: nothing more is ever committed.
        lk.unlock();
        abandon(batch);
        lk.lock();
        continue;
      }
      if (!stop && may_prune() && !fenced.load()) {
        // Periodic pruning, one chunk between two batches.
        if (!prune.active() && Clock::now() - last_prune >= prune_every) prune = start_prune(wall_ms());
        if (prune.active()) {
          lk.unlock();
          prune_step(prune);
          lk.lock();
          if (!prune.active()) last_prune = Clock::now();
          run_controls(lk);
        }
      }
      if (queues_empty()) {
        if (stop) break;
        if (prune.active()) continue;
        cv.wait_until(lk, std::min(Clock::now() + std::chrono::seconds(1), last_prune + prune_every),
                      [&] { return stop || !queues_empty() || !controls.empty(); });
        continue;
      }
      // Group commit: wait for batch_max writes or batch_delay after the first one.
      if (options.batch_delay.count() > 0 && !stop && queued_writes < options.batch_max) {
        const auto until = (queue.empty() ? optional_queue.front() : queue.front()).queued + options.batch_delay;
        cv.wait_until(lk, until, [&] { return stop || queued_writes >= options.batch_max || !controls.empty(); });
      }
      const std::size_t n = take_batch(batch);
      lk.unlock();
      if (commit_with_retry(batch, n)) {
        {
          std::lock_guard ql(mu);
          queued_writes -= n;
        }
        for (auto& j : batch)
          if (j.done) j.done();
        batch.clear();
      } else {
        abandon(batch);
      }
      lk.lock();
    }
    writer_exited = true;
  }

  bool queues_empty() const { return queue.empty() && optional_queue.empty(); }

  // Moves the next batch out of the queues (under mu); returns its number of writes. First
  // the jobs somebody waits for, in their order, up to batch_max writes (a barrier only
  // once every optional job queued before it has gone); then optional ones, oldest first,
  // optional_per_batch of them while somebody waits (optional_alone when nobody does).
  std::size_t take_batch(std::vector<Job>& batch) {
    std::size_t n = 0, optional_n = 0;
    const std::size_t optional_max = waited_jobs > 0 ? optional_per_batch : optional_alone;
    while (!queue.empty()) {
      Job& j = queue.front();
      const std::size_t k = j.items().size();
      if (!batch.empty() && n + k > options.batch_max) break;
      if (j.barrier && !optional_queue.empty() && optional_queue.front().seq < j.seq) break;
      if (!j.barrier) --waited_jobs;
      n += k;
      batch.push_back(std::move(j));
      queue.pop_front();
    }
    while (!optional_queue.empty()) {
      Job& j = optional_queue.front();
      const std::size_t k = j.items().size();
      if (!batch.empty() && (optional_n + k > optional_max || n + k > options.batch_max)) break;
      optional_n += k;
      n += k;
      batch.push_back(std::move(j));
      optional_queue.pop_front();
    }
    return n;
  }

  // At close past the deadline, or once fenced: gives up `batch` and everything still
  // queued. Their completions are never called; whoever waits in flush() wakes up (its
  // promise is broken). Called without mu.
  void abandon(std::vector<Job>& batch) {
    std::deque<Job> rest;
    std::size_t lost = 0;
    {
      std::lock_guard lk(mu);
      rest.swap(queue);
      for (auto& j : optional_queue) rest.push_back(std::move(j));
      optional_queue.clear();
      waited_jobs = 0;
      lost = queued_writes;  // the batch's writes too: they leave the count when committed
      queued_writes = 0;
    }
    std::size_t jobs = batch.size() + rest.size();
    batch.clear();
    rest.clear();
    if (jobs == 0) return;
    abandoned.fetch_add(lost, std::memory_order_relaxed);
    if (lost > 0) gave_up = true;
    if (fenced.load())
      log_line(fmt::format("fenced: gave up {} unconfirmed writes ({} submissions); nobody was told of them", lost,
                           jobs));
    else
      log_line(fmt::format("closing: gave up {} unconfirmed writes ({} submissions) after {} ms; "
                           "nobody was told of them",
                           lost, jobs, options.close_deadline.count()));
  }

  static std::vector<Op> ops_of(const std::vector<Job>& batch, std::size_t n) {
    std::vector<Op> ops;
    ops.reserve(n);
    for (const auto& job : batch)
      for (const auto& w : job.items())
        rows::bind_write(w, job.insert_only, [&](W what, const auto&... a) {
          ops.push_back(Op{what, params(a...)});
          return 0;
        });
    return ops;
  }

  void set_fenced(const std::string& error) {
    if (fenced.exchange(true)) return;
    healthy = false;
    log_line("fenced, this server is no longer the active one: " + error);
    std::function<void()> h;
    {
      std::lock_guard hl(hook_mu);
      h = fenced_hook;
    }
    if (h) h();
  }

  // True once the batch committed; false when the store is closing, its deadline passed
  // and the batch was not committed, or when fenced (the caller gives it up).
  bool commit_with_retry(std::vector<Job>& batch, std::size_t n) {
    const auto ops = ops_of(batch, n);
    for (;;) {
      if (fenced.load()) return false;
      const auto t0 = Clock::now();
      std::string error;
      const auto result = db->commit(ops, error);
      if (result == CommitResult::ok) {
        commits.fetch_add(1, std::memory_order_relaxed);
        writes.fetch_add(n, std::memory_order_relaxed);
        if (!healthy.exchange(true)) log_line("writing again: the store works");
        std::function<void(std::int64_t, std::size_t)> h;
        {
          std::lock_guard hl(hook_mu);
          h = hook;
        }
        if (h) h(micros_since(t0), n);
        return true;
      }
      failures.fetch_add(1, std::memory_order_relaxed);
      if (result == CommitResult::fenced) {
        set_fenced(error);
        return false;
      }
      if (healthy.exchange(false)) log_line("commit failed, reports are refused until it works again: " + error);
      // Wait until the next try, but let controls (tests lifting a limit) through, and
      // once closing, never past its deadline.
      const auto retry_at = Clock::now() + options.retry_after;
      std::unique_lock lk(mu);
      for (;;) {
        run_controls(lk);
        const auto now = Clock::now();
        if (stop && now >= stop_deadline) return false;
        const auto wake = stop ? std::min(retry_at, stop_deadline) : retry_at;
        if (now >= wake) break;
        const bool was_stopping = stop;
        cv.wait_until(lk, wake, [&] { return !controls.empty() || stop != was_stopping; });
      }
    }
  }

  // ---- pruning (on the writer thread, or in the constructor before it starts) ----

  PruneRound start_prune(Millis now) const {
    PruneRound r;
    r.track_cutoff = now - options.track_retention_ms;
    r.event_cutoff = now - options.unit_event_retention_ms;
    r.sighting_cutoff = now - options.sighting_retention_ms;
    r.tracks_left = r.events_left = r.sightings_left = true;
    return r;
  }

  // Deletes one chunk (tracks first, then unit events); returns the rows deleted. A
  // failure (disk trouble) ends the round: the next one tries again.
  std::int64_t prune_step(PruneRound& r) {
    const bool tracks = r.tracks_left;
    const bool sightings = !r.tracks_left && !r.events_left;  // rural stations' sightings last
    std::string error;
    std::int64_t n = 0;
    const std::vector<Op> op{
        sightings ? Op{W::prune_sightings, params(r.sighting_cutoff, prune_chunk)}
                  : Op{tracks ? W::prune_tracks : W::prune_unit_events,
                       params(tracks ? r.track_cutoff : r.event_cutoff, prune_chunk)}};
    const auto result = db->commit(op, error, &n);
    if (result == CommitResult::fenced) set_fenced(error);
    if (result != CommitResult::ok) {
      r.tracks_left = r.events_left = r.sightings_left = false;
      return 0;
    }
    if (n < prune_chunk) (sightings ? r.sightings_left : tracks ? r.tracks_left : r.events_left) = false;
    return n;
  }

  std::int64_t prune_all(Millis now) {
    auto r = start_prune(now);
    std::int64_t total = 0;
    while (r.active()) total += prune_step(r);
    return total;
  }

  // Runs f on the writer thread and waits for its result; `fallback` once the writer
  // has stopped.
  template <class F, class Res = std::invoke_result_t<F&>>
  Res on_writer(F f, std::type_identity_t<Res> fallback) {
    auto p = std::make_shared<std::promise<Res>>();
    auto fut = p->get_future();
    {
      std::lock_guard lk(mu);
      if (writer_exited) return fallback;
      controls.push_back([p, f]() mutable { p->set_value(f()); });
    }
    cv.notify_all();
    return fut.get();
  }

  // Queues a job; false (and the job is not queued) once closing or fenced, except for
  // an empty one (a flush marker), which is refused only once the writer has stopped.
  bool enqueue(Job job) {
    job.queued = Clock::now();
    {
      std::lock_guard lk(mu);
      if (writer_exited || ((stop || fenced.load()) && !job.writes.empty())) return false;
      queued_writes += job.writes.size();
      if (!job.barrier) ++waited_jobs;  // a flush waits for the optional ones too
      job.seq = ++job_seq;
      queue.push_back(std::move(job));
    }
    cv.notify_all();
    return true;
  }

  // Waits for everything queued before it, at most `deadline` (nullopt: no limit). True
  // when it all committed; false when it gave up waiting or writes were given up.
  bool enqueue_and_wait(std::vector<engine::Write> w, bool insert_only,
                        std::optional<std::chrono::milliseconds> deadline_ms) {
    if (std::this_thread::get_id() == writer.get_id()) {
      log_line("flush called on the writer thread; not waiting");
      return false;
    }
    auto committed = std::make_shared<std::promise<void>>();
    auto fut = committed->get_future();
    Job job;
    job.writes = std::move(w);
    // The job is the promise's only owner: given up at close, it breaks the promise.
    job.done = [committed = std::move(committed)] { committed->set_value(); };
    job.insert_only = insert_only;
    job.barrier = true;
    const std::size_t n = job.writes.size();
    if (!enqueue(std::move(job))) return job_refused(n);
    if (deadline_ms) {
      if (fut.wait_for(*deadline_ms) != std::future_status::ready) return false;
    } else {
      fut.wait();
    }
    try {
      fut.get();
      return true;
    } catch (const std::future_error&) {
      return false;  // given up at close
    }
  }

  // A job refused because the store is closing, closed or fenced: its writes count as
  // given up.
  bool job_refused(std::size_t writes_refused) {
    if (writes_refused == 0) return !gave_up.load();
    abandoned.fetch_add(writes_refused, std::memory_order_relaxed);
    gave_up = true;
    // Fenced is final and a stale engine keeps ticking: say it once, not at every tick.
    if (fenced.load() && told_fenced.exchange(true)) return false;
    log_line(fmt::format("the store is {}: {} writes refused, nobody is told of them{}",
                         fenced.load() ? "fenced" : "closing", writes_refused,
                         fenced.load() ? " (and so are all later ones)" : ""));
    return false;
  }

  // Reads: one at a time on the read connection, none once closed.
  template <class F, class Res = std::invoke_result_t<F&, Backend&>>
  Res read_locked(F f) {
    std::lock_guard lk(read_mu);
    if (reads_closed) return Res{};
    return f(*db);
  }

  StoreOptions options;
  Deadline deadline;
  std::unique_ptr<Backend> db;
  std::mutex read_mu;
  bool reads_closed = false;

  std::mutex mu;  // guards the queues, queued_writes, waited_jobs, controls, stop and writer_exited
  std::condition_variable cv;
  std::deque<Job> queue;           // jobs somebody waits for, and barriers
  std::deque<Job> optional_queue;  // optional slices
  std::uint64_t job_seq = 0;       // the order jobs were queued in, across both
  std::size_t queued_writes = 0;  // submitted, not yet committed (nor given up)
  std::size_t waited_jobs = 0;    // queued jobs somebody waits for (not optional, not a barrier)
  std::deque<std::function<void()>> controls;
  bool stop = false;
  Clock::time_point stop_deadline;
  bool writer_exited = false;

  std::mutex close_mu;
  bool closed = false;
  std::atomic<bool> gave_up{false};

  std::atomic<bool> healthy{true};
  std::atomic<bool> fenced{false};
  std::atomic<bool> told_fenced{false};
  std::atomic<std::int64_t> epoch{0};
  std::atomic<std::uint64_t> commits{0}, writes{0}, failures{0}, dropped{0}, abandoned{0};
  std::mutex hook_mu;
  std::function<void(std::int64_t, std::size_t)> hook;
  std::function<void()> fenced_hook;

  std::thread writer;
};

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Store::~Store() {
  if (impl_) impl_->close();
}

int Store::schema_version() { return schema::version; }

engine::Snapshot Store::load() {
  flush();
  return impl_->read_locked([](Backend& db) { return reads::load(db); });
}

std::optional<IncidentRecord> Store::incident(const std::string& id) {
  return impl_->read_locked([&](Backend& db) { return reads::incident(db, id); });
}

std::vector<IncidentRecord> Store::incidents(const IncidentQuery& query) {
  return impl_->read_locked([&](Backend& db) { return reads::incidents(db, query); });
}

std::vector<engine::rec::TrackPoint> Store::track(const std::string& unit, engine::Millis since,
                                                  engine::Millis until) {
  return impl_->read_locked([&](Backend& db) { return reads::track(db, unit, since, until); });
}

std::vector<engine::rec::UnitEvent> Store::unit_events(const std::string& unit) {
  return impl_->read_locked([&](Backend& db) { return reads::unit_events(db, unit); });
}

void Store::add_units(const std::vector<engine::rec::Unit>& units) {
  std::vector<engine::Write> w(units.begin(), units.end());
  impl_->enqueue_and_wait(std::move(w), true, std::nullopt);
}

void Store::submit(std::vector<engine::Write> writes, std::function<void()> done) {
  Job job;
  job.writes = std::move(writes);
  job.done = std::move(done);
  const std::size_t n = job.writes.size();
  if (!impl_->enqueue(std::move(job))) impl_->job_refused(n);
}

bool Store::submit_optional(std::vector<engine::Write> writes) {
  if (writes.empty()) return true;
  auto& m = *impl_;
  const std::size_t n = writes.size();
  {
    std::unique_lock lk(m.mu);
    // Optional writes never take the queue over its bound (only submit() can).
    if (m.stop || m.writer_exited || m.fenced.load() || m.queued_writes + n > m.options.max_queued_writes) {
      lk.unlock();
      m.dropped.fetch_add(n, std::memory_order_relaxed);
      return false;
    }
    // In slices of optional_per_batch, each of which can ride along with a commit.
    const auto now = Clock::now();
    auto all = std::make_shared<const std::vector<engine::Write>>(std::move(writes));
    for (std::size_t i = 0; i < n; i += optional_per_batch) {
      Job job;
      job.shared = all;
      job.from = i;
      job.to = std::min(n, i + optional_per_batch);
      job.queued = now;
      job.seq = ++m.job_seq;
      m.optional_queue.push_back(std::move(job));
    }
    m.queued_writes += n;
  }
  m.cv.notify_all();
  return true;
}

bool Store::has_room() const {
  auto& m = *impl_;
  if (!m.healthy.load() || m.fenced.load()) return false;
  std::lock_guard lk(m.mu);
  return !m.stop && m.queued_writes <= m.options.max_queued_writes;
}

bool Store::close() { return impl_->close(); }

void Store::flush() { impl_->enqueue_and_wait({}, false, std::nullopt); }

bool Store::flush_for(std::chrono::milliseconds deadline) { return impl_->enqueue_and_wait({}, false, deadline); }

bool Store::healthy() const { return impl_->healthy.load(); }

StoreStats Store::stats() const {
  StoreStats s;
  s.commits = impl_->commits.load();
  s.writes = impl_->writes.load();
  s.failures = impl_->failures.load();
  s.healthy = impl_->healthy.load();
  s.dropped = impl_->dropped.load();
  s.abandoned = impl_->abandoned.load();
  {
    std::lock_guard lk(impl_->mu);
    s.queued = impl_->queued_writes;
  }
  return s;
}

void Store::on_commit(std::function<void(std::int64_t, std::size_t)> hook) {
  std::lock_guard lk(impl_->hook_mu);
  impl_->hook = std::move(hook);
}

bool Store::shared() const { return impl_->db->shared(); }

void Store::set_epoch(std::int64_t epoch) {
  auto& m = *impl_;
  m.epoch = epoch;
  m.on_writer(
      [&m, epoch] {
        m.db->set_epoch(epoch);
        return true;
      },
      false);
}

bool Store::fenced() const { return impl_->fenced.load(); }

void Store::on_fenced(std::function<void()> hook) {
  std::lock_guard lk(impl_->hook_mu);
  impl_->fenced_hook = std::move(hook);
}

std::vector<HazardRecord> Store::hazards(const HazardQuery& query) {
  return impl_->read_locked([&](Backend& db) { return stations::hazards(db, query); });
}

VehicleHistory Store::vehicle(const VehicleQuery& query) {
  return impl_->read_locked([&](Backend& db) { return stations::vehicle(db, query); });
}

std::size_t Store::prune_tracks(engine::Millis now) {
  return static_cast<std::size_t>(impl_->on_writer([this, now] { return impl_->prune_all(now); }, std::int64_t{0}));
}

std::int64_t Store::set_max_page_count_for_test(std::int64_t pages) {
  return impl_->on_writer([this, pages] { return impl_->db->set_max_page_count_for_test(pages); }, std::int64_t{-1});
}

}  // namespace dispatch::data
