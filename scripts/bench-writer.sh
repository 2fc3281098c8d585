#!/usr/bin/env bash
# The store's writer under load (issue 13): one run of dispatchd with a 10k-unit fleet (UNITS)
# at 1 Hz, a console, and REPORTS_PER_S reports a second from dispatch-sim on the same cores;
# over 8 s in the middle of the run it samples what dispatchd wrote (/proc/PID/io), its
# commits (/metrics) and the writer thread's CPU, and prints them with the run's latency
# percentiles (client and server stages) and the WAL's size at the end.
#   scripts/bench-writer.sh 1000                       reports/s
#   DISPATCHD=/path/to/other/dispatchd scripts/bench-writer.sh 100   (an A/B against a build)
#   scripts/bench-writer.sh 1000 --commit-delay-us 300                extra dispatchd flags
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-release}
[ -f "$B/build.ninja" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISPATCH_TESTS=OFF >/dev/null
ninja -C "$B" -j2 dispatchd dispatch-sim >/dev/null
RPS=${1:-1000}; shift || true
W=$(mktemp -d /tmp/dispatch-writer-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
"$B/sim/dispatch-sim" make-fleet --units "${UNITS:-10000}" --seed 3 --out "$W/fleet.json" --tokens-out "$W/tokens.json" 2>/dev/null
"${DISPATCHD:-$B/net/dispatchd}" --listen 127.0.0.1:0 --db "$W/d.db" --tokens "$W/tokens.json" --fleet "$W/fleet.json" \
  --rate 100000 --gateway-rate 10000000 --max-open-per-token 0 "$@" > "$W/out" 2> "$W/err" &
P=$!
for _ in $(seq 200); do grep -qs '^listening on' "$W/out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$W/out")
[ -n "$addr" ] || { cat "$W/err" >&2; exit 1; }
"$B/sim/dispatch-sim" run --url "ws://$addr" --tokens "$W/tokens.json" --fleet "$W/fleet.json" --duration 14 \
  --rate 1 --reports-per-s "$RPS" --gateways "${GATEWAYS:-4}" --batch 500 --consoles 1 --json "$W/s.json" >/dev/null 2>&1 &
S=$!
sleep 4
writer_ticks() { for t in /proc/$P/task/*; do if [ "$(cat "$t/comm")" = writer ]; then awk '{print $14+$15}' "$t/stat"; fi; done; }
commits() { python3 -c "import sys,urllib.request
for l in urllib.request.urlopen('http://$addr/metrics').read().decode().splitlines():
    if l.startswith('dispatch_store_commits_total '): print(int(float(l.split()[1])))"; }
b0=$(awk '/^write_bytes/{print $2}' /proc/$P/io); w0=$(writer_ticks); c0=$(commits)
sleep 8
b1=$(awk '/^write_bytes/{print $2}' /proc/$P/io); w1=$(writer_ticks); c1=$(commits)
wait "$S" || true
wal=$(stat -c %s "$W/d.db-wal" 2>/dev/null || echo 0)
kill -TERM "$P"; wait "$P" || true
python3 - "$W/s.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
g = lambda k: s.get(k, 0.0)
print(f"client asg p50 {g('assign_p50_ms'):.2f} p99 {g('assign_p99_ms'):.2f} ms; server report->assign p99 "
      f"{g('server_assign_p99_ms'):.2f}, engine wait p99 {g('stage_engine_wait_p99_ms'):.2f}, commit wait p99 "
      f"{g('stage_commit_wait_p99_ms'):.2f}, store commit p99 {g('store_commit_p99_ms'):.2f} ms; "
      f"mismatches {s['mismatches']}, errors {s['errors']}")
PY
tck=$(getconf CLK_TCK)
echo "written $(( (b1 - b0) / 8 / 1000000 )) MB/s, commits $(( (c1 - c0) / 8 ))/s, writer thread $(( (w1 - w0) * 100 / 8 / tck ))% of a core, WAL $(( wal / 1000000 )) MB at the end"
