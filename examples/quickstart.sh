#!/usr/bin/env bash
# The README's first command: install, build, run the agent on this machine
# against its default database, make some traffic, and show what it recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

db=/var/lib/depgraph/depgraph.db
port=18080
server_pid="" agent_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$agent_pid" ] && kill -INT "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
}
trap cleanup EXIT

# A web server on loopback, up before the agent: the agent learns it from sock_diag.
python3 -m http.server "$port" --bind 127.0.0.1 --directory examples >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

./build/cli/depgraph-agent --db "$db" --flush-interval 1s &
agent_pid=$!
sleep 2

# Five requests and one refused connection.
for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
curl -s -o /dev/null "http://127.0.0.1:$((port + 1))/" || true
sleep 2

kill -INT "$agent_pid"; wait "$agent_pid"; agent_pid=""
echo "Edges recorded in the last 10 minutes ($db):"
./build/cli/depgraph edges --db "$db" --since 10m
