#!/usr/bin/env bash
# Builds the protocol fuzz target with clang and libFuzzer (plus ASan and UBSan) and runs
# it for a short while from the seed corpus. Usage: run.sh SOURCE_DIR BUILD_DIR [SECONDS]
set -euo pipefail
src=$1 out=$2/fuzz secs=${3:-20}
mkdir -p "$out/corpus"
if ! command -v clang++ >/dev/null; then echo "clang++ missing"; exit 77; fi
bin=$out/fuzz_protocol
if [ ! -x "$bin" ] || [ -n "$(find "$src/net/protocol.cpp" "$src/net/protocol.hpp" "$src/net/position_parser.cpp" "$src/engine" "$src/geo" "$src/tests/fuzz/fuzz_protocol.cpp" -newer "$bin" 2>/dev/null | head -1)" ]; then
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src" "$src/tests/fuzz/fuzz_protocol.cpp" "$src/net/protocol.cpp" "$src/net/position_parser.cpp" $(ls "$src"/engine/*.cpp | grep -v '/bench_') \
    "$src/geo/geo.cpp" "$src/geo/unit_index.cpp" \
    -lboost_json -o "$bin"
fi
cp -n "$src"/tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
"$bin" -max_total_time="$secs" -max_len=8192 -timeout=5 -print_final_stats=1 "$out/corpus" 2>&1 | tail -15
