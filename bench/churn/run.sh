#!/usr/bin/env bash
# Loopback connect/accept/close churn, run three ways interleaved: untraced,
# under depgraph-agent, and under libbpf-tools tcplife (the per-event peer).
# Reports the median rate per mode and its ratio to untraced (also paired
# within each round), checks that the agent recorded exactly as many connects
# as the churn made, and reports the agent's CPU time per 10,000 connections
# and its peak RSS.
#
#   bench/churn/run.sh [--rounds R] [--seconds D] [--workers N | --split] [--agent PATH]
#                      [--flush-interval DUR] [--base-port P] [--quiet-timeout S]
#
# --split runs the churn's other shape (a connector thread and an acceptor
# thread, see churn.cpp) instead of N workers that each connect and accept.
#
# Needs root (BPF), g++, sqlite3, bpftool and /usr/sbin/tcplife. Build the agent
# first: meson setup build-bench && ninja -C build-bench cli/depgraph-agent
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rounds=5
seconds=5
workers=2  # the highest untraced rate on 2 cores; see churn.cpp and docs/benchmarks.md
split=false
agent="$repo/build-bench/cli/depgraph-agent"
flush_interval=1s
# Below the ephemeral range (32768-60999 by default), so that no client
# socket of the churn itself holds a later round's listening port.
base_port=24100
quiet_timeout=60
tcplife=/usr/sbin/tcplife

echo "command: $(printf '%q ' "$0" "$@")"
echo "cwd:     $PWD"

while (($#)); do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --split) split=true; shift ;;
    --agent) agent=$2; shift 2 ;;
    --flush-interval) flush_interval=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --quiet-timeout) quiet_timeout=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R] [--seconds D] [--workers N | --split] [--agent PATH] [--flush-interval DUR] [--base-port P] [--quiet-timeout S]" >&2
       exit 2 ;;
    esac
done

die() { echo "run.sh: $*" >&2; exit 1; }
if $split; then shape=(--split); shape_name="split: 1 connector + 1 acceptor thread"
else shape=(--workers "$workers"); shape_name="$workers churn worker(s)"; fi
((EUID == 0)) || die "must run as root (the agent and tcplife load BPF programs)"
[[ -x $agent ]] || die "no agent at $agent; build it: meson setup build-bench && ninja -C build-bench cli/depgraph-agent"
[[ -x $tcplife ]] || die "no $tcplife; install it: apt-get install libbpf-tools"
for tool in g++ sqlite3 bpftool /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

