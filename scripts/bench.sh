#!/usr/bin/env bash
# The load benchmark: builds dispatchd and dispatch-sim in Release (build-release/),
# starts dispatchd on loopback with durable commits (synchronous=FULL), drives it with
# dispatch-sim at 1k, 10k and 100k units, and prints a table. Then a position-throughput
# run and the micro-benchmarks. Figures go to docs/performance.md by hand.
#   scripts/bench.sh            all of it (about 5 minutes after the build)
#   SECONDS_PER_RUN=30 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
B=${BUILD_DIR:-build-release}
[ -f "$B/build.ninja" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISPATCH_TESTS=OFF >/dev/null
ninja -C "$B" -j2 dispatchd dispatch-sim bench_index bench_zones >/dev/null
secs=${SECONDS_PER_RUN:-15}
work=$(mktemp -d /tmp/dispatch-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

run() {  # units rate reports_per_s gateways batch label
  local units=$1 rate=$2 rps=$3 gws=$4 batch=$5 label=$6
  "$B/sim/dispatch-sim" make-fleet --units "$units" --seed 3 --out "$work/fleet.json" --tokens-out "$work/tokens.json" 2>/dev/null
  rm -f "$work"/d.db*
  "$B/net/dispatchd" --listen 127.0.0.1:0 --db "$work/d.db" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --rate 100000 > "$work/out" 2> "$work/err" &
  local pid=$!
  for _ in $(seq 200); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
  local addr; addr=$(sed -n 's/^listening on //p' "$work/out")
  local rss0; rss0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  "$B/sim/dispatch-sim" run --url "ws://$addr" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --duration "$secs" --rate "$rate" --reports-per-s "$rps" --gateways "$gws" --batch "$batch" \
    --json "$work/s.json" >/dev/null 2>&1
  local rss1; rss1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$work/s.json" "$label" "$rss0" "$rss1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]:<28} | {s['units']:>7} | {s['positions_per_s']:>10.0f} | {s['reports_per_s']:>7.0f} | "
      f"{s['accepted_p50_ms']:>6.2f} | {s['assign_p50_ms']:>6.2f} | {s['assign_p99_ms']:>6.2f} | {s['assign_max_ms']:>7.2f} | "
      f"{s['mismatches']:>3} | {s['errors']:>3} | {int(sys.argv[4]) // 1024:>6} |")
PY
}

echo "| run                          |   units |  positions/s | reports/s | acc p50 | asg p50 | asg p99 | asg max | mis | err | RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
run 1000 1 100 2 500 "1k units, 100 reports/s"
run 10000 1 1000 4 500 "10k units, 1000 reports/s"
run 100000 1 100 8 500 "100k units, 100 reports/s"
run 100000 4 10 8 500 "100k units at 4 Hz"
echo
"$B/sim/bench/bench_index" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_'
"$B/sim/bench/bench_zones" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_'
