#!/bin/bash
# Two depgraph binaries, byte for byte, on the same fleet: edges, render json/dot,
# impact and deps over eight windows, one file and two. A change meant to leave
# every output alone must print "0 differ".
#   OLD=/tmp/base/build/cli/depgraph MERGED=/tmp/merged.db bash bench/fleet/compare_outputs.sh
OLD=${OLD:?OLD=an earlier depgraph binary}; NEW=${NEW:-build/cli/depgraph}
F=${FLEET:-/tmp/depgraph-fleet.db}; M=${MERGED:?MERGED=a merged copy of the fleet (depgraph merge -o M FLEET)}
# Windows inside the month of a fleet generated on 2026-11-26 (generate_fleet's month ends when it
# runs): move them for a fleet generated on another day.
WINDOWS=(
 ""
 "--since 2026-10-28T13:17:00Z --until 2026-11-20T08:00:00Z"
 "--since 2026-11-05T00:00:00Z --until 2026-11-07T00:00:00Z"
 "--since 2026-11-10T08:00:00Z --until 2026-11-10T18:00:00Z"
 "--since 2026-11-05T00:00:00Z --until 2026-11-07T00:00:01Z"
 "--since 2026-11-04T23:59:59Z --until 2026-11-07T00:00:00Z"
 "--since 2026-10-27T06:17:00Z --until 2026-11-26T06:17:00Z"
 "--since 2026-11-01T00:00:00Z"
)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0; n=0
run() {  # label, args
  for try in 1 2 3; do  # the default window ends now: a run may straddle a second
    "$OLD" $2 > "$tmp/old.out" 2>&1; "$NEW" $2 > "$tmp/new.out" 2>&1
    cmp -s "$tmp/old.out" "$tmp/new.out" && break
  done
  n=$((n+1))
  if cmp -s "$tmp/old.out" "$tmp/new.out"; then echo "same $(wc -c < "$tmp/new.out") $1"; else echo "DIFF $1"; fails=$((fails+1)); fi
}
for w in "${WINDOWS[@]}"; do
  iws=("$w"); [ -z "$w" ] && iws=("" "--since 2020-01-01T00:00:00Z")
  run "edges [$w]" "edges --db $F --format json $w"
  run "edges table [$w]" "edges --db $F $w"
  run "render json [$w]" "render --db $F -o - --format json $w"
  run "render role dot [$w]" "render --db $F --group-by role -o - --format dot $w"
  run "edges 2 files [$w]" "edges --db $F --db $M --format json $w"
  run "edges 2 files reversed [$w]" "edges --db $M --db $F --format json $w"
  for iw in "${iws[@]}"; do
    run "impact postgres-01 [$iw]" "impact postgres-01 --db $F --format json $iw"
    run "impact postgres role [$iw]" "impact postgres --group-by role --db $F --format json $iw"
    run "deps web-01 [$iw]" "deps web-01 --db $F --format json $iw"
    run "impact 2 files [$iw]" "impact postgres-01 --db $F --db $M --format json $iw"
  done
done
echo "$n comparisons, $fails differ"
