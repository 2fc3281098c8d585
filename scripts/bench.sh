#!/usr/bin/env bash
# The load benchmark: builds dispatchd and dispatch-sim in Release (build-release/),
# starts dispatchd on loopback with durable commits (synchronous=FULL), drives it with
# dispatch-sim at 1k, 10k and 100k units with a console open, and prints a table (and the
# server's stage quantiles for each line, to attribute the tail). Then position intake
# against Redis GEOADD pipelined, in the same run, and the micro-benchmarks. Figures go to
# docs/performance.md by hand.
#   scripts/bench.sh                       all of it (about 6 minutes after the build)
#   SECONDS_PER_RUN=30 scripts/bench.sh
#   PARTS="intake" scripts/bench.sh        only some of: load intake micro
#   PARTS=load LINES="2 3" scripts/bench.sh  only those lines of the load table
#   DISPATCHD_FLAGS="--sync-normal" ...     extra flags for dispatchd in the load lines
#   SIM_NICE=19 ...                         the load generator at that nice level
#   SIM_RT=0 ...                            the generator's timing threads at normal priority (default:
#                                           SCHED_FIFO 10, dispatch-sim --realtime-priority; see
#                                           docs/performance.md, "The generator's own wait")
#   DISPATCHD=path/to/dispatchd ...         another build's server (an A/B against this one)
#   DISPATCH_SIM=path/to/dispatch-sim ...   another build's generator in the load lines
#   SIM_FLAGS="--console-batch 0" ...       extra flags for dispatch-sim in the load lines
#   INTAKE_MAX_HZ=300 ...                   the saturating intake line at that rate (default 600)
#   TRACE=1 ...                             also where each line's reports spent their time, from
#                                           both sides' per-report traces (scripts/trace-reports.py)
#   TRACE=1 KEEP=DIR ...                    and keep them: DIR/line-N.server.trace, DIR/line-N.sim.trace
#                                           (for scripts/who-ran.py with a perf sched timehist)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
B=${BUILD_DIR:-build-release}
[ -f "$B/build.ninja" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISPATCH_TESTS=OFF >/dev/null
parts=${PARTS:-load intake micro}
targets="dispatchd dispatch-sim"
[[ " $parts " == *" micro "* ]] && targets="$targets bench_index bench_zones"
# shellcheck disable=SC2086
ninja -C "$B" -j2 $targets >/dev/null
secs=${SECONDS_PER_RUN:-15}
work=$(mktemp -d /tmp/dispatch-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), build $B, $(git rev-parse --short HEAD 2>/dev/null || echo '?'), generator nice ${SIM_NICE:-0}, its timing threads ${SIM_RT:-10}$( [ "${SIM_RT:-10}" = 0 ] && echo ' (normal priority)' || echo ' (SCHED_FIFO)')${DISPATCHD_FLAGS:+, dispatchd $DISPATCHD_FLAGS}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pid=""
start_dispatchd() {  # units [extra dispatchd flags...]; sets pid, addr, rss0
  local units=$1; shift
  "$B/sim/dispatch-sim" make-fleet --units "$units" --seed 3 --out "$work/fleet.json" --tokens-out "$work/tokens.json" 2>/dev/null
  rm -f "$work"/d.db* "$work/out"
  # --rate, --gateway-rate and --max-open-per-token lifted: the benchmark measures the
  # server, not its limits (the simulator's remote claims to insurers without a token stay
  # open, so one reporter token would reach 2000 open incidents within seconds at 1000/s).
  "${DISPATCHD:-$B/net/dispatchd}" --listen 127.0.0.1:0 --db "$work/d.db" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --rate 100000 --gateway-rate 10000000 --max-open-per-token 0 "$@" > "$work/out" 2> "$work/err" &
  pid=$!
  for _ in $(seq 200); do grep -qs '^listening on' "$work/out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$work/out")
  [ -n "$addr" ] || { cat "$work/err" >&2; exit 1; }
  rss0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
}
stop_dispatchd() {
  kill -TERM "$pid"; wait "$pid" || true
}

