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
  libprotozero-dev liblz4-dev libexpat1-dev libbz2-dev zlib1g-dev
  libpq-dev postgresql
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Debian's nodejs ships npm separately; NodeSource's includes it.
command -v npm >/dev/null 2>&1 || missing+=(npm)

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libosmium is header-only, but Debian 12's libosmium2-dev depends on libboost-dev (1.74),
# which conflicts with libboost1.81-dev. Its headers are unpacked from Debian's own package
# into /opt/osmium (CMake looks there); its real dependencies are in the list above.
if [ ! -f /usr/include/osmium/osm.hpp ] && [ ! -f /opt/osmium/usr/include/osmium/osm.hpp ]; then
  echo "unpacking libosmium2-dev headers into /opt/osmium" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download libosmium2-dev >/dev/null 2>&1) || {
    $SUDO apt-get update -qq && (cd "$tmp" && apt-get download libosmium2-dev >/dev/null); }
  $SUDO mkdir -p /opt/osmium
  $SUDO dpkg-deb -x "$tmp"/libosmium2-dev_*.deb /opt/osmium
  rm -rf "$tmp"
fi
