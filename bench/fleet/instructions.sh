#!/bin/bash
# The instructions a command executes in user space (callgrind's Ir total):
# unlike wall time on a shared VM, the same from run to run, so two builds'
# figures compare to the thousandth.
#   bash bench/fleet/instructions.sh BUILD/cli/depgraph render --db FLEET.db --group-by role -o /tmp/role.dot
set -euo pipefail
out=$(mktemp)
trap 'rm -f "$out" "$out.err"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$out.err" ||
    { cat "$out.err" >&2; exit 1; }
grep -E '^(summary|totals):' "$out" | head -1
