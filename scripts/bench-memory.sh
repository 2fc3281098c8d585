#!/usr/bin/env bash
# RSS per unit of dispatchd (issue 13): the slope of its VmRSS between 10k and 100k units,
# each unit with a position, after 15 s of positions at 1 Hz (and 10 reports/s), with no
# console and with one console taking the whole feed. Builds dispatchd and dispatch-sim in
# Release (BUILD_DIR, default build-release), starts dispatchd as scripts/bench.sh does,
# and prints a table (KiB from /proc/PID/status; the slope in bytes per unit).
#   scripts/bench-memory.sh
#   SECONDS_PER_RUN=30 UNITS="10000 100000" CONSOLES="0 1" scripts/bench-memory.sh
#   DISPATCHD_FLAGS="..." scripts/bench-memory.sh     extra flags for dispatchd
#   DISPATCHD_ENV="MALLOC_ARENA_MAX=2" ...             environment for dispatchd only
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-release}
[ -f "$B/build.ninja" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISPATCH_TESTS=OFF >/dev/null
ninja -C "$B" -j2 dispatchd dispatch-sim >/dev/null
secs=${SECONDS_PER_RUN:-15}
units_list=${UNITS:-10000 100000}
consoles_list=${CONSOLES:-0 1}
work=$(mktemp -d /tmp/dispatch-mem-XXXXXX)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), build $B, ${secs} s per run"

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

start_dispatchd() {  # units [extra dispatchd flags...]; sets pid, addr, rss0
  local units=$1; shift
  "$B/sim/dispatch-sim" make-fleet --units "$units" --seed 3 --out "$work/fleet.json" --tokens-out "$work/tokens.json" 2>/dev/null
  rm -f "$work"/d.db* "$work/out"
  # Limits lifted as in scripts/bench.sh: the run measures the server, not its limits.
  # shellcheck disable=SC2086
  env ${DISPATCHD_ENV:-} "$B/net/dispatchd" --listen 127.0.0.1:0 --db "$work/d.db" --tokens "$work/tokens.json" \
    --fleet "$work/fleet.json" --rate 100000 --gateway-rate 10000000 --max-open-per-token 0 "$@" \
    > "$work/out" 2> "$work/err" &
  pid=$!
  for _ in $(seq 300); do grep -qs '^listening on' "$work/out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$work/out")
  [ -n "$addr" ] || { cat "$work/err" >&2; exit 1; }
  rss0=$(status_kib "$pid" VmRSS)
}

declare -A start end hwm
for c in $consoles_list; do
  for n in $units_list; do
    # shellcheck disable=SC2086
    start_dispatchd "$n" ${DISPATCHD_FLAGS:-}
    "$B/sim/dispatch-sim" run --url "ws://$addr" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
      --duration "$secs" --rate 1 --reports-per-s 10 --gateways 4 --batch 500 --consoles "$c" \
      --json "$work/s.json" >/dev/null 2>"$work/sim.err" || { cat "$work/sim.err" >&2; exit 1; }
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dispatchd ended before the reading:" >&2; tail -n 5 "$work/err" >&2; exit 1
    fi
    start[$c,$n]=$rss0
    end[$c,$n]=$(status_kib "$pid" VmRSS)
    hwm[$c,$n]=$(status_kib "$pid" VmHWM)
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    python3 - "$work/s.json" "$n" "$c" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  {sys.argv[2]} units, {sys.argv[3]} console(s): {s['positions_per_s']:.0f} positions/s, "
      f"{s['reports_per_s']:.0f} reports/s, consoles read {s['console_bytes'] / s['duration_s'] / 1e6:.1f} MB/s, "
      f"mismatches {s['mismatches']}, errors {s['errors']}")
PY
  done
done

lo=${units_list%% *}; hi=${units_list##* }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
slope() { awk -v a="$1" -v b="$2" -v lo="$lo" -v hi="$hi" 'BEGIN { printf "%.0f", (b - a) * 1024 / (hi - lo) }'; }
echo
echo "| dispatchd VmRSS | $(for n in $units_list; do printf '%s units | ' "$n"; done)slope per unit |"
echo "|---|$(for _ in $units_list; do printf -- '---:|'; done)---:|"
for c in $consoles_list; do
  echo "| at start, ${c} console(s) | $(for n in $units_list; do printf '%s MiB | ' "$(mib "${start[$c,$n]}")"; done)$(slope "${start[$c,$lo]}" "${start[$c,$hi]}") B |"
  echo "| after ${secs} s, ${c} console(s) | $(for n in $units_list; do printf '%s MiB | ' "$(mib "${end[$c,$n]}")"; done)$(slope "${end[$c,$lo]}" "${end[$c,$hi]}") B |"
  echo "| peak (VmHWM), ${c} console(s) | $(for n in $units_list; do printf '%s MiB | ' "$(mib "${hwm[$c,$n]}")"; done)$(slope "${hwm[$c,$lo]}" "${hwm[$c,$hi]}") B |"
done
