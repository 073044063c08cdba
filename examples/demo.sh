#!/usr/bin/env bash
# A small fleet on one machine, traced by one depgraph-agent per host, merged,
# rendered and queried:
#
#   client (curl) -> lb (nginx :80) -> app-01, app-02 (python3 :8080) -> db-01 (postgres :5432)
#                                                                      -> cache-01 (redis-server :6379)
#
# Every host is a network namespace with a veth to a bridge in a `fabric`
# namespace, all in 198.18.0.0/24 (the benchmarking range: nothing real).
# The servers are Debian's own nginx, PostgreSQL and Redis; the app tier is
# examples/demo/app.py. Each host runs `depgraph-agent --scope netns`.
# Everything the demo creates (namespaces, veths, bridge, processes, its temp
# dir) is removed on exit, on Ctrl-C and on error; what it produced stays in
# the output directory.
#
# Usage: sudo bash examples/demo.sh [--out DIR] [--bin DIR] [--requests N]
#   --out DIR      where the results go (default: build/demo): hosts/*.db, fleet.db,
#                  depgraph.svg, depgraph.dot, depgraph.json, impact.txt, impact.json
#   --bin DIR      where depgraph and depgraph-agent are (default: build/cli)
#   --requests N   how many requests the client makes, one connection each (default: 20, even)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/build/demo
bin=$repo/build/cli
requests=20
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -t 2 ]; then
  say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  say() { printf '==> %s\n' "$*" >&2; }
fi
die() { echo "demo.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: it creates network namespaces and loads BPF programs (sudo bash $0)"
case $requests in ''|*[!0-9]*) die "--requests wants a number" ;; esac
[ $((requests % 2)) -eq 0 ] && [ "$requests" -gt 0 ] || die "--requests wants an even number (two app hosts)"
depgraph=${DEPGRAPH:-$bin/depgraph}
agent=${DEPGRAPH_AGENT:-$bin/depgraph-agent}
[ -x "$depgraph" ] && [ -x "$agent" ] || die "no depgraph binaries in $bin: build first (meson setup build && ninja -C build)"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg_bin" ] || die "PostgreSQL is not installed: run scripts/install-deps.sh"
for cmd in nginx redis-server curl runuser /usr/bin/python3; do
  command -v "$cmd" >/dev/null || die "$cmd is missing: run scripts/install-deps.sh"
done
/usr/bin/python3 -c 'import psycopg2, redis' 2>/dev/null || die "python3-psycopg2/python3-redis missing: run scripts/install-deps.sh"

# Host name -> address. The fabric's bridge has .1 (and no agent: it is the wire).
declare -A addr=([lb]=198.18.0.10 [app-01]=198.18.0.11 [app-02]=198.18.0.12
                 [db-01]=198.18.0.20 [cache-01]=198.18.0.30 [client]=198.18.0.100)
hosts=(lb app-01 app-02 db-01 cache-01 client)
# Namespace names carry this run's pid, so that two runs (or a run and the
# test suite) never meet; each is "<prefix><host>".
prefix=dgdemo$$-
fabric=${prefix}fabric
ns() { echo "$prefix$1"; }
# Foreground only: a function run with & is a subshell, and its pid is not the
# server's. Background servers are started with `ip netns exec` itself (it
# execs), so that $! is the process to stop.
in_ns() { local host=$1; shift; ip netns exec "$(ns "$host")" "$@"; }

run=""
pids=()
cleanup() {
  local status=$?
  # A second Ctrl-C or SIGTERM (a test runner's timeout, an impatient user) must not cut the cleanup short
  # and leave namespaces behind: it runs to the end.
  trap - EXIT
  trap '' INT TERM
  set +e
  # Polite first: agents drain their counters, postgres shuts down cleanly.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  # Then whatever is still running inside the demo's namespaces (only the demo starts processes there).
  for host in "${hosts[@]}" fabric; do
    [ -e "/run/netns/$(ns "$host")" ] || continue
    ip netns pids "$(ns "$host")" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  done
  wait 2>/dev/null
  # Deleting a namespace deletes its veth ends and the bridge with it.
  for host in "${hosts[@]}" fabric; do
    [ -e "/run/netns/$(ns "$host")" ] && ip netns delete "$(ns "$host")"
  done
  [ -n "$run" ] && rm -rf "$run"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits up to 10 s for CONDITION (a command) to succeed.
wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what"
}
# A listener seen from inside the namespace, without connecting to it: a probe
# connection would be traced, and the demo promises exact counts.
listening() { [ -n "$(in_ns "$1" ss -Hltn "sport = :$2")" ]; }

