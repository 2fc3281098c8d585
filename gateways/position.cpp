#include "gateways/position.hpp"

#include <boost/json.hpp>

namespace dispatch::gateways {

namespace {
boost::json::object as_object(const Position& p) {
  boost::json::object o;
  o["type"] = "position";
  o["unit"] = p.unit;
  o["lat"] = p.lat;
  o["lon"] = p.lon;
  o["ts"] = p.ts;
  if (p.speed_kmh) o["speed_kmh"] = *p.speed_kmh;
  if (p.heading) o["heading"] = *p.heading;
  return o;
}
}  // namespace

std::string to_json(const Position& p) { return boost::json::serialize(as_object(p)); }

std::string to_json_batch(std::span<const Position> batch) {
  std::string out = "[";
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (i) out += ',';
    out += to_json(batch[i]);
  }
  out += ']';
  return out;
}

void Backlog::push(Position p) {
  if (items_.size() >= capacity_) {
    items_.pop_front();
    ++dropped_;
  }
  items_.push_back(std::move(p));
}

std::vector<Position> Backlog::take(std::size_t max_count, std::size_t max_bytes) {
  std::vector<Position> out;
  std::size_t bytes = 2;  // the brackets
  while (!items_.empty() && out.size() < max_count) {
    const std::size_t add = to_json(items_.front()).size() + 1;
    // Always at least one, so that a single position can never block the queue.
    if (!out.empty() && bytes + add > max_bytes) break;
    bytes += add;
    out.push_back(std::move(items_.front()));
    items_.pop_front();
  }
  return out;
}

void Backlog::requeue_front(std::vector<Position> batch) {
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) items_.push_front(std::move(*it));
  while (items_.size() > capacity_) {
    items_.pop_front();
    ++dropped_;
  }
}

}  // namespace dispatch::gateways
