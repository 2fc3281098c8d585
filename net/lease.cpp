#include "net/lease.hpp"

#include <pthread.h>
#include <fmt/format.h>

#include <cstdlib>
#include <future>

#include "net/server_impl.hpp"

namespace dispatch::net {

using Clock = std::chrono::steady_clock;

LeaseLoop::LeaseLoop(std::string url, std::string holder, std::chrono::milliseconds length, Hooks hooks)
    : lease_(std::move(url), std::move(holder), length), length_(length), hooks_(std::move(hooks)) {}

LeaseLoop::~LeaseLoop() { stop(false); }

void LeaseLoop::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "lease");
    run();
  });
}

void LeaseLoop::stop(bool release) {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (release && state_.load() == State::active) {
    lease_.release(epoch_.load());
    state_ = State::standby;
  }
}

void LeaseLoop::poke() {
  {
    std::lock_guard lk(mu_);
    poked_ = true;
  }
  cv_.notify_all();
}

bool LeaseLoop::serving() const {
  return state_.load() == State::active && Clock::now().time_since_epoch().count() < valid_until_.load() &&
         !(hooks_.fenced && hooks_.fenced());
}

void LeaseLoop::wait(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, d, [this] { return stop_ || poked_; });
  poked_ = false;
}

void LeaseLoop::retire(const std::string& why) {
  state_ = State::retired;
  log_line("lease: " + why + "; this server is a standby from now on and serves nothing");
  if (hooks_.lost) hooks_.lost();
}

void LeaseLoop::run() {
  const auto renew_every = length_ / 3;
  const auto poll = std::clamp(length_ / 6, std::chrono::milliseconds(20), std::chrono::milliseconds(500));
  bool warned = false;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stop_) return;
    }
    const auto t0 = Clock::now();
    switch (state_.load()) {
      case State::standby: {
        std::int64_t epoch = 0;
        const auto r = lease_.take(epoch);
        if (r == data::Lease::Outcome::unreachable && !warned) {
          log_line("lease: the database does not answer: " + lease_.error());
          warned = true;
        }
        if (r != data::Lease::Outcome::ok) {
          wait(poll);
          break;
        }
        warned = false;
        epoch_ = epoch;
        valid_until_ = (t0 + length_).time_since_epoch().count();
        log_line(fmt::format("lease: taken at epoch {}; restoring from the database", epoch));
        if (!hooks_.activate || !hooks_.activate(epoch)) {
          retire("could not restore after taking the lease");
          break;
        }
        state_ = State::active;
        log_line(fmt::format("lease: active at epoch {}, {} ms after taking it", epoch,
                             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()));
        // Renew at once: the restore may have taken a good part of the lease.
        break;
      }
      case State::active: {
        if (hooks_.fenced && hooks_.fenced()) {
          retire("a commit was fenced: another server holds the lease");
          break;
        }
        const auto r = lease_.renew(epoch_.load());
        if (r == data::Lease::Outcome::ok) {
          valid_until_ = (t0 + length_).time_since_epoch().count();
          warned = false;
        } else if (r == data::Lease::Outcome::held) {
          retire(fmt::format("the lease is no longer at epoch {}", epoch_.load()));
          break;
        } else if (!warned) {
          log_line("lease: cannot renew (serving until the lease would lapse): " + lease_.error());
          warned = true;
        }
        wait(renew_every - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0));
        break;
      }
      case State::retired: {
        // Stale state: never active again in this process. Once the lease lapses (nobody
        // else serves), exit so that the supervisor starts a fresh process to take it.
        if (lease_.lapsed()) {
          log_line(fmt::format("lease: lapsed while this former active is fenced; exiting ({}) to start afresh",
                               exit_fenced));
          std::_Exit(exit_fenced);
        }
        wait(poll);
        break;
      }
    }
  }
}

// ---- the server's side

std::unique_ptr<LeaseLoop> make_lease_loop(Server::Impl& m) {
  LeaseLoop::Hooks hooks;
  hooks.activate = [&m](std::int64_t epoch) {
    m.store->set_epoch(epoch);
    if (!m.fleet.empty()) m.store->add_units(m.fleet);
    if (m.store->fenced()) return false;
    auto snap = std::make_shared<engine::Snapshot>(m.store->load());
    auto done = std::make_shared<std::promise<void>>();
    auto f = done->get_future();
    asio::post(m.engine_ioc, [&m, snap, done] {
      m.engine.restore(*snap, wall_now());
      done->set_value();
    });
    return f.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  };
  hooks.lost = [&m] {
    asio::post(m.engine_ioc, [&m] {
      for (auto& [id, w] : m.peers)
        if (auto p = w.lock()) p->drop("standby: this server is no longer the active one");
    });
  };
  hooks.fenced = [&m] { return m.store->fenced(); };
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string holder = m.opt.node_name.empty() ? fmt::format("{}:{}", host, getpid()) : m.opt.node_name;
  auto loop = std::make_unique<LeaseLoop>(m.opt.store.path, holder, m.opt.lease, std::move(hooks));
  m.store->on_fenced([l = loop.get()] { l->poke(); });
  return loop;
}

}  // namespace dispatch::net
