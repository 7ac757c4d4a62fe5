#!/bin/sh
# svc-healthcheck.sh -- the webhooks-svc image's HEALTHCHECK (installed as
# /usr/local/bin/webhooks-svc-healthcheck). The service has no HTTP port, and "the process is
# alive" is always true of a container's PID 1, so this checks what makes the service useful:
# that it holds an ESTABLISHED TCP connection to NATS, i.e. it is on the bus and can take
# requests. It reads the kernel's socket table (/proc/net/tcp, tcp6) of the container's
# network namespace, where webhooks-svc is the only process, for a connection to a port of
# NATS_URL (comma-separated servers; 4222 when a URL names none). It needs nothing beyond sh.
# While NATS is down the service keeps reconnecting and this reports unhealthy until it is back.
# Exit 0: healthy; 1: not connected.
set -eu
urls=${NATS_URL:-nats://127.0.0.1:4222}


ports=" "
for url in $(echo "$urls" | tr ',' ' '); do
	hostport=${url#*://}
	hostport=${hostport##*@}
	hostport=${hostport%%/*}
	case $hostport in
	*"]:"*) port=${hostport##*"]:"} ;;
	*"]") port=4222 ;;
	*:*) port=${hostport##*:} ;;
	*) port=4222 ;;
	esac
	case $port in
	"" | *[!0-9]*)
		echo "webhooks-svc healthcheck: cannot read a port in NATS_URL entry '$url'"
		exit 1
		;;
	esac
	ports="$ports$(printf '%04X' "$port") "
done

for table in /proc/net/tcp /proc/net/tcp6; do
	[ -r "$table" ] || continue
	# sl local_address rem_address st ...: st 01 is ESTABLISHED; addresses are HEX:PORT.
	while read -r _ _ remote state _; do
		[ "$state" = "01" ] || continue
		case $ports in *" ${remote##*:} "*)
			echo "webhooks-svc: connected to NATS"
			exit 0
			;;
		esac
	done <"$table"
done
echo "webhooks-svc: not connected to NATS ($urls)"
exit 1
