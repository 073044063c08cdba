#!/usr/bin/env bash
# The README's first command: install the Debian packages, build into build/,
# then run the demo (examples/demo.sh): a small fleet of network namespaces on
# this machine -- nginx, two app hosts, PostgreSQL, Redis and a curl client --
# one depgraph-agent per host, the databases merged, the graph rendered to SVG
# and `depgraph impact db-01:5432` printed. The demo removes everything it
# created when it ends (also on Ctrl-C); the results stay in build/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
bash examples/demo.sh --bin build/cli --out build/demo "$@"
echo
echo "Open the graph: $(pwd)/build/demo/depgraph.svg"
