#!/bin/sh
# systemd-analyze verify on examples/depgraph-agent.service, with ExecStart
# pointed at the agent just built (verify rejects a unit whose binary is
# missing). Any warning (an unknown key, a bad value, a capability name this
# systemd does not know) fails the test, not just a non-zero exit.
# Usage: verify_systemd_unit.sh UNIT AGENT_BINARY
set -eu
unit=$1 agent=$2
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
grep -q '^ExecStart=/usr/local/bin/depgraph-agent' "$unit" || { echo "FAIL: ExecStart is not /usr/local/bin/depgraph-agent"; exit 1; }
sed "s|/usr/local/bin/depgraph-agent|$agent|" "$unit" >"$dir/depgraph-agent.service"
if ! systemd-analyze verify "$dir/depgraph-agent.service" >"$dir/out" 2>&1; then
  cat "$dir/out"; echo "FAIL: systemd-analyze verify"; exit 1
fi
# verify also reads the units this one names (network.target, ...): only lines about ours count.
if grep "depgraph-agent" "$dir/out"; then echo "FAIL: systemd-analyze verify warned"; exit 1; fi
for key in ProtectSystem=strict StateDirectory=depgraph Restart=on-failure NoNewPrivileges=yes; do
  grep -q "^$key" "$unit" || { echo "FAIL: $key is missing"; exit 1; }
done
# Exactly the six capabilities README's Privileges section found necessary, in any order.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | sort | tr '\n' ' ')
[ "$caps" = "CAP_BPF CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE " ] ||
    { echo "FAIL: CapabilityBoundingSet is '$caps', not the six README names"; exit 1; }
# After SIGTERM the agent waits up to 60 s for a locked database (kStopPatienceS in agent/agent.cpp), then
# writes: systemd must not kill it before that and the drain are done, or the last counts are lost.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9][0-9]*\)s\{0,1\}$/\1/p' "$unit")
[ -n "$stop" ] && [ "$stop" -ge 75 ] || { echo "FAIL: TimeoutStopSec must be at least 75s (60 s wait + drain)"; exit 1; }
echo "ok: $(basename "$unit") verifies"
