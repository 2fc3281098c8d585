#!/usr/bin/env bash
# The run command: installs what is missing, builds, and runs dispatchd on its embedded
# default (a demo fleet over Chongqing's districts, demo tokens, a SQLite file under
# var/demo/) with the simulator moving the fleet, and the console at /.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh
if [ -f web/package.json ]; then
  (cd web && { [ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund --silent; })
fi
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
fi
ninja -C "$BUILD_DIR" -j "${JOBS:-2}" dispatchd dispatch-sim

PORT=${PORT:-8080}
mkdir -p var/demo
fleet=config/demo-fleet.json
tokens=config/demo-tokens.json

"$BUILD_DIR/net/dispatchd" --listen "127.0.0.1:$PORT" --db var/demo/dispatch.db \
  --tokens "$tokens" --fleet "$fleet" --web-root "$root/web" \
  --zones "$root/assets/geo/chongqing_districts_gcj02.geojson" \
  --places "$root/assets/places/chongqing-demo.geojson" > var/demo/dispatchd.out 2> var/demo/dispatchd.log &
server=$!
sim=""
cleanup() {
  [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 100); do
  grep -q '^listening on' var/demo/dispatchd.out 2>/dev/null && break
  if ! kill -0 "$server" 2>/dev/null; then cat var/demo/dispatchd.log >&2; exit 1; fi
  sleep 0.1
done
where=$(sed -n 's/^listening on //p' var/demo/dispatchd.out)
"$BUILD_DIR/sim/dispatch-sim" run --url "ws://$where" --tokens "$tokens" --fleet "$fleet" --demo \
  2> var/demo/sim.log &
sim=$!

cat <<MSG
dispatchd is listening on $where
  console:  http://$where/?token=demo-console
  health:   http://$where/healthz      metrics: http://$where/metrics
  units:    ws://$where/ws/unit (token demo-gateway)   reports: ws://$where/ws/report (token demo-reporter)
  logs:     var/demo/dispatchd.log, var/demo/sim.log; database var/demo/dispatch.db
Ctrl-C stops the server and the simulator.
MSG
wait "$server"
