#!/usr/bin/env bash
# Installs what the project needs from Debian 12's own packages, idempotently.
# Silent when everything is already there.
set -euo pipefail

PKGS=(
  g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libgeos-dev libsqlite3-dev libfmt-dev libcli11-dev doctest-dev libbenchmark-dev
  clang libclang-rt-14-dev
  chromium fonts-noto-cjk
  gpsd gpsd-clients python3-gps libnet-snpp-perl
  nodejs python3 python3-websocket
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Debian's nodejs ships npm separately; NodeSource's includes it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
