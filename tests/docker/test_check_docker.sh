#!/usr/bin/env bash
# shellcheck disable=SC2016 # the breaks are literal text, $ and all
# test_check_docker.sh -- every check of scripts/check-docker.sh can fail: in a copy of the tree,
# break the Docker recipe one way at a time and expect the named check to fail, for that reason
# (its message must name the fault). The copy, unbroken, must pass first.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
check="$src/scripts/check-docker.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-check-docker.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tree="$tmp/tree"
mkdir "$tree"
tar -C "$src" --exclude=./build --exclude='./build-*' --exclude=./data --exclude=./.git \
	--exclude=./.env -cf - . | tar -C "$tree" -xf -

passed=0
failed=0
bad() {
	echo "FAIL: $*" >&2
	failed=$((failed + 1))
}

DOCKER_CHECK_ROOT="$tree" "$check" config packages layout >"$tmp/out" 2>&1 ||
	{ cat "$tmp/out" >&2 && bad "the unbroken copy does not pass" && exit 1; }

# The binaries, built once by the copy's docker/build.sh: a break that leaves docker/build.sh
# alone has the build and health checks take them (DOCKER_CHECK_BUILT) rather than compile the
# project again; a break of docker/build.sh has them build it.
JOBS=2 sh "$tree/docker/build.sh" "$tmp/built" >"$tmp/out" 2>&1 ||
	{ cat "$tmp/out" >&2 && bad "docker/build.sh fails on the unbroken copy" && exit 1; }

# breaks CHECK "EXPECTED MESSAGE" FILE OLD NEW: replace OLD (which must be there) by NEW in
# FILE, run CHECK on the copy, expect it to fail saying EXPECTED MESSAGE, then undo.
breaks() {
	local chk=$1 want=$2 file="$tree/$3" old=$4 new=$5
	cp "$file" "$tmp/saved"
	if ! OLD=$old NEW=$new "/usr/bin/python3" - "$file" <<'PY'; then
import os, sys
p = sys.argv[1]
s = open(p, encoding="utf-8").read()
if os.environ["OLD"] not in s:
    sys.exit(1)
open(p, "w", encoding="utf-8").write(s.replace(os.environ["OLD"], os.environ["NEW"], 1))
PY
		bad "$chk: the break no longer applies to $3: $old"
		return
	fi
	local prebuilt="$tmp/built"
	[ "$3" = docker/build.sh ] && prebuilt=
	if DOCKER_CHECK_ROOT="$tree" DOCKER_CHECK_BUILT=$prebuilt "$check" "$chk" >"$tmp/out" 2>&1; then
		bad "$chk passes although $3 has '${old%%$'\n'*}' -> '${new%%$'\n'*}'"
	elif ! grep -qF -- "$want" "$tmp/out"; then
		bad "$chk fails, but not with '$want': $(cat "$tmp/out")"
	else
		echo "ok: $chk fails: $want"
		passed=$((passed + 1))
	fi
	cp "$tmp/saved" "$file"
}

# (1) config
breaks config "passes with ADMIN_TOKEN unset" docker-compose.yml \
	'${ADMIN_TOKEN:?set ADMIN_TOKEN in .env (see .env.example)}' '${ADMIN_TOKEN}'
breaks config "config -q fails" docker-compose.yml \
	$'  nats:\n' $'  nats:\n    no_such_key: 1\n'
# (2) packages
breaks packages "installs outside scripts/deps.sh" docker/gateway.Dockerfile \
	'RUN sh /tmp/deps/deps.sh runtime runtime-gateway' \
	'RUN apt-get update && apt-get install -y curl && sh /tmp/deps/deps.sh runtime runtime-gateway'
breaks packages "no section [runtime-svcs]" docker/webhooks-svc.Dockerfile \
	'deps.sh runtime runtime-svc' 'deps.sh runtime runtime-svcs'
breaks packages "before COPYing scripts/packages.txt" docker/webhooks-svc.Dockerfile \
	$'COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh /tmp/deps/\n' \
	$'COPY scripts/packages.sh scripts/deps.sh /tmp/deps/\n'
breaks packages "not in Debian's archive" scripts/packages.txt \
	$'libsqlite3-0\n' $'libsqlite3-0\nlibsqlite3-0-no-such-package\n'
breaks packages "does not bring sqlite3.pc" scripts/packages.txt \
	$'libsqlite3-dev\n' ''
# (3) build
breaks build "which miss: webhooks-svc:libsqlite3.so.0(libsqlite3-0)" scripts/packages.txt \
	$'libsqlite3-0\n' ''
