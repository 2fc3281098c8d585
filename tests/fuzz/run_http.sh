#!/usr/bin/env bash
# Builds the HTTP fuzz target (Beast's request parser, then net/http_target) with clang and
# libFuzzer (plus ASan and UBSan) and runs it for a short while from the seed corpus.
# Usage: run_http.sh SOURCE_DIR BUILD_DIR [SECONDS]. Exit 77 (skip) without clang++.
set -euo pipefail
src=$1 out=$2/fuzz secs=${3:-20}
mkdir -p "$out/corpus_http"
if ! command -v clang++ >/dev/null; then echo "clang++ missing"; exit 77; fi
bin=$out/fuzz_http
if [ ! -x "$bin" ] || [ -n "$(find "$src/net/http_target.cpp" "$src/net/http_target.hpp" "$src/tests/fuzz/fuzz_http.cpp" "$src/tests/fuzz/run_http.sh" -newer "$bin" 2>/dev/null | head -1)" ]; then
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DBOOST_ENABLE_ASSERT_HANDLER -I"$src" "$src/tests/fuzz/fuzz_http.cpp" "$src/net/http_target.cpp" \
    -lboost_url -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
# A dictionary of HTTP and URL pieces, so that mutations reach past the request line.
cat > "$out/http.dict" <<'DICT'
"GET "
"POST "
"HEAD "
" HTTP/1.1\x0d\x0a"
" HTTP/1.0\x0d\x0a"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: a\x0d\x0a"
"Content-Length: "
"Transfer-Encoding: chunked\x0d\x0a"
"Authorization: Bearer "
"Upgrade: websocket\x0d\x0a"
"Connection: Upgrade\x0d\x0a"
"/api/incidents"
"/ws/console"
"?token="
"&limit="
"&since="
"%2F"
"%2f"
"%00"
"%2e%2e"
"%5C"
"%zz"
"%"
"+"
".."
"/./"
"//"
"-secret"
"/to-secret/"
"/outside-link.txt"
"/inside-link.js"
"/css/"
"/.env"
"9223372036854775808"
"-9223372036854775808"
DICT
cp -n "$src"/tests/fuzz/corpus_http/* "$out/corpus_http/" 2>/dev/null || true
"$bin" -max_total_time="$secs" -max_len=16384 -timeout=5 -dict="$out/http.dict" -print_final_stats=1 \
  -artifact_prefix="$out/http-" "$out/corpus_http" 2>&1 | tail -15
