#!/usr/bin/env bash
# Compares scratchnet binaries on a shared, noisy machine: runs
# `bench --runs 7 --json` for each binary in turn, ROUNDS times (interleaved,
# so load from other tenants hits all of them alike), then prints each
# workload's per-round medians and their median.
#
#   scripts/bench_ab.sh ROUNDS OLD_BINARY NEW_BINARY [MORE ...]
#   e.g. git stash; cargo build --release; cp target/release/scratchnet /tmp/old
#        git stash pop; cargo build --release
#        scripts/bench_ab.sh 4 /tmp/old target/release/scratchnet
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,10p' "$0"
    exit 2
fi
rounds=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        printf '%s\t%s\n' "$bin" "$("$bin" bench --runs 7 --json | tr -d '\n')" >> "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    bin, text = line.rstrip("\n").split("\t", 1)
    runs.setdefault(bin, []).append(json.loads(text)["rows"])
for bin, rounds in runs.items():
    print(bin)
    for w, row in enumerate(rounds[0]):
        medians = [r[w]["median"] for r in rounds]
        cells = ", ".join(f"{m:.4g}" for m in medians)
        print(f"  {row['workload']}: {cells} -> median {statistics.median(medians):.4g} {row['unit']}")
PY
