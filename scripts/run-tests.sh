#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite.
# Integration tests need root (they create network namespaces and load BPF
# programs); without root they are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build
meson test -C build --print-errorlogs "$@"
