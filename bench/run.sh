#!/bin/sh
# Runs every benchmark program built in BUILD (default build/): `make bench`.
BUILD=${1:-build}
export DDTS_SOURCE_DIR="$(cd "$(dirname "$0")/.." && pwd)"
status=0
for b in "$BUILD"/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || status=1
done
exit $status
