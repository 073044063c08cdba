#!/bin/sh
# Fuzzes the conntrack netlink parser (parse_conntrack_batch) with libFuzzer,
# ASan and UBSan. The project builds with g++, which has no libFuzzer, so this
# compiles the parser's sources directly with clang++ instead of through meson.
#
# Usage: tests/fuzz/run_fuzz.sh [SECONDS [WORKDIR]]
#   SECONDS  how long to fuzz (default 60)
#   WORKDIR  where the binary, the corpus and any crash-* files go
#            (default: a new directory under /tmp, printed at the end)
# Exits non-zero when the fuzzer finds a crash; the input is in WORKDIR.
set -eu

seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${2:-$(mktemp -d /tmp/depgraph-fuzz-XXXXXX)}
cxx=${CXX_FUZZ:-clang++}
mkdir -p "$work/corpus"

flags="-std=c++20 -g -O1 -Wall -Wextra -Werror -I$root"
sanitize="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# libmnl itself is not instrumented: the parser must (and does) check every
# length before it calls mnl_attr_get_*.
mnl=$(pkg-config --cflags --libs libmnl)

$cxx $flags -o "$work/make_seeds" "$root/tests/fuzz/make_seeds.cpp" $mnl
"$work/make_seeds" "$work/corpus"

$cxx $flags $sanitize -o "$work/fuzz_conntrack" \
    "$root/tests/fuzz/fuzz_conntrack.cpp" "$root/agent/conntrack.cpp" "$root/agent/netlink.cpp" \
    "$root/common/result.cpp" $mnl

"$work/fuzz_conntrack" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$work/" "$work/corpus"
echo "fuzz_conntrack: no crash in ${seconds}s; corpus and binary in $work"
