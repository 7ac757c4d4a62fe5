#!/bin/sh
# svc-healthcheck.sh -- the webhooks-svc image's HEALTHCHECK (installed as
# /usr/local/bin/webhooks-svc-healthcheck). The service has no HTTP port, and "the process is
# alive" is always true of a container's PID 1, so this checks what makes the service useful:
# that it holds an ESTABLISHED TCP connection to NATS, i.e. it is on the bus and can take
# requests. It reads the kernel's socket table (/proc/net/tcp, tcp6) for a connection to a port
# of NATS_URL (comma-separated servers; 4222 when a URL names none) from a socket of a
# webhooks-svc process (in the image: PID 1, alone in its PID namespace). Only the service's own
# sockets count: with --network host the table is the host's, where the gateway or anything
# else may be connected to the same port. It needs sh and coreutils' readlink.
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

# The inodes of the sockets the webhooks-svc processes hold (/proc/PID/fd/N -> socket:[INODE]).
inodes=" "
for proc in /proc/[0-9]*; do
	comm=""
	read -r comm <"$proc/comm" 2>/dev/null || continue
	[ "$comm" = webhooks-svc ] || continue
	for fd in "$proc"/fd/*; do
		link=$(readlink "$fd" 2>/dev/null) || continue
		case $link in "socket:["*"]")
			inode=${link#"socket:["}
			inodes="$inodes${inode%"]"} "
			;;
		esac
	done
done

for table in /proc/net/tcp /proc/net/tcp6; do
	[ -r "$table" ] || continue
	# sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...: st 01 is
	# ESTABLISHED; addresses are HEX:PORT.
	while read -r _ _ remote state _ _ _ _ _ inode _; do
		[ "$state" = "01" ] || continue
		case $ports in *" ${remote##*:} "*)
			case $inodes in *" $inode "*)
				echo "webhooks-svc: connected to NATS"
				exit 0
				;;
			esac
			;;
		esac
	done <"$table"
done
echo "webhooks-svc: not connected to NATS ($urls)"
exit 1
