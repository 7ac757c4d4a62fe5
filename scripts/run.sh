#!/usr/bin/env bash
# run.sh -- make run: nats-server (JetStream on), webhooks-svc on SQLite and webhooks-gateway on
# port 8080, all in the foreground; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
bin="$build/bin"
data="${DATA_DIR:-data}"
port="${GATEWAY_PORT:-8080}"
nats_port="${NATS_PORT:-4222}"
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
}
trap stop INT TERM EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$nats_port" "$port"; do
	port_free "$p" || { echo "run: port $p is already in use; stop what holds it first" >&2; exit 1; }
done

# Each runs in its own session so that Ctrl-C reaches only this script, which then stops
# them in order: the gateway first, NATS last.
setsid nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$data/nats" &
pids+=($!)
export NATS_URL="nats://127.0.0.1:$nats_port"
STORE_URL="${STORE_URL:-sqlite:$data/webhooks.db}" setsid "$bin/webhooks-svc" &
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

cat <<MSG

  webhooks is up: http://127.0.0.1:$port   (Ctrl-C stops nats-server, webhooks-svc, webhooks-gateway)

  Register a webhook:
    curl -s -X POST http://127.0.0.1:$port/webhooks \\
      -H 'Authorization: Bearer $ADMIN_TOKEN' \\
      -H 'Content-Type: application/json' \\
      -d '{"targetUrl": "https://example.com/hook"}'

  List them:   curl -s http://127.0.0.1:$port/webhooks -H 'Authorization: Bearer $ADMIN_TOKEN'
  Trigger:     curl -s http://127.0.0.1:$port/ip

MSG
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "run: a process exited; stopping the others" >&2
