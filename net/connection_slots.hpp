// Connection slots: a global cap and a per-peer cap, and room made for real clients. A
// connection that has not yet shown a valid token (idle sockets, slowloris) holds its slot
// only until someone else needs it: at the cap, the oldest such connection is evicted
// rather than the newcomer refused. Thread-safe (a mutex; taken once per connection, not
// per message). Pure: the closers are callbacks; no Asio here.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace dispatch::net {

class ConnectionSlots : public std::enable_shared_from_this<ConnectionSlots> {
 public:
  struct Limits {
    std::size_t max_total = 4096;
    std::size_t max_per_peer = 512;
  };
  enum class Verdict : std::uint8_t { admitted, refused_total, refused_peer };

  // A held slot; released when the last copy goes.
  class Ticket {
   public:
    Ticket(std::weak_ptr<ConnectionSlots> owner, std::uint64_t id) : owner_(std::move(owner)), id_(id) {}
    ~Ticket() {
      if (auto o = owner_.lock()) o->release(id_);
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // The connection showed a valid token: never evicted for room.
    void authenticated() {
      if (auto o = owner_.lock()) o->mark_authenticated(id_);
    }
    // How to close this connection if it must make room (called without the lock held).
    void on_evict(std::function<void()> closer) {
      if (auto o = owner_.lock()) o->set_closer(id_, std::move(closer));
    }
    std::uint64_t id() const { return id_; }

   private:
    std::weak_ptr<ConnectionSlots> owner_;
    std::uint64_t id_;
  };

  static std::shared_ptr<ConnectionSlots> make(Limits limits) {
    return std::shared_ptr<ConnectionSlots>(new ConnectionSlots(limits));
  }

  // Admits a connection from `peer` (its address). At the total cap, the oldest
  // unauthenticated connection is evicted (its closer called) to make room; only when
  // every slot holds an authenticated connection is the newcomer refused.
  Verdict admit(const std::string& peer, std::shared_ptr<Ticket>& ticket) {
    std::function<void()> evict;
    {
      std::lock_guard lock(mutex_);
      auto& per = per_peer_[peer];
      if (per >= limits_.max_per_peer) {
        if (per == 0) per_peer_.erase(peer);
        return Verdict::refused_peer;
      }
      if (open_.size() >= limits_.max_total) {
        if (unauth_.empty()) {
          if (per == 0) per_peer_.erase(peer);  // no empty entries left behind by refusals
          return Verdict::refused_total;
        }
        const std::uint64_t victim = unauth_.front();
        auto& v = open_.at(victim);
        evict = std::move(v.closer);
        unauth_.erase(v.pos);
        v.in_unauth = false;
        v.evicted = true;
        ++evicted_;
      }
      const std::uint64_t id = ++next_;
      ++per;
      unauth_.push_back(id);
      Entry e{peer, std::prev(unauth_.end()), true, false, {}};
      open_.emplace(id, std::move(e));
      ticket = std::make_shared<Ticket>(weak_from_this(), id);
    }
    if (evict) evict();
    return Verdict::admitted;
  }

  std::size_t open() const {
    std::lock_guard lock(mutex_);
    return open_.size();
  }
  std::size_t unauthenticated() const {
    std::lock_guard lock(mutex_);
    return unauth_.size();
  }
  std::uint64_t evicted() const {
    std::lock_guard lock(mutex_);
    return evicted_;
  }
  const Limits& limits() const { return limits_; }

 private:
  explicit ConnectionSlots(Limits limits) : limits_(limits) {}

  struct Entry {
    std::string peer;
    std::list<std::uint64_t>::iterator pos;
    bool in_unauth = true;
    bool evicted = false;  // an evicted connection still holds its slot until it is gone
    std::function<void()> closer;
  };

  void release(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it == open_.end()) return;
    if (it->second.in_unauth) unauth_.erase(it->second.pos);
    auto pp = per_peer_.find(it->second.peer);
    if (pp != per_peer_.end() && --pp->second == 0) per_peer_.erase(pp);
    open_.erase(it);
  }
  void mark_authenticated(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it == open_.end() || !it->second.in_unauth) return;
    unauth_.erase(it->second.pos);
    it->second.in_unauth = false;
    it->second.closer = nullptr;
  }
  void set_closer(std::uint64_t id, std::function<void()> closer) {
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it != open_.end() && it->second.in_unauth) it->second.closer = std::move(closer);
  }

  Limits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, Entry> open_;
  std::list<std::uint64_t> unauth_;  // oldest first
  std::unordered_map<std::string, std::size_t> per_peer_;
  std::uint64_t next_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace dispatch::net
