#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing, the benchmarks and the examples need.
set -euo pipefail
packages=(
  # build
  meson ninja-build g++ pkg-config clang llvm
  libbpf-dev bpftool linux-libc-dev libelf-dev zlib1g-dev
  libmnl-dev libsqlite3-dev libgraphviz-dev graphviz libcli11-dev catch2
  # tests, benchmarks, examples
  iproute2 nftables conntrack python3 sqlite3 procps
  libbpf-tools nginx-light nlohmann-json3-dev libxml2-dev postgresql redis-server curl systemd
  # examples/demo.sh: the demo's app tier is a Python script that talks to PostgreSQL and Redis with
  # their usual client libraries (for Debian's /usr/bin/python3)
  python3-psycopg2 python3-redis
)
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
