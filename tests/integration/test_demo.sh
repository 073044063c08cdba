#!/usr/bin/env bash
# The README's demo end to end (examples/demo.sh), twice into the same output
# directory: the second run must start afresh and leave nothing behind either.
# Checks the rendered JSON (nodes, edges, exact connection counts: the client
# makes K requests, one connection each, nginx alternates them over the two app
# hosts, each app request is one PostgreSQL and one Redis connection) and the
# impact of db-01:5432, as printed and as JSON.
# Needs root (namespaces, BPF): otherwise 77, "skipped".
# Env: DEPGRAPH, DEPGRAPH_AGENT (the binaries under test), DEMO (examples/demo.sh).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "not root: skipped"; exit 77; }
demo=${DEMO:?DEMO must name examples/demo.sh}
out=$(mktemp -d /tmp/depgraph-test-demo.XXXXXX)
demo_pid=
# Interrupted, the demo is stopped first: started with '&', it ignores Ctrl-C, and would go on for its whole
# run with its namespaces, servers and agents after this script was gone. It cleans up on SIGTERM.
stop_demo() { [ -z "$demo_pid" ] || { kill -TERM "$demo_pid" 2>/dev/null; wait "$demo_pid" 2>/dev/null || true; }; }
trap 'stop_demo; rm -rf "$out"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for requests in 4 12; do
  echo "--- demo.sh --requests $requests"
  # Its namespaces are named after its pid: another demo running on the machine is not this one's leftovers.
  bash "$demo" --out "$out" --requests "$requests" &
  demo_pid=$!
  wait "$demo_pid"
  demo_pid=

  # Nothing of the run is left: namespaces (and with them veths, bridge and the servers), agents.
  left=$(ip netns list | awk -v prefix="dgdemo$demo_pid-" 'index($1, prefix) == 1 {print $1}')
  [ -z "$left" ] || { echo "FAIL: namespaces left behind: $left"; exit 1; }
  if pgrep -f "$out/hosts/" >/dev/null; then echo "FAIL: an agent of the demo is still running"; exit 1; fi

  for f in depgraph.svg depgraph.dot depgraph.json impact.txt impact.json fleet.db; do
    [ -s "$out/$f" ] || { echo "FAIL: $out/$f is missing or empty"; exit 1; }
  done
  grep -q '<svg' "$out/depgraph.svg" || { echo "FAIL: depgraph.svg is not SVG"; exit 1; }
  grep -q 'digraph' "$out/depgraph.dot" || { echo "FAIL: depgraph.dot is not DOT"; exit 1; }

  python3 - "$out" "$requests" <<'PY'
import json, sys
out, k = sys.argv[1], int(sys.argv[2])
failures = []
def check(cond, what):
    if not cond:
        failures.append(what)

graph = json.load(open(out + "/depgraph.json"))
nodes = {n["id"]: n for n in graph["nodes"]}
expected_nodes = {
    "client/curl": ("client", []),
    "lb/nginx": ("service", [80]),
    "app-01/python3": ("service", [8080]),
    "app-02/python3": ("service", [8080]),
    "db-01/postgres": ("service", [5432]),
    "cache-01/redis-server": ("service", [6379]),
}
check(set(nodes) == set(expected_nodes), "nodes: got %s" % sorted(nodes))
for node, (kind, ports) in expected_nodes.items():
    if node in nodes:
        check(nodes[node]["kind"] == kind, "%s: kind %s, expected %s" % (node, nodes[node]["kind"], kind))
        check(nodes[node]["ports"] == ports, "%s: ports %s, expected %s" % (node, nodes[node]["ports"], ports))

edges = {(e["source"], e["target"], e["port"]): e for e in graph["edges"]}
expected_edges = {("client/curl", "lb/nginx", 80): k}
for app in ("app-01/python3", "app-02/python3"):
    expected_edges[("lb/nginx", app, 8080)] = k // 2
    expected_edges[(app, "db-01/postgres", 5432)] = k // 2
    expected_edges[(app, "cache-01/redis-server", 6379)] = k // 2
check(set(edges) == set(expected_edges), "edges: got %s" % sorted(edges))
for key, connections in expected_edges.items():
    e = edges.get(key)
    if e is None:
        continue
    check(e["connections"] == connections, "%s: %d connections, expected %d" % (key, e["connections"], connections))
    check(e["failed"] == 0 and e["open"] == 0, "%s: failed %d, open %d, expected 0 and 0" % (key, e["failed"], e["open"]))
    check(not e["disputed"], "%s: disputed" % (key,))
    check(e["bytes_sent"] > 0 and e["bytes_received"] > 0, "%s: no bytes" % (key,))

expected_dependents = {"app-01/python3": 1, "app-02/python3": 1, "lb/nginx": 2, "client/curl": 3}
impact = json.load(open(out + "/impact.json"))
check(impact["matched"] == ["db-01/postgres"], "impact matched %s" % impact["matched"])
got = {d["node"]: d["depth"] for d in impact["dependents"]}
check(got == expected_dependents, "impact.json dependents: %s" % got)

# What the terminal showed: what the target matched, then a table with DEPTH and NODE columns.
lines = [l.split() for l in open(out + "/impact.txt") if l.strip()]
headline, header, rows = lines[0], lines[1], lines[2:]
check(headline[:5] == ["Who", "depends", "on", "db-01:5432", "(db-01/postgres),"], "impact.txt headline: %s" % headline)
check(header[:2] == ["DEPTH", "NODE"], "impact.txt header: %s" % header)
printed = {r[1]: int(r[0]) for r in rows}
check(printed == expected_dependents, "impact.txt dependents: %s" % printed)

for f in failures:
    print("FAIL:", f)
if failures:
    sys.exit(1)
print("ok: %d nodes, %d edges, %d dependents of db-01:5432" % (len(nodes), len(edges), len(got)))
PY
done