# The temp dir holds configs, data and logs; postgres (its data dir) and redis must reach into it.
run=$(mktemp -d /tmp/depgraph-demo.XXXXXX)
chmod 755 "$run"
mkdir -p "$out/hosts"
rm -f "$out"/hosts/*.db* "$out"/fleet.db* "$out"/depgraph.{svg,dot,json} "$out"/impact.{txt,json}

say "network: a bridge in namespace $fabric, one veth to each of ${hosts[*]} (198.18.0.0/24)"
ip netns add "$fabric"
ip -n "$fabric" link set lo up
ip -n "$fabric" link add br0 type bridge
ip -n "$fabric" addr add 198.18.0.1/24 dev br0
ip -n "$fabric" link set br0 up
for host in "${hosts[@]}"; do
  ip netns add "$(ns "$host")"
  ip -n "$(ns "$host")" link set lo up
  ip -n "$fabric" link add "$host" type veth peer name eth0 netns "$(ns "$host")"
  ip -n "$fabric" link set "$host" master br0 up
  ip -n "$(ns "$host")" addr add "${addr[$host]}/24" dev eth0
  ip -n "$(ns "$host")" link set eth0 up
done

say "agents: one depgraph-agent --scope netns per host, writing to $out/hosts/NAME.db"
for host in "${hosts[@]}"; do
  ip netns exec "$(ns "$host")" "$agent" --scope netns --hostname "$host" --db "$out/hosts/$host.db" --flush-interval 1s -v \
    >"$run/agent-$host.log" 2>&1 &
  pids+=($!)
done
for host in "${hosts[@]}"; do
  wait_for "the agent of $host (see its log: -v)" grep -q 'tracing, writing to' "$run/agent-$host.log"
done

say "db-01: PostgreSQL ($pg_bin) on ${addr[db-01]}:5432, trust for 198.18.0.0/24"
mkdir -p "$run/pgdata" "$run/pgsock"
chown postgres: "$run/pgdata" "$run/pgsock"
runuser -u postgres -- "$pg_bin/initdb" -D "$run/pgdata" -A trust -U postgres >"$run/initdb.log" 2>&1 ||
  die "initdb failed: $(tail -n 3 "$run/initdb.log")"
cat >"$run/pgdata/pg_hba.conf" <<EOF
local all all trust
host all all 198.18.0.0/24 trust
EOF
ip netns exec "$(ns db-01)" runuser -u postgres -- "$pg_bin/postgres" -D "$run/pgdata" -c listen_addresses="${addr[db-01]}" \
  -c port=5432 -c unix_socket_directories="$run/pgsock" -c logging_collector=off >"$run/postgres.log" 2>&1 &
pids+=($!)
# Over the Unix socket: no TCP connection that the agents would count.
wait_for "PostgreSQL" runuser -u postgres -- "$pg_bin/pg_isready" -q -h "$run/pgsock"
runuser -u postgres -- "$pg_bin/psql" -q -h "$run/pgsock" -c 'CREATE DATABASE demo' >/dev/null
runuser -u postgres -- "$pg_bin/psql" -q -h "$run/pgsock" -d demo \
  -c 'CREATE TABLE visits (id serial PRIMARY KEY, app text, path text, at timestamptz DEFAULT now())' >/dev/null

say "cache-01: redis-server on ${addr[cache-01]}:6379"
mkdir -p "$run/redis"
chown redis: "$run/redis" 2>/dev/null || true
redis_user=$(id -u redis >/dev/null 2>&1 && echo redis || echo root)
ip netns exec "$(ns cache-01)" runuser -u "$redis_user" -- redis-server --bind "${addr[cache-01]}" --port 6379 --dir "$run/redis" \
  --save '' --appendonly no --protected-mode no --daemonize no --logfile "$run/redis/redis.log" >"$run/redis-stdout.log" 2>&1 &
pids+=($!)
wait_for "redis-server" listening cache-01 6379

say "app-01, app-02: examples/demo/app.py on :8080 (one PostgreSQL query and one Redis INCR per request)"
for host in app-01 app-02; do
  ip netns exec "$(ns "$host")" /usr/bin/python3 "$repo/examples/demo/app.py" "$host" "${addr[$host]}" 8080 \
    "${addr[db-01]}" "${addr[cache-01]}" >"$run/$host.log" 2>&1 &
  pids+=($!)
done
wait_for "app-01" listening app-01 8080
wait_for "app-02" listening app-02 8080

say "lb: nginx on ${addr[lb]}:80, round robin over app-01 and app-02"
sed -e "s|@RUN@|$run|g" -e "s|@LB@|${addr[lb]}|" -e "s|@APP_01@|${addr[app-01]}|" -e "s|@APP_02@|${addr[app-02]}|" \
  "$repo/examples/demo/nginx.conf" >"$run/nginx.conf"
ip netns exec "$(ns lb)" nginx -e "$run/nginx-error.log" -c "$run/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_for "nginx" listening lb 80

say "client: $requests requests with curl, one connection each, to http://${addr[lb]}/"
failed=0
for i in $(seq "$requests"); do
  in_ns client curl -sf -o /dev/null --max-time 10 "http://${addr[lb]}/demo/$i" || failed=$((failed + 1))
done
[ "$failed" -eq 0 ] || die "$failed of $requests requests failed (logs: $run/app-0*.log, $run/nginx-error.log)"

# Two flush intervals for the last closes to be drained, then SIGTERM (not SIGINT: a non-interactive shell
# starts background jobs with SIGINT ignored): each agent writes what is left and exits.
sleep 2
say "stopping the agents (they write what is still in the kernel)"
for i in "${!hosts[@]}"; do kill -TERM "${pids[$i]}"; done
for i in "${!hosts[@]}"; do
  wait "${pids[$i]}" || die "the agent of ${hosts[$i]} failed: $(tail -n 3 "$run/agent-${hosts[$i]}.log")"
done

say "merge, render, impact"
"$depgraph" merge -o "$out/fleet.db" "$out"/hosts/*.db
for format in svg dot json; do
  "$depgraph" render --db "$out/fleet.db" -o "$out/depgraph.$format"
done
"$depgraph" impact db-01:5432 --db "$out/fleet.db" --format json -o "$out/impact.json"
echo
echo "\$ depgraph impact db-01:5432 --db $out/fleet.db"
"$depgraph" impact db-01:5432 --db "$out/fleet.db" | tee "$out/impact.txt"
echo
echo "The graph: $out/depgraph.svg (also .dot and .json); the merged database: $out/fleet.db"
