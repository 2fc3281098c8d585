// Parsing frames: one position, a gateway batch of 500, and one with a status last; and
// rendering a console flush of 10,000 units into one buffer, as the consoles thread does. Run: build/net/bench_protocol
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <string_view>

#include "net/protocol.hpp"

using namespace dispatch::net;

static std::string one(int i) {
  return R"({"type":"position","unit":"M)" + std::to_string(i) +
         R"(","lat":29.563012,"lon":106.551034,"ts":1764300000000,"speed_kmh":31.5,"heading":270})";
}

// A gateway's batch: `n` positions, then `last` (another message) when given.
static std::string batch(int n, std::string_view last = {}) {
  std::string text = "[";
  for (int i = 0; i < n; ++i) {
    if (i) text += ',';
    text += one(i);
  }
  if (!last.empty()) text.append(",").append(last);
  text += ']';
  return text;
}

// Parses `text` over and over into one ParsedFrame (cleared, so its vectors keep their room).
static void parse_again(benchmark::State& state, const std::string& text, const char* role, int messages) {
  ParsedFrame f;
  for (auto _ : state) {
    f.clear();
    parse_frame(text, role, f);
    benchmark::DoNotOptimize(f.positions.data());
  }
  state.SetItemsProcessed(state.iterations() * messages);
}

static void BM_ParsePosition(benchmark::State& state) { parse_again(state, one(17), "unit", 1); }

static void BM_ParseBatch500(benchmark::State& state) { parse_again(state, batch(500), "gateway", 500); }

// As a session parses: a new ParsedFrame for every frame (it is handed to the engine thread).
static void BM_ParseBatch500FreshFrame(benchmark::State& state) {
  const std::string text = batch(500);
  for (auto _ : state) {
    auto f = std::make_shared<ParsedFrame>();
    parse_frame(text, "gateway", *f);
    benchmark::DoNotOptimize(f->positions.data());
  }
  state.SetItemsProcessed(state.iterations() * 500);
}

// The same batch with a status message last: the fast path reads 499 positions, gives up
// at the status, and the general path reads the frame again (the worst case of the two).
static void BM_ParseBatch500Mixed(benchmark::State& state) {
  parse_again(state, batch(499, R"({"type":"status","unit":"M1","status":"available"})"), "gateway", 500);
}

static void BM_RenderFlush10k(benchmark::State& state) {
  std::vector<std::string> ids, callsigns;
  for (int i = 0; i < 10000; ++i) {
    ids.push_back("M" + std::to_string(100000 + i));
    callsigns.push_back("渝警保" + std::to_string(i));
  }
  std::string out;
  for (auto _ : state) {
    out.clear();
    for (int i = 0; i < 10000; ++i) {
      UnitView u;
      u.slot = static_cast<std::uint32_t>(i);
      u.id = ids[i];
      u.callsign = callsigns[i];
      u.status = "available";
      u.has_pos = true;
      u.lat = 29.5630121 + i * 1e-5;
      u.lon = 106.5510345 - i * 1e-5;
      u.ts = 1764300000000 + i;
      u.speed_kmh = 31.5f;
      u.heading = 270;
      out += i ? ',' : '[';
      append_unit_view(out, u);
    }
    out += ']';
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * 10000);
  state.counters["bytes_per_unit"] = static_cast<double>(out.size()) / 10000;
}

BENCHMARK(BM_ParsePosition);
BENCHMARK(BM_ParseBatch500);
BENCHMARK(BM_ParseBatch500FreshFrame);
BENCHMARK(BM_ParseBatch500Mixed);
BENCHMARK(BM_RenderFlush10k);
BENCHMARK_MAIN();