# ---- load: reports on their own thread and connection, a console open -------------------
run() {  # units rate reports_per_s gateways batch label [dispatch-sim flags...]
  local units=$1 rate=$2 rps=$3 gws=$4 batch=$5 label=$6
  shift 6
  # LINES="2 3" runs only those lines of the table (1-based), to iterate on one of them.
  line_no=$((line_no + 1))
  [ -z "${LINES:-}" ] || [[ " $LINES " == *" $line_no "* ]] || return 0
  local trace_flags=() sim_trace=()
  if [ -n "${TRACE:-}" ]; then trace_flags=(--trace-reports "$work/server.trace"); sim_trace=(--trace "$work/sim.trace"); fi
  # shellcheck disable=SC2086
  start_dispatchd "$units" ${DISPATCHD_FLAGS:-} "${trace_flags[@]}"
  # SIM_NICE=19: the generator yields the two cores to dispatchd (how much of the tail is
  # the generator's own CPU; the targets are read without it).
  # shellcheck disable=SC2086
  nice -n "${SIM_NICE:-0}" "${DISPATCH_SIM:-$B/sim/dispatch-sim}" run --url "ws://$addr" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --duration "$secs" --rate "$rate" --reports-per-s "$rps" --gateways "$gws" --batch "$batch" --consoles 1 \
    --realtime-priority "${SIM_RT:-10}" --json "$work/s.json" "${sim_trace[@]}" "$@" ${SIM_FLAGS:-} >/dev/null 2>&1
  local rss1; rss1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  stop_dispatchd
  if [ -n "${TRACE:-}" ]; then
    { echo; echo "$label:"; scripts/trace-reports.py "$work/server.trace" "$work/sim.trace" || true; } >> "$work/traces"
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"
      cp "$work/server.trace" "$KEEP/line-$line_no.server.trace"
      cp "$work/sim.trace" "$KEEP/line-$line_no.sim.trace"
    fi
  fi
  python3 - "$work/s.json" "$label" "$rss0" "$rss1" "$work/stages" "${SIM_RT:-10}" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
if s.get('realtime_priority', 0) == 0 and sys.argv[6] != '0':
    print(f"({sys.argv[2]}: the generator's timing threads could not have SCHED_FIFO; they ran at normal priority)")
print(f"| {sys.argv[2]:<28} | {s['units']:>7} | {s['positions_per_s']:>10.0f} | {s['reports_per_s']:>7.0f} | "
      f"{s['accepted_p50_ms']:>6.2f} | {s['assign_p50_ms']:>6.2f} | {s['assign_p99_ms']:>6.2f} | {s['assign_max_ms']:>7.2f} | "
      f"{s['mismatches']:>3} | {s['errors']:>3} | {int(sys.argv[4]) // 1024:>6} |")
g = lambda k: s.get(k, 0.0)
with open(sys.argv[5], "a") as out:
    held = g('positions_held') / max(1, g('positions_held') + g('positions_sent')) * 100
    out.write(f"| {sys.argv[2]:<28} | {g('report_lag_p99_ms'):.2f} | {held:.1f}% | {g('server_assign_p50_ms'):.2f} / {g('server_assign_p99_ms'):.2f} | "
              + " | ".join(f"{g(f'stage_{st}_p50_ms'):.3f} / {g(f'stage_{st}_p99_ms'):.2f}"
                           for st in ("parse", "engine_wait", "engine", "commit_wait", "send"))
              + f" | {g('store_commit_p50_ms'):.2f} / {g('store_commit_p99_ms'):.2f} |\n")
PY
}

if [[ " $parts " == *" load "* ]]; then
  echo
  echo "| run                          |   units |  positions/s | reports/s | acc p50 | asg p50 | asg p99 | asg max | mis | err | RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  : > "$work/stages"; : > "$work/traces"
  line_no=0
  run 1000 1 100 2 500 "1k units, 100 reports/s"
  run 10000 1 100 4 500 "10k units, 100 reports/s"
  run 10000 1 1000 4 500 "10k units, 1000 reports/s"
  run 100000 1 100 8 500 "100k units, 100 reports/s"
  run 100000 4 10 8 500 "100k units at 4 Hz"
  # The fleet as real units report: each at its own phase within the second (10 slices),
  # instead of all 10k in the same millisecond as in line 2.
  run 10000 1 100 4 500 "10k, 100/s, own phases" --slices 10
  echo
  echo "The generator (reports' lag behind their Poisson times, p99 ms; positions it held back because"
  echo "a gateway had 16 MiB unsent) and the server's stages over each run (ms, p50 / p99 from the"
  echo "/metrics buckets, interpolated as histogram_quantile does):"
  echo
  echo "| run | send lag p99 | held | report->assign (server) | parse | engine wait | engine | commit wait | send | store commit |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  cat "$work/stages"
  if [ -n "${TRACE:-}" ]; then echo; echo "Per-report traces (TRACE=1):"; cat "$work/traces"; fi
