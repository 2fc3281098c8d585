// The lease of wire contract section 9: which of several dispatchd on one PostgreSQL
// database is active. One row (id 1) holds the epoch, the holder and when the lease
// expires, on the database's clock. A standby takes the lease once it has expired and
// bumps the epoch; the active one renews it; every commit of the active one checks the
// epoch in its own transaction (Store::set_epoch), so a former active fails its next
// commit. Its own connection, used by one thread (net/lease.cpp's loop).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace dispatch::data {

class Lease {
 public:
  // Does not connect yet (nor throw): the first call does.
  Lease(std::string url, std::string holder, std::chrono::milliseconds length);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  enum class Outcome {
    ok,           // taken or renewed
    held,         // someone else holds it (take) / it is no longer ours (renew)
    unreachable,  // the database did not answer: nothing is known
  };
  // Takes the lease if it has expired; `epoch` gets the new epoch.
  Outcome take(std::int64_t& epoch);
  // Extends the lease held at `epoch` by its length from now (the database's now).
  Outcome renew(std::int64_t epoch);
  // True when the lease has expired (nobody holds it); false when held or unknown.
  bool lapsed();
  // Ends the lease held at `epoch` at once (a clean stop), so a standby need not wait.
  void release(std::int64_t epoch);
  // The last error, for log lines.
  const std::string& error() const { return error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_;
};

}  // namespace dispatch::data
