#!/bin/sh
# build.sh BUILD_DIR -- the release build of the two binaries, as the Docker images' build stage
# and CI (scripts/check-docker.sh) run it: the project's own CMake, Release, without the test
# suite and the benchmarks. The binaries land in BUILD_DIR/bin/. JOBS=N caps the parallelism.
set -eu
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: docker/build.sh BUILD_DIR" >&2
	exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
build=$1
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWEBHOOKS_TESTS=OFF -DWEBHOOKS_BENCH=OFF
cmake --build "$build" -j "$jobs" --target webhooks-gateway webhooks-svc
for bin in webhooks-gateway webhooks-svc; do
	[ -x "$build/bin/$bin" ] || { echo "build.sh: $build/bin/$bin was not built" >&2; exit 1; }
done
