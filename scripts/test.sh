#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ -f web/package.json ]; then
  (cd web && { [ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund --silent; })
fi
# ccache: paths relative to the checkout, so that another clone (CI's) hits the same cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
fi
ninja -C "$BUILD_DIR" -j "${JOBS:-2}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${CTEST_JOBS:-2}" "$@"

# Once more, the server and its end-to-end and session suites under AddressSanitizer and
# UndefinedBehaviorSanitizer (SANITIZE=0 skips this; it is skipped too when ctest was given
# arguments, e.g. -R to run a few tests).
if [ "${SANITIZE:-1}" = 1 ] && [ $# -eq 0 ]; then
  ASAN_DIR=${ASAN_DIR:-build-asan}
  if [ ! -f "$ASAN_DIR/build.ninja" ]; then
    cmake -S . -B "$ASAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISPATCH_SANITIZE=ON \
      -DDISPATCH_BENCHMARKS=OFF >/dev/null
  fi
  SAN_TESTS=(test_sessions test_e2e test_contract test_edge)
  ninja -C "$ASAN_DIR" -j "${JOBS:-2}" dispatchd "${SAN_TESTS[@]}"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  ctest --test-dir "$ASAN_DIR" --output-on-failure -j "${CTEST_JOBS:-2}" \
    -R "^($(IFS='|'; echo "${SAN_TESTS[*]}"))\$"
fi
