#!/usr/bin/env bash
# report -> assign on PostgreSQL next to SQLite (issue 15), with dispatch-sim as in
# scripts/bench.sh's load part: the same fleet, rates and one console, once per backend.
# PostgreSQL is a throw-away cluster on this machine (Debian's pg_virtualenv), durable
# (fsync on, synchronous_commit on); SQLite is synchronous=FULL. -t: its own cluster
# directory, so that runs beside other pg_virtualenv users do not meet.
#   BUILD_DIR=build-release SECONDS_PER_RUN=15 scripts/bench_pg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}
secs=${SECONDS_PER_RUN:-15}
if [ -z "${PGPORT:-}${PGHOST:-}" ]; then exec pg_virtualenv -t -o fsync=on "$0" "$@"; fi
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
run() {  # backend units rate reports_per_s gateways label
  local backend=$1 units=$2 rate=$3 rps=$4 gws=$5 label=$6 db
  "$B/sim/dispatch-sim" make-fleet --units "$units" --seed 3 --out "$work/fleet.json" --tokens-out "$work/tokens.json" 2>/dev/null
  rm -f "$work"/d.db* "$work/out"
  if [ "$backend" = postgresql ]; then
    psql -Xq -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
    db="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/bench"
  else
    db="$work/d.db"
  fi
  "$B/net/dispatchd" --listen 127.0.0.1:0 --db "$db" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --rate 100000 --gateway-rate 10000000 --max-open-per-token 0 > "$work/out" 2> "$work/err" &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://$(sed -n 's/^listening on //p' "$work/out")/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local addr; addr=$(sed -n 's/^listening on //p' "$work/out")
  "$B/sim/dispatch-sim" run --url "ws://$addr" --tokens "$work/tokens.json" --fleet "$work/fleet.json" \
    --duration "$secs" --rate "$rate" --reports-per-s "$rps" --gateways "$gws" --batch 500 --consoles 1 \
    --json "$work/s.json" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$work/s.json" "$label" "$backend" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
g = lambda k: s.get(k, 0.0)
print(f"| {sys.argv[2]:<26} | {sys.argv[3]:<10} | {g('reports_per_s'):>7.0f} | {g('accepted_p50_ms'):>6.2f} | "
      f"{g('assign_p50_ms'):>6.2f} | {g('assign_p99_ms'):>6.2f} | {g('assign_max_ms'):>7.2f} | "
      f"{g('store_commit_p50_ms'):.2f} / {g('store_commit_p99_ms'):.2f} | {int(g('mismatches'))} | {int(g('errors'))} |")
PY
}
echo "# $(date -u +%FT%RZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), build $B"
echo
echo "| run                        | backend    | reports/s | acc p50 | asg p50 | asg p99 | asg max | commit p50 / p99 | mis | err |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for backend in sqlite postgresql; do run $backend 1000 1 100 2 "1k units, 100 reports/s"; done
for backend in sqlite postgresql; do run $backend 10000 1 1000 4 "10k units, 1000 reports/s"; done
