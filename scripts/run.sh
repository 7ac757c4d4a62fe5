#!/usr/bin/env bash
# run.sh -- make run: nats-server (JetStream on), webhooks-svc on SQLite and webhooks-gateway on
# port 8080, all in the foreground; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
# Started in the background by a non-interactive shell (make run & from a script), this shell
# inherits SIGINT ignored, and bash cannot trap a signal ignored on entry: start again with
# SIGINT and SIGTERM at their defaults, so that the trap below stops everything on either.
if [ -z "${WEBHOOKS_RUN_SIGNALS:-}" ]; then
	export WEBHOOKS_RUN_SIGNALS=1
	exec python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_DFL)
os.execvp("bash", ["bash"] + sys.argv[1:])' "$0" "$@"
fi
build="${1:-build}"
bin="$build/bin"
data="${DATA_DIR:-data}"
port="${GATEWAY_PORT:-8080}"
nats_port="${NATS_PORT:-4222}"
metrics_port="${METRICS_PORT:-9090}" # webhooks-svc's GET /metrics, on 127.0.0.1 (0: any free port)
mkdir -p "$data"

# The admin token is made once and kept, so that curl commands keep working across runs.
if [ -z "${ADMIN_TOKEN:-}" ]; then
	if [ ! -s "$data/admin-token" ]; then
		(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$data/admin-token")
		echo "run: generated a new admin token in $data/admin-token"
	fi
	ADMIN_TOKEN="$(cat "$data/admin-token")"
fi
export ADMIN_TOKEN

# NATS with authorization, so that nobody reaches the webhooks.* subjects around the admin
# token: a password made once beside it, in a config file (not on the command line, where ps
# would show it) that only this user can read.
if [ ! -s "$data/nats-password" ]; then
	(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$data/nats-password")
	echo "run: generated a NATS password in $data/nats-password"
fi
nats_password="$(cat "$data/nats-password")"
(umask 077 && printf 'authorization {\n  user: webhooks\n  password: "%s"\n}\n' \
	"$nats_password" >"$data/nats.conf")

pids=()
stopping=""
stop() {
	trap - INT TERM EXIT
	stopping=1
	echo
	echo "run: stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	# Whatever the signal interrupted (the health loop below, say) must not go on.
	exit
}
trap stop INT TERM EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$nats_port" "$port")
[ "$metrics_port" -gt 0 ] 2>/dev/null && ports+=("$metrics_port")
for p in "${ports[@]}"; do
	port_free "$p" || { echo "run: port $p is already in use; stop what holds it first" >&2; exit 1; }
done

# Each runs in its own session so that Ctrl-C reaches only this script, which then stops
# them in order: the gateway first, NATS last.
setsid nats-server -c "$data/nats.conf" -a 127.0.0.1 -p "$nats_port" -js -sd "$data/nats" &
pids+=($!)
export NATS_URL="nats://webhooks:$nats_password@127.0.0.1:$nats_port"
STORE_URL="${STORE_URL:-sqlite:$data/webhooks.db}" METRICS_PORT="$metrics_port" \
	setsid "$bin/webhooks-svc" &
pids+=($!)
GATEWAY_PORT="$port" setsid "$bin/webhooks-gateway" &
pids+=($!)

ok=""
for _ in $(seq 1 100); do
	if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 0.1
done
[ -n "$ok" ] || { echo "run: the system did not become healthy; see the log above" >&2; exit 1; }

svc_metrics="curl -s http://127.0.0.1:$metrics_port/metrics   (webhooks-svc; loopback only, no token)"
[ "$metrics_port" -gt 0 ] 2>/dev/null ||
	svc_metrics="webhooks-svc: METRICS_PORT=$metrics_port (0: the port is in its log line \"metrics on\")"
cat <<MSG

  webhooks is up: http://127.0.0.1:$port   (Ctrl-C stops nats-server, webhooks-svc, webhooks-gateway)

  Register a webhook:
    curl -s -X POST http://127.0.0.1:$port/webhooks \\
      -H 'Authorization: Bearer $ADMIN_TOKEN' \\
      -H 'Content-Type: application/json' \\
      -d '{"targetUrl": "https://example.com/hook"}'

  List them:   curl -s http://127.0.0.1:$port/webhooks -H 'Authorization: Bearer $ADMIN_TOKEN'
  Trigger:     curl -s http://127.0.0.1:$port/ip
  NATS:        nats://webhooks:<$data/nats-password>@127.0.0.1:$nats_port (anonymous clients are refused)
  Metrics:     curl -s http://127.0.0.1:$port/metrics -H 'Authorization: Bearer $ADMIN_TOKEN'   (gateway)
               $svc_metrics

MSG
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "run: a process exited; stopping the others" >&2
