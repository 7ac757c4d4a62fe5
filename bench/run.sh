#!/bin/sh
# run.sh -- make bench: the benchmarks recorded in BENCHMARKS.md (see bench/run.py).
set -eu
build="${1:-build}"
shift || true
exec /usr/bin/python3 "$(dirname "$0")/run.py" "$build" "$@"
