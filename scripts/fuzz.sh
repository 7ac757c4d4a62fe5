#!/bin/sh
# fuzz.sh [SECONDS] [BUILD_DIR] -- build the libFuzzer harnesses of tests/fuzz with clang (a
# build of their own: CC=clang, -DWEBHOOKS_FUZZ=ON, in BUILD_DIR, by default build-fuzz) and
# run each for SECONDS (default 120), from its seeds in tests/fuzz/corpus/<name>/ and what
# earlier runs in BUILD_DIR kept (BUILD_DIR/corpus/<name>/). Prints each run's executions.
# Exits 1 when a harness crashes, leaks, hangs or finds an invariant broken: the input is kept
# as BUILD_DIR/artifacts/<name>-crash-*, and `BUILD_DIR/bin/fuzz_<name> FILE` replays it.
# `make fuzz` runs it (FUZZ_SECONDS); `make test` runs it for a few seconds each (ctest: fuzz).
set -eu
seconds="${1:-120}"
root=$(cd "$(dirname "$0")/.." && pwd)
build="${2:-$root/build-fuzz}"
names="url config addrpolicy route ratelimit requests"

case "$seconds" in
'' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz: clang is not installed; scripts/deps.sh installs it (packages.txt [test])" >&2
	exit 1
fi

# A fuzzer still running when this script is stopped (ctest's timeout, Ctrl-C) goes too.
pid=""
# shellcheck disable=SC2317 # called by the traps
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "fuzz: building the harnesses with clang in $build" >&2
mkdir -p "$build"
if ! CC=clang cmake -S "$root" -B "$build" -DWEBHOOKS_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1; then
	cat "$build/configure.log" >&2
	exit 1
fi
if ! cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1; then
	grep -E 'error|Error' "$build/build.log" | head -40 >&2
	exit 1
fi

status=0
total=0
for name in $names; do
	corpus="$build/corpus/$name"
	artifacts="$build/artifacts"
	log="$build/fuzz_$name.log"
	mkdir -p "$corpus" "$artifacts"
	dict=""
	[ -f "$root/tests/fuzz/$name.dict" ] && dict="-dict=$root/tests/fuzz/$name.dict"
	# New inputs go to the build's corpus (the first directory); the seeds stay as they are.
	# shellcheck disable=SC2086
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$build/bin/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$artifacts/$name-" $dict \
		"$corpus" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1 </dev/null &
	pid=$!
	rc=0
	wait "$pid" || rc=$?
	pid=""
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
		cov=$(grep -a -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov:' "$log" | tail -1 |
			sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/\1 edges, \3 inputs/p')
		echo "fuzz: $name: $runs executions in ${seconds} s ($rate/s), ${cov:-?}: no finding"
		total=$((total + runs))
	else
		echo "fuzz: $name FAILED (exit $rc; the whole log is $log):" >&2
		# What failed, the frames in this project's code, and where the input went.
		grep -a -A1 'invariant failed' "$log" | head -4 >&2 || true
		grep -a -E 'ERROR:|runtime error|(common|gateway|webhooks-svc|tests/fuzz)/[a-z_]+\.c:[0-9]+|Test unit written' \
			"$log" | grep -v -e 'deadly signal' -e 'invariant failed' | head -20 >&2 || true
		status=1
	fi
done
echo "fuzz: $total executions in all"
exit "$status"
