#!/usr/bin/env python3
"""What the agent costs each exec() on the machine.

The agent renames a process's listeners when it runs another program: a BPF
program on sched_process_exec walks the listener map once per exec, on every
exec of the machine. This runs the same exec loop three ways, interleaved
round by round: no agent, the baseline agent, the agent under test, each agent
tracing a namespace that holds --listeners listening sockets (the map the
walk goes through). Reports the median execs per second of each mode, its
ratio to no agent (also paired within rounds), and the time the agent's
process programs (exec and exit) take per exec of the loop, from
kernel.bpf_stats_enabled.

  sudo python3 bench/exec/run.py --agent build-bench/cli/depgraph-agent \\
       --baseline OLD-AGENT [--listeners 1000] [--execs 2000] [--rounds 7]

Needs root and bpftool. Cleans up its namespace, processes and files, also
on failure.
"""
import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HOLDER = """
import socket, sys, time
held = []
for i in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 30000 + i))
    s.listen(1)
    held.append(s)
print("listening", flush=True)
time.sleep(1e9)
"""


def execs_per_second(n):
    start = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], os.environ)
        os.waitpid(pid, 0)
    return n / (time.perf_counter() - start)


def attached(pid):
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link" for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def process_progs_ns():
    """The run time of the agent's sched_process_exec and _exit programs (one name to the kernel's
    15 characters), or None before they existed."""
    progs = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                                      check=True).stdout)
    mine = [p for p in progs if p.get("name", "").startswith("sched_process_e")]
    return sum(p.get("run_time_ns", 0) for p in mine) if mine else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--listeners", type=int, default=1000)
    ap.add_argument("--execs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: must run as root (the agents load BPF programs)")
    print("command:", " ".join(shlex.quote(a) for a in sys.argv))

    ns = f"dgbench-exec-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="depgraph-exec.")
    holder = None
    stats_before = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        holder = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", HOLDER, str(args.listeners)],
                                  stdout=subprocess.PIPE, text=True)
        if holder.stdout.readline().strip() != "listening":
            sys.exit("run.py: the listener holder did not start")
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write("1")
        modes = {"no agent": None, "baseline": args.baseline, "agent": args.agent}
        rates = {m: [] for m in modes}
        per_run_ns = []
        for r in range(args.rounds):
            order = list(modes)[r % 3:] + list(modes)[:r % 3]
            for mode in order:
                agent = None
                if modes[mode]:
                    db = os.path.join(work, f"{mode}-{r}.db")
                    agent = subprocess.Popen(["ip", "netns", "exec", ns, modes[mode], "--db", db, "--scope", "netns",
                                              "--flush-interval", "10s"], stderr=subprocess.DEVNULL)
                    deadline = time.time() + 20
                    while not attached(agent.pid) and time.time() < deadline:
                        time.sleep(0.05)
                    time.sleep(1)  # the start-up snapshot seeds the listeners
                before = process_progs_ns() if mode == "agent" else None
                rates[mode].append(execs_per_second(args.execs))
                if before is not None:
                    per_run_ns.append((process_progs_ns() - before) / args.execs)
                if agent:
                    agent.send_signal(signal.SIGTERM)
                    agent.wait(timeout=60)
            print(f"round {r + 1}: " + ", ".join(f"{m} {rates[m][-1]:.0f}/s" for m in modes), flush=True)
        base = statistics.median(rates["no agent"])
        print(f"\n{args.execs} execs of /bin/true per run, {args.rounds} rounds, "
              f"{args.listeners} listeners in the traced namespace")
        print("| mode | execs/s, median | ratio to no agent | paired ratio, median |")
        print("|---|---|---|---|")
        for m in modes:
            paired = statistics.median(a / b for a, b in zip(rates[m], rates["no agent"]))
            print(f"| {m} | {statistics.median(rates[m]):.0f} | {statistics.median(rates[m]) / base:.3f} | {paired:.3f} |")
        if per_run_ns:
            print(f"\nexec and exit programs (bpf_stats): {statistics.median(per_run_ns) / 1000:.2f} us per exec "
                  "of the loop, median of rounds")
    finally:
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write(stats_before)
        if holder:
            holder.kill()
            holder.wait()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
