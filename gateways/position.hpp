// Positions on their way to the server: the wire form and the bounded backlog.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dispatch::gateways {

// Contract section 5.1, message type "position".
struct Position {
  std::string unit;
  double lat = 0;
  double lon = 0;
  std::int64_t ts = 0;  // Unix epoch ms
  std::optional<double> speed_kmh;
  std::optional<double> heading;
  friend bool operator==(const Position&, const Position&) = default;
};

std::string to_json(const Position& p);
// A JSON array of position messages: one WebSocket frame.
std::string to_json_batch(std::span<const Position> batch);

// Positions waiting for the server. Bounded: when full the oldest goes first, since
// a newer fix of the same fleet is worth more, and every drop is counted.
class Backlog {
 public:
  explicit Backlog(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  void push(Position p);
  // Up to max_count positions, oldest first, whose JSON batch stays under max_bytes.
  std::vector<Position> take(std::size_t max_count, std::size_t max_bytes);
  // Positions sent but not confirmed go back in front, in their order; if that
  // overflows, the oldest of all are dropped.
  void requeue_front(std::vector<Position> batch);

  bool empty() const { return items_.empty(); }
  std::size_t size() const { return items_.size(); }
  std::size_t capacity() const { return capacity_; }
  std::uint64_t dropped() const { return dropped_; }

 private:
  std::size_t capacity_;
  std::deque<Position> items_;
  std::uint64_t dropped_ = 0;
};

}  // namespace dispatch::gateways
