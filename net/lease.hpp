// Active and standby (wire contract section 9): the loop that takes, renews and loses the
// lease of a shared (PostgreSQL) store, on its own thread. Without a shared store there
// is no loop and the server is always active.
//
// A standby tries to take the lease every poll (a sixth of its length, at most 500 ms);
// once it has it, it restores the engine from the database (every unit at its last known
// position, open incidents, assignments) and serves. The active one renews every third of
// the length; it serves only while its last renewal is younger than the length (measured
// from before it was sent, on the monotonic clock, which runs on while the process is
// stopped), so it stops sending before any standby may take over. A former active that
// finds the lease taken (a renewal, or a commit fenced by the epoch) serves nothing more:
// it stays a standby answering 503 and, once the lease lapses again, exits with
// exit_fenced so that its supervisor starts it afresh (its engine state is stale).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "data/lease.hpp"

namespace dispatch::net {

// The exit code of a fenced former active when the lease lapses again.
inline constexpr int exit_fenced = 75;

class LeaseLoop {
 public:
  struct Hooks {
    // On the loop's thread once the lease is taken at `epoch`: restore and get ready to
    // serve. False when that failed (the lease is then left to lapse).
    std::function<bool(std::int64_t epoch)> activate;
    // On the loop's thread once this server has lost the lease: drop every session.
    std::function<void()> lost;
    // True once the store was fenced (a commit found the epoch changed).
    std::function<bool()> fenced;
  };
  LeaseLoop(std::string url, std::string holder, std::chrono::milliseconds length, Hooks hooks);
  ~LeaseLoop();
  LeaseLoop(const LeaseLoop&) = delete;
  LeaseLoop& operator=(const LeaseLoop&) = delete;

  void start();
  // Stops the loop; `release`: an active server gives the lease up at once (clean stop,
  // after its store committed everything), so that a standby need not wait for it to lapse.
  void stop(bool release);
  // Wakes the loop (the store was fenced).
  void poke();

  // Thread-safe, cheap: may this server answer and send now?
  bool serving() const;
  enum class State { standby, active, retired };
  State state() const { return state_.load(); }

 private:
  void run();
  void wait(std::chrono::milliseconds d);
  void retire(const std::string& why);

  data::Lease lease_;
  std::chrono::milliseconds length_;
  Hooks hooks_;
  std::atomic<State> state_{State::standby};
  std::atomic<std::int64_t> epoch_{0};
  std::atomic<std::chrono::steady_clock::rep> valid_until_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool poked_ = false;
  std::thread thread_;
};

}  // namespace dispatch::net
