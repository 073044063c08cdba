#!/usr/bin/env python3
"""Times `depgraph render` (by role, and ungrouped) and `depgraph impact` on a
synthetic fleet, next to Graphviz's own `dot` on the same DOT file.

    bench/fleet/time_depgraph.py [--build build-graph] [--fleet /tmp/depgraph-fleet.db] [--runs 5]

Generates the fleet first if it is missing (1,000 hosts, 40 roles, 20,000
connections, hubs with a fan-in of 600, a month of buckets). Prints a
Markdown table: the median of --runs runs for each command, wall clock and
CPU (user + system; on a machine shared with other work, CPU time is the
steadier of the two).

The share of a render spent outside Graphviz is measured in pairs: each run of
`depgraph render` is followed at once by a run of `dot -Tsvg` on the same
graph's DOT, and the share is the median of the pairs' (render - dot) / render,
so that a machine whose speed drifts over the minutes moves both alike.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(cmd):
    """(wall seconds, CPU seconds) of one run"""
    start, cpu = time.perf_counter(), cpu_of_children()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, cpu_of_children() - cpu


def medians(samples):
    """(median wall, median CPU) of (wall, CPU) samples"""
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def timed(cmd, runs):
    """(median wall seconds, median CPU seconds)"""
    return medians([run_once(cmd) for _ in range(runs)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build-graph")
    parser.add_argument("--fleet", default="/tmp/depgraph-fleet.db")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    depgraph = os.path.join(args.build, "cli", "depgraph")
    if not os.path.exists(args.fleet):
        subprocess.run([os.path.join(args.build, "tests", "graph", "generate_fleet"), args.fleet], check=True)
    db = ["--db", args.fleet]
    out = tempfile.mkdtemp(prefix="depgraph-bench-")
    rows = []

    def row(what, cmd):
        wall, cpu = timed(cmd, args.runs)
        rows.append((what, " ".join(cmd), (wall, cpu)))
        return wall

    no_layout = row("graph as JSON: load, join, no Graphviz", [depgraph, "render", *db, "--format", "json", "-o", f"{out}/all.json"])
    for name, extra in (("by role", ["--group-by", "role"]), ("ungrouped", [])):
        tag = "role" if extra else "all"
        row(f"render {name}, DOT (no layout)", [depgraph, "render", *db, *extra, "-o", f"{out}/{tag}.dot"])
        render = [depgraph, "render", *db, *extra, "-o", f"{out}/{tag}.svg"]
        dot = ["dot", "-Tsvg", f"{out}/{tag}.dot", "-o", f"{out}/{tag}-dot.svg"]
        pairs = [(run_once(render), run_once(dot)) for _ in range(args.runs)]
        rows.append((f"render {name}, SVG", " ".join(render), medians([r for r, _ in pairs])))
        rows.append((f"Graphviz `dot -Tsvg` on that DOT", " ".join(dot), medians([d for _, d in pairs])))
        rows.append((f"  ratio render {name} / Graphviz alone, median of pairs", "",
                     statistics.median(r[0] / d[0] for r, d in pairs)))
        rows.append((f"  share of render {name} outside Graphviz, median of pairs", "",
                     statistics.median(max(0.0, r[0] - d[0]) / r[0] for r, d in pairs)))
    row("impact postgres-01 (json)", [depgraph, "impact", "postgres-01", *db, "--format", "json"])
    row("impact postgres (role, json)", [depgraph, "impact", "postgres", *db, "--group-by", "role", "--format", "json"])

    print(f"| what | command | wall, median of {args.runs} | CPU |")
    print("|---|---|---|---|")
    for what, cmd, value in rows:
        if cmd:
            print(f"| {what} | `{cmd}` | {value[0]:.3f} s | {value[1]:.3f} s |")
        else:
            print(f"| {what} | | {f'{value:.2f}x' if 'ratio' in what else f'{value:.0%}'} | |")
    print(f"\n(no layout at all, for reference: {no_layout:.3f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
