// The fraud signals' room in-process: sightings ingested per second (1,100 stations, a
// pool of 300k plates, time moving so that the 5 h window evicts as it goes), and the cost
// of one incident's signal check (two plates, their sightings and 30 days of history)
// with 1M sightings held. Run: build/engine/bench_signals
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <memory>
#include <random>

#include "engine/signals.hpp"

using namespace dispatch;
using namespace dispatch::engine;

namespace {

constexpr Millis t0 = 1'764'300'000'000;
constexpr std::size_t stations = 1100, plate_pool = 300'000;

std::string plate(std::size_t i) {
  std::string s = "渝A";
  s += std::to_string(100000 + i);
  return s;
}
std::string station(std::size_t i) {
  std::string s = "ST-";
  s += std::to_string(i);
  return s;
}

struct Feed {
  std::vector<std::string> plates, station_ids;
  std::vector<geo::LatLon> station_pos;
  std::mt19937_64 rng{1};
  Feed() {
    for (std::size_t i = 0; i < plate_pool; ++i) plates.push_back(plate(i));
    std::uniform_real_distribution<double> lat(28.2, 32.2), lon(105.3, 110.1);
    for (std::size_t i = 0; i < stations; ++i) {
      station_ids.push_back(station(i));
      station_pos.push_back({lat(rng), lon(rng)});
    }
  }
};

Feed& feed() {
  static Feed f;
  return f;
}

// 1M sightings spread over the last 5 h, then 30 days of incidents (3,000 a day).
std::unique_ptr<SignalBook> filled(std::size_t n, Millis now) {
  auto& f = feed();
  auto book = std::make_unique<SignalBook>();
  std::mt19937_64 rng(2);
  const Millis span = book->config().sighting_window_ms - 60'000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t s = rng() % stations;
    const Millis ts = now - span + static_cast<Millis>(i * static_cast<std::size_t>(span) / n);
    book->add_sighting(f.station_ids[s], f.plates[rng() % plate_pool], ts, f.station_pos[s], now);
  }
  for (std::size_t i = 0; i < 90'000; ++i) {
    const Millis ts = now - 30LL * 24 * 3600 * 1000 + static_cast<Millis>(i) * 28'800;
    std::vector<std::string> ps{f.plates[rng() % plate_pool], f.plates[rng() % plate_pool]};
    book->add_incident("I-" + std::to_string(i), ts, ps, now);
  }
  return book;
}

void BM_IngestSightings(benchmark::State& state) {
  auto& f = feed();
  SignalBook book;
  std::mt19937_64 rng(3);
  Millis now = t0;
  std::size_t n = 0;
  for (auto _ : state) {
    const std::size_t s = rng() % stations;
    // 20,000 sightings a second of station time: the window holds 360M... bounded by
    // max_sightings (4M), so this measures the steady state with eviction at its bound.
    now = t0 + static_cast<Millis>(n / 20);
    benchmark::DoNotOptimize(book.add_sighting(f.station_ids[s], f.plates[rng() % plate_pool], now,
                                               f.station_pos[s], now));
    if (++n % 1024 == 0) book.evict(now);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["held"] = static_cast<double>(book.sightings());
}
BENCHMARK(BM_IngestSightings);

// One station per sighting at the realistic rate (1,100 stations, one vehicle a minute
// each): the window holds ~330k, evicting as time moves.
void BM_IngestSightingsRealistic(benchmark::State& state) {
  auto& f = feed();
  SignalBook book;
  std::mt19937_64 rng(4);
  std::size_t n = 0;
  Millis now = t0;
  for (auto _ : state) {
    const std::size_t s = rng() % stations;
    now = t0 + static_cast<Millis>(n) * 60'000 / static_cast<Millis>(stations);
    benchmark::DoNotOptimize(book.add_sighting(f.station_ids[s], f.plates[rng() % plate_pool], now,
                                               f.station_pos[s], now));
    if (++n % 1024 == 0) book.evict(now);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["held"] = static_cast<double>(book.sightings());
}
BENCHMARK(BM_IngestSightingsRealistic);

void BM_CheckWith1M(benchmark::State& state) {
  auto& f = feed();
  const Millis now = t0;
  static std::unique_ptr<SignalBook> book;
  static std::size_t heap = 0;
  if (!book) {
    const auto before = mallinfo2().uordblks;
    book = filled(1'000'000, now);
    heap = mallinfo2().uordblks - before;
  }
  std::mt19937_64 rng(5);
  std::size_t raised = 0;
  for (auto _ : state) {
    std::vector<std::string> ps{f.plates[rng() % plate_pool], f.plates[rng() % plate_pool]};
    const auto sig = book->check("I-NEW", f.station_pos[rng() % stations], now, ps);
    raised += sig.size();
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["held"] = static_cast<double>(book->sightings());
  state.counters["plates"] = static_cast<double>(book->plates());
  state.counters["heap_MiB"] = static_cast<double>(heap) / (1 << 20);
  state.counters["bytes_per_sighting"] = static_cast<double>(heap) / static_cast<double>(book->sightings());
  state.counters["raised_per_check"] = static_cast<double>(raised) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_CheckWith1M);

}  // namespace

BENCHMARK_MAIN();