work=$(mktemp -d /tmp/depgraph-churn.XXXXXX)
# Processes this script started, by pid; the trap ends only these.
declare -a started=()
cleanup() {
    local i pid
    # Newest first: the agent before the /usr/bin/time that waits for it.
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        pid=${started[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

g++ -O2 -std=c++20 -Wall -Wextra -pthread -o "$work/churn" "$repo/bench/churn/churn.cpp"

clk_tck=$(getconf CLK_TCK)

# BPF programs attached to inet_sock_set_state by anyone (names are cut at 15
# characters). A tracer left running by someone else would slow every mode,
# "untraced" included, so it is counted before each run and reported.
set_state_progs() { bpftool prog show 2>/dev/null | grep -c ' name inet_sock_set_s' || true; }
# The kernel frees a detached program a moment after its owner exits: wait up
# to 3 s for the previous mode's program to go, then record what is left.
record_foreign_progs() {
    local i n
    for ((i = 0; i < 30; i++)); do
        n=$(set_state_progs)
        ((n == 0)) && break
        sleep 0.1
    done
    echo "$n" > "$1"
}

# Nanoseconds on CPU of all threads of a process (schedstat: finer than the
# 10 ms ticks of /proc/PID/stat).
cpu_ns() {
    local total=0 f v
    for f in /proc/"$1"/task/*/schedstat; do
        read -r v _ < "$f" || continue
        total=$((total + v))
    done
    echo "$total"
}

# CPU time (ns) the whole machine spent in user and system mode, all CPUs.
# user + nice + system + irq + softirq: with tick-based accounting a tick in
# softirq is charged to the interrupted task's stime too, so it belongs here.
busy_ns() { awk -v hz="$clk_tck" '/^cpu / {printf "%.0f\n", ($2 + $3 + $4 + $7 + $8) * 1e9 / hz}' /proc/stat; }

# On a shared machine, wait (up to --quiet-timeout seconds) until the machine
# is idle over one second before a run: less than 5% of all cores busy.
wait_quiet() {
    local deadline=$((SECONDS + quiet_timeout)) b0 b1 pct
    while :; do
        b0=$(busy_ns)
        sleep 1
        b1=$(busy_ns)
        pct=$(awk -v b=$((b1 - b0)) -v n="$(nproc)" 'BEGIN {printf "%.0f", 100 * b / 1e9 / n}')
        ((pct < 5)) && return 0
        if ((SECONDS >= deadline)); then
            echo "  (machine still ${pct}% busy after ${quiet_timeout}s of waiting; running anyway)"
            return 0
        fi
    done
}

# Runs the churn on a port; its one output line goes to $work/$name.out, with
# "others": the share of the machine (percent of all cores) that processes
# other than the churn and the tracer (pid $3) used meanwhile. Other people's
# work on a shared machine shows up there, and makes that run's rate noise.
churn() {
    local name=$1 port=$2 tracer=${3:-} b0 b1 t0=0 t1=0
    b0=$(busy_ns)
    [[ -n $tracer ]] && t0=$(cpu_ns "$tracer")
    "$work/churn" --port "$port" --seconds "$seconds" "${shape[@]}" > "$work/$name.out" \
        || die "churn failed ($name): $(cat "$work/$name.out")"
    b1=$(busy_ns)
    [[ -n $tracer ]] && t1=$(cpu_ns "$tracer")
    local own elapsed
    own=$(field cpu_s "$work/$name.out")
    elapsed=$(field seconds "$work/$name.out")
    awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v own="$own" -v e="$elapsed" -v n="$(nproc)" 'BEGIN {
        o = (b - t) / 1e9 - own; if (o < 0) o = 0
        printf " others=%.1f%%\n", 100 * o / (e * n) }' > "$work/$name.others"
    # Appended to the churn's line, for the per-round report.
    printf '%s%s\n' "$(cat "$work/$name.out")" "$(cat "$work/$name.others")" > "$work/$name.out"
}
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" "$2"; }

# tcplife needs tracefs (it attaches a classic tracepoint by its perf event id).
# If tracefs is not mounted, mount it in a private mount namespace for tcplife
# alone, so the machine's mounts stay as they were.
tcplife_cmd=("$tcplife")
if [[ ! -d /sys/kernel/tracing/events/sock ]]; then
    tcplife_cmd=(unshare --mount --propagation private sh -c
        'mount -t tracefs nodev /sys/kernel/tracing && exec "$0"' "$tcplife")
fi

# How many of a process's fds are anon inodes of a kind (perf_event, eventpoll).
perf_event_fds() {
    local kind=${2:-perf_event}
    find /proc/"$1"/fd -lname "anon_inode:\[$kind\]" 2>/dev/null | wc -l
}

run_untraced() {
    local r=$1 port=$2
    record_foreign_progs "$work/untraced-$r.progs"
    churn "untraced-$r" "$port"
}

run_tcplife() {
    local r=$1 port=$2 pid i
    record_foreign_progs "$work/tcplife-$r.progs"
    "${tcplife_cmd[@]}" > /dev/null 2> "$work/tcplife-$r.err" &
    pid=$!
    started+=("$pid")
    # Attached and polling once it holds the tracepoint's perf event plus one
    # perf buffer per CPU, and an epoll instance (libbpf's perf_buffer).
    for ((i = 0; i < 100; i++)); do
        (($(perf_event_fds "$pid") > $(nproc))) && [[ $(perf_event_fds "$pid" eventpoll) -ge 1 ]] && break
        kill -0 "$pid" 2>/dev/null || die "tcplife exited: $(cat "$work/tcplife-$r.err")"
        sleep 0.1
    done
    ((i < 100)) || die "tcplife did not attach within 10 s: $(cat "$work/tcplife-$r.err")"
    sleep 0.2
    churn "tcplife-$r" "$port" "$pid"
    kill -INT "$pid"
    wait "$pid" || true
}

run_agent() {
    local r=$1 port=$2 db="$work/agent-$r.db" tpid apid i cpu0 cpu1
    record_foreign_progs "$work/agent-$r.progs"
    # /usr/bin/time reports the agent's whole-life CPU and max RSS after it exits;
    # it ignores SIGINT itself, so the signal goes to the agent's pid.
    /usr/bin/time -f '%U %S %M' -o "$work/agent-$r.time" \
        "$agent" --db "$db" --flush-interval "$flush_interval" 2> "$work/agent-$r.err" &
    tpid=$!
    started+=("$tpid")
    for ((i = 0; i < 150; i++)); do
        apid=$(pgrep -P "$tpid" || true)
        # The agent attaches before it creates the database, and records its run
        # once its start-up snapshot is taken: then it is fully tracing.
        if [[ -n $apid && -f $db ]] &&
            [[ $(sqlite3 "file:$db?mode=ro" 'SELECT count(*) FROM agent_runs' 2>/dev/null || echo 0) -ge 1 ]]; then
            break
        fi
        kill -0 "$tpid" 2>/dev/null || die "agent exited: $(cat "$work/agent-$r.err")"
        sleep 0.1
    done
    [[ -n $apid ]] && started+=("$apid")
    ((i < 150)) || die "agent did not start within 15 s: $(cat "$work/agent-$r.err")"
    cpu0=$(cpu_ns "$apid")
    churn "agent-$r" "$port" "$apid"
    # Let one more flush happen, so the CPU figure includes draining and
    # writing this round's connections, then sample before stopping.
    sleep 1.2
    cpu1=$(cpu_ns "$apid")
    echo $((cpu1 - cpu0)) > "$work/agent-$r.cpu_ns"
    awk '/^VmHWM:/ {print $2}' /proc/"$apid"/status > "$work/agent-$r.hwm_kb"
    kill -INT "$apid"
    wait "$tpid" || die "agent exited non-zero after SIGINT: $(cat "$work/agent-$r.err")"
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "machine: $(nproc) cores, kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "setup:   $rounds rounds x $seconds s per mode, $shape_name, agent --flush-interval $flush_interval, waits up to ${quiet_timeout} s for an idle machine before each run"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) before"
echo

# A short warm-up, not counted: first-run effects (page cache, slab growth).
"$work/churn" --port "$base_port" --seconds 1 "${shape[@]}" > /dev/null

modes=(untraced agent tcplife)
for ((r = 1; r <= rounds; r++)); do
    # Rotate the order each round, so no mode always runs first or last.
    for ((k = 0; k < 3; k++)); do
        m=$(((r + k) % 3))
        mode=${modes[m]}
        port=$((base_port + 1 + (r - 1) * 3 + m))
        wait_quiet
        "run_$mode" "$r" "$port"
        printf 'round %d  %-8s port %5d  %s\n' "$r" "$mode" "$port" "$(cat "$work/$mode-$r.out")"
    done
done
echo
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) after"
echo

base=$(for ((r = 1; r <= rounds; r++)); do field rate "$work/untraced-$r.out"; done | median)
printf '%-9s %14s %8s %15s   %s\n' mode "median conn/s" ratio "others (median)" "per round (conn/s)"
for mode in "${modes[@]}"; do
    med=$(for ((r = 1; r <= rounds; r++)); do field rate "$work/$mode-$r.out"; done | median)
    all=$(for ((r = 1; r <= rounds; r++)); do field rate "$work/$mode-$r.out"; done | tr '\n' ' ')
    others=$(for ((r = 1; r <= rounds; r++)); do field others "$work/$mode-$r.out"; done | median)
    printf '%-9s %14.0f %8.3f %14.1f%%   %s\n' "$mode" "$med" \
        "$(awk -v a="$med" -v b="$base" 'BEGIN {print a / b}')" "$others" "$all"
done
echo "(others: CPU used by processes other than the churn and the tracer during the run, % of all cores)"
echo
# The three modes of a round run back to back, so a ratio within a round
# cancels the machine's slower drifts (a neighbour's load on the host, memory
# placement) that move whole rounds by several percent.
# The 95% interval is the mean's, from the rounds' spread (normal
# approximation): it says how far this many rounds pin the ratio down.
printf '%-9s %14s %8s %16s   %s\n' mode "paired median" mean "mean's 95% CI" "per round (rate / that round's untraced rate)"
for mode in agent tcplife; do
    ratios=$(for ((r = 1; r <= rounds; r++)); do
        awk -v a="$(field rate "$work/$mode-$r.out")" -v b="$(field rate "$work/untraced-$r.out")" \
            'BEGIN {printf "%.3f\n", a / b}'
    done)
    printf '%-9s %14.3f %s   %s\n' "$mode" "$(median <<< "$ratios")" "$(awk '{s += $1; q += $1 * $1} END {
        m = s / NR; sd = NR > 1 ? sqrt((q - NR * m * m) / (NR - 1)) : 0; h = 1.96 * sd / sqrt(NR)
        printf "%8.3f %7.3f-%.3f", m, m - h, m + h }' <<< "$ratios")" "$(tr '\n' ' ' <<< "$ratios")"
done
echo
# The same over the runs that had the machine to themselves (others <= 5%).
quiet_rates() {
    local mode=$1 r
    for ((r = 1; r <= rounds; r++)); do
        awk -v o="$(field others "$work/$mode-$r.out")" 'BEGIN {exit !(o <= 5)}' && field rate "$work/$mode-$r.out"
    done
    return 0
}
qbase=$(quiet_rates untraced | median)
printf '%-9s %14s %8s %12s\n' mode "quiet median" ratio "quiet runs"
for mode in "${modes[@]}"; do
    n=$(quiet_rates "$mode" | wc -l)
    if ((n == 0)) || [[ -z $qbase ]]; then
        printf '%-9s %14s %8s %8d/%d\n' "$mode" - - "$n" "$rounds"
        continue
    fi
    med=$(quiet_rates "$mode" | median)
    printf '%-9s %14.0f %8.3f %8d/%d\n' "$mode" "$med" "$(awk -v a="$med" -v b="$qbase" 'BEGIN {print a / b}')" "$n" "$rounds"
done
echo

# Exact count: what the agent recorded for each round's port against what the churn made.
echo "agent's recorded connects vs the churn's own count (direction 'out', each round's port):"
churn_total=0 agent_total=0 accept_total=0
for ((r = 1; r <= rounds; r++)); do
    port=$((base_port + 1 + (r - 1) * 3 + 1))
    made=$(field connects "$work/agent-$r.out")
    read -r seen accepted < <(sqlite3 -separator ' ' "file:$work/agent-$r.db?mode=ro" "
        SELECT coalesce(sum(CASE WHEN direction = 'out' THEN connects END), 0),
               coalesce(sum(CASE WHEN direction = 'in' THEN accepts END), 0)
        FROM edges JOIN edge_buckets USING (edge_id) WHERE port = $port")
    losses=$(sqlite3 -separator '=' "file:$work/agent-$r.db?mode=ro" \
        "SELECT counter, sum(value) FROM losses GROUP BY counter HAVING sum(value) > 0" | tr '\n' ' ')
    printf '  round %d: churn %d, agent connects %d, agent accepts %d%s\n' "$r" "$made" "$seen" "$accepted" \
        "${losses:+, losses: $losses}"
    churn_total=$((churn_total + made))
    agent_total=$((agent_total + seen))
    accept_total=$((accept_total + accepted))
done
if ((churn_total == agent_total && churn_total == accept_total)); then verdict=MATCH; else verdict=MISMATCH; fi
echo "  total: churn $churn_total, agent connects $agent_total, agent accepts $accept_total: $verdict"
echo

# Agent cost: CPU on its own threads (draining maps, SQLite), per 10,000 connections.
cpu_ns_total=0
for ((r = 1; r <= rounds; r++)); do cpu_ns_total=$((cpu_ns_total + $(cat "$work/agent-$r.cpu_ns"))); done
whole_cpu=$(for ((r = 1; r <= rounds; r++)); do cat "$work/agent-$r.time"; done | awk '{s += $1 + $2} END {print s}')
hwm=$(for ((r = 1; r <= rounds; r++)); do cat "$work/agent-$r.hwm_kb"; done | sort -n | tail -1)
maxrss=$(for ((r = 1; r <= rounds; r++)); do awk '{print $3}' "$work/agent-$r.time"; done | sort -n | tail -1)
awk -v ns="$cpu_ns_total" -v n="$churn_total" 'BEGIN {
    printf "agent CPU during churn (+1 flush): %.2f ms per 10,000 connections (%.1f ms over %d connections)\n",
        ns / 1e6 / n * 10000, ns / 1e6, n }'
awk -v s="$whole_cpu" -v n="$churn_total" -v r="$rounds" 'BEGIN {
    printf "agent CPU whole life (start-up, churn, final drain): %.1f ms per 10,000 connections (%.2f s over %d runs; 10 ms resolution)\n",
        s * 1000 / n * 10000, s, r }'
echo "agent peak RSS: VmHWM $hwm kB (max over rounds; ru_maxrss $maxrss kB)"
echo

# What else was attached to inet_sock_set_state when each mode started (0 expected).
foreign=$(for f in "$work"/*.progs; do (($(cat "$f") > 0)) && basename "$f" .progs; done | tr '\n' ' ' || true)
if [[ -n $foreign ]]; then
    echo "WARNING: another program was attached to inet_sock_set_state when these runs started: $foreign"
    echo "         (someone else's tracer or agent); those runs paid for it too"
else
    echo "no other tracer was attached to inet_sock_set_state at the start of any run"
fi
lost=$(cat "$work"/tcplife-*.err | awk '/^lost/ {s += $2} END {print s + 0}')
echo "tcplife reported $lost lost events (perf buffer full) over $rounds rounds"