breaks build "which miss: webhooks-gateway:libmicrohttpd.so.12(libmicrohttpd12)" scripts/packages.txt \
	$'libmicrohttpd12\n' ''
breaks build "did not produce bin/webhooks-svc" docker/build.sh \
	$'\ncmake --build' $'\ntrap \'rm -f "$build/bin/webhooks-svc"\' EXIT\ncmake --build'
breaks build "webhooks-gateway --help exited 3" docker/build.sh \
	$'\ncmake --build' $'\ntrap \'printf "#!/bin/sh\\nexit 3\\n" >"$build/bin/webhooks-gateway"\' EXIT\ncmake --build'
breaks build "docker/build.sh failed" docker/build.sh \
	'-DWEBHOOKS_BENCH=OFF' '-DWEBHOOKS_BENCH=OFF -DNO_SUCH_GENERATOR_OPTION=1 -G "No Such Generator"'
# (4) layout
breaks layout "webhooks-svc maps ports" docker-compose.yml \
	$'      dockerfile: docker/webhooks-svc.Dockerfile\n' \
	$'      dockerfile: docker/webhooks-svc.Dockerfile\n    ports:\n      - "9000:9000"\n'
breaks layout "webhooks-svc has a container_name" docker-compose.yml \
	$'      dockerfile: docker/webhooks-svc.Dockerfile\n' \
	$'      dockerfile: docker/webhooks-svc.Dockerfile\n    container_name: svc\n'
breaks layout "does not map host port 8080" docker-compose.yml '"8080:8080"' '"8081:8080"'
breaks layout "mongo has no restart policy" docker-compose.yml \
	$'      start_period: 20s\n    restart: unless-stopped\n' $'      start_period: 20s\n'
breaks layout "does not wait for mongo to be healthy" docker-compose.yml \
	$'      mongo:\n        condition: service_healthy' $'      mongo:\n        condition: service_started'
breaks layout "nats has no health check" docker-compose.yml \
	$'      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz"]\n' \
	$'      disable: true\n'
breaks layout "takes its credentials on the command line" docker-compose.yml \
	'command: ["-js", "-sd", "/data", "-m", "8222"]' \
	'command: ["-js", "-sd", "/data", "-m", "8222", "--user", "webhooks", "--pass", "pw"]'
breaks layout "its entrypoint lacks 'authorization {'" docker-compose.yml \
	"printf 'authorization {" "printf 'cluster {"
breaks layout "webhooks-gateway has no deploy.resources.limits" docker-compose.yml \
	$'          memory: 256M\n' ''
breaks layout "has no rotated log" docker-compose.yml $'    max-file: "3"\n' ''
breaks layout "runs as USER root" docker/gateway.Dockerfile 'USER 10001:10001' 'USER root'
breaks layout "no USER in the runtime stage" docker/webhooks-svc.Dockerfile $'USER 10001:10001\n' ''
breaks layout "webhooks-svc.Dockerfile exposes" docker/webhooks-svc.Dockerfile \
	$'STOPSIGNAL SIGTERM\n' $'STOPSIGNAL SIGTERM\nEXPOSE 4222\n'
breaks layout "no STOPSIGNAL SIGTERM" docker/webhooks-svc.Dockerfile \
	'STOPSIGNAL SIGTERM' 'STOPSIGNAL SIGKILL'
breaks layout "no HEALTHCHECK" docker/gateway.Dockerfile 'HEALTHCHECK ' 'LABEL healthcheck=no '
breaks layout "not debian:bookworm-slim" docker/gateway.Dockerfile \
	'FROM debian:bookworm-slim' 'FROM debian:bookworm'
breaks layout ".dockerignore does not keep .env out" .dockerignore $'\n.env\n' $'\n'
breaks layout "no VOLUME /var/lib/webhooks" docker/webhooks-svc.Dockerfile \
	'VOLUME ["/var/lib/webhooks"]' ''
# (5) health
breaks health "does not pass with NATS and the svc up" docker/gateway.Dockerfile \
	'/healthz"' '/no-such-route"'
breaks health "still passes with webhooks-svc stopped" docker/gateway.Dockerfile \
	'curl -fsS -o /dev/null' 'curl -sS -o /dev/null'
breaks health "passes while NATS is down" docker/svc-healthcheck.sh \
	$'set -eu\n' $'set -eu\nexit 0\n'
breaks health "does not pass once NATS is up" docker/svc-healthcheck.sh \
	'[ "$state" = "01" ]' '[ "$state" = "0A" ]'
breaks health "passes with webhooks-svc stopped and the gateway connected" docker/svc-healthcheck.sh \
	'[ "$comm" = webhooks-svc ] || continue' ':'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