fi

# ---- intake: dispatchd's positions/s against Redis GEOADD pipelined, same run ----------
redis_geoadd() {  # prints GEOADD requests per second
  local port; port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
    --logfile "$work/redis.log" >/dev/null 2>&1 &
  local rpid=$!
  for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  # No built-in GEOADD test: a custom command, members varying over 10k ids.
  redis-benchmark -h 127.0.0.1 -p "$port" -P 16 -c 50 -n 2000000 -r 10000 -q \
    GEOADD fleet 106.55 29.56 __rand_int__ 2>/dev/null | tr '\r' '\n' |
    sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
  kill "$rpid"; wait "$rpid" 2>/dev/null || true
}

intake() {  # units rate gateways label; appends a line to $work/intake
  local units=$1 rate=$2 gws=$3 label=$4
  start_dispatchd "$units"
  local window=$((secs - 5)); [ "$window" -ge 3 ] || window=3
  "$B/sim/dispatch-sim" run --url "ws://$addr" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --duration "$((window + 5))" --rate "$rate" --reports-per-s 0 --gateways "$gws" --batch 500 --consoles 0 --flood \
    --json "$work/i.json" >/dev/null 2>"$work/i.err" &
  local sim=$!
  # The server's own counter over a window in the middle of the run: not the client's view.
  python3 - "$addr" "$window" > "$work/rate" <<'PY'
import sys, time, urllib.request
def taken():
    for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode().splitlines():
        if line.startswith("dispatch_positions_accepted_total "):
            return float(line.split()[1])
    return 0.0
time.sleep(3)
c0, t0 = taken(), time.monotonic()
time.sleep(float(sys.argv[2]))
c1, t1 = taken(), time.monotonic()
print(f"{(c1 - c0) / (t1 - t0):.0f}")
PY
  wait "$sim" || true
  stop_dispatchd
  python3 - "$work/i.json" "$label" "$(cat "$work/rate")" >> "$work/intake" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
offered = s["positions_sent"] + s["positions_held"]
print(json.dumps({"label": sys.argv[2], "offered": offered / s["duration_s"], "taken": float(sys.argv[3]),
                  "held": s["positions_held"] / max(1, offered),
                  "ignored": s["positions_out_of_order"] + s["positions_gps_jump"], "errors": s["errors"]}))
PY
}

if [[ " $parts " == *" intake "* ]]; then
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing: redis-server redis-tools" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  fi
  # Redis before and after the dispatchd runs; the ratio is against their mean.
  : > "$work/intake"
  redis_a=$(redis_geoadd)
  # dispatch-sim --flood: frames rendered once (ts and a jitter patched), so the generator
  # costs a copy per position. "held": what it could not hand over because the server had
  # not read what was queued (a gateway with 16 MiB queued skips a round), i.e. offered
  # beyond what the server took.
  intake 10000 100 4 "10k units offered at 100 Hz"
  # Offered beyond what the server takes (it took the whole of 300 Hz once position frames
  # skipped the JSON DOM; INTAKE_MAX_HZ=300 compares with figures from before).
  intake 10000 "${INTAKE_MAX_HZ:-600}" 4 "10k units offered at ${INTAKE_MAX_HZ:-600} Hz (saturating)"
  redis_b=$(redis_geoadd)
  echo
  echo "Redis GEOADD (redis-benchmark -P 16 -c 50 -n 2000000 -r 10000, custom command): ${redis_a}/s before, ${redis_b}/s after"
  echo
  echo "| intake (--flood, no reports, no console, 4 gateways, 500 per frame) | offered/s | taken/s (/metrics) | held | ignored | err | vs Redis (mean) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  python3 - "$work/intake" "$redis_a" "$redis_b" <<'PY'
import json, sys
redis = (float(sys.argv[2]) + float(sys.argv[3])) / 2
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['label']:<40} | {r['offered']:>10.0f} | {r['taken']:>10.0f} | {r['held'] * 100:>5.1f}% | "
          f"{r['ignored']:>4.0f} | {r['errors']:>3} | {r['taken'] / redis:>5.2f}x |")
PY
fi

# ---- micro-benchmarks ---------------------------------------------------------------------
if [[ " $parts " == *" micro "* ]]; then
  echo
  "$B/sim/bench/bench_index" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_'
  "$B/sim/bench/bench_zones" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_'
fi
