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

--baseline BIN adds another depgraph binary (an earlier build) to every
round: its renders and impacts run next to this build's, and its shares and
its ratio to this build are reported the same way.
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
    parser.add_argument("--baseline", help="an earlier depgraph binary to run side by side")
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
    builds = [("", depgraph)] + ([("baseline ", args.baseline)] if args.baseline else [])

    def in_rounds(cmds):
        """each command's (wall, CPU) samples, the commands run in turn in each round"""
        samples = [[] for _ in cmds]
        for _ in range(args.runs):
            for i, cmd in enumerate(cmds):
                samples[i].append(run_once(cmd))
        return samples

    for name, extra in (("by role", ["--group-by", "role"]), ("ungrouped", [])):
        tag = "role" if extra else "all"
        row(f"render {name}, DOT (no layout)", [depgraph, "render", *db, *extra, "-o", f"{out}/{tag}.dot"])
        renders = [[binary, "render", *db, *extra, "-o", f"{out}/{tag}.svg"] for _, binary in builds]
        dot = ["dot", "-Tsvg", f"{out}/{tag}.dot", "-o", f"{out}/{tag}-dot.svg"]
        *rendered, dotted = in_rounds([*renders, dot])
        for (label, _), cmd, samples in zip(builds, renders, rendered):
            rows.append((f"{label}render {name}, SVG", " ".join(cmd), medians(samples)))
            rows.append((f"  {label}ratio render {name} / Graphviz alone, median of pairs", "",
                         statistics.median(r[0] / d[0] for r, d in zip(samples, dotted))))
            rows.append((f"  {label}share of render {name} outside Graphviz, median of pairs", "",
                         statistics.median(max(0.0, r[0] - d[0]) / r[0] for r, d in zip(samples, dotted))))
        rows.append((f"Graphviz `dot -Tsvg` on that DOT", " ".join(dot), medians(dotted)))
    for name, target, extra in (("impact postgres-01 (json)", "postgres-01", []),
                                ("impact postgres (role, json)", "postgres", ["--group-by", "role"])):
        cmds = [[binary, "impact", target, *db, *extra, "--format", "json"] for _, binary in builds]
        timings = in_rounds(cmds)
        for (label, _), cmd, samples in zip(builds, cmds, timings):
            rows.append((f"{label}{name}", " ".join(cmd), medians(samples)))
        if args.baseline:
            rows.append((f"  ratio {name} / baseline, median of pairs", "",
                         statistics.median(n[0] / b[0] for n, b in zip(*timings))))

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
