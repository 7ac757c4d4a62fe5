#!/usr/bin/env bash
# docker-local.sh [COMMAND] -- the project's Docker images on a machine where no image registry
# is reachable: a private Docker engine when none answers, the debian:bookworm base image made
# with debootstrap (once, then cached as a tarball), and the images built from the project's own
# Dockerfiles. The commands:
#   build       (the default) start an engine if none answers, import the base image, build
#               webhooks-gateway, webhooks-svc and webhooks-nats (Debian's nats-server on the same
#               base: the official nats image cannot be pulled), print their sizes and build
#               times, and stop the engine if this run started it (the images stay in its
#               data directory: `docker-local.sh run docker images` shows them)
#   compose [-p NAME] COMMAND...  docker-compose COMMAND on docker-compose.yml with
#               docker/compose.local.yml (the local NATS image, SQLite, host networking; see
#               there), e.g. `compose up -d --no-deps nats webhooks-svc webhooks-gateway` with
#               NATS_PORT, GATEWAY_PORT, ... in the environment or .env; `compose down -v` ends it
#   run CMD...  run CMD with DOCKER_HOST set to an engine (started and stopped around it if
#               none answers), e.g. `scripts/docker-local.sh run docker images`
#   start       start the private engine unless one answers; prints `export DOCKER_HOST=...`
#               (and `export DOCKER_LOCAL_STARTED=DIR` when it started one)
#   stop [--wipe]  stop the private engine of DOCKER_LOCAL_DIR, end what a killed engine left
#               behind (containers, mounts); --wipe also deletes its data (images, volumes)
#   base        make sure the base image is in the engine (from the cache, made first if absent)
#   images      build the three images in the engine that answers
# The private engine never touches the host's network: dockerd runs with --iptables=false
# --ip-forward=false --ip-masq=false --bridge=none (no docker0, no iptables rules, no sysctl),
# so containers can only use --network host (or none); builds run with --network host too.
# Never create a network on it (docker network create, a compose service without network_mode):
# a bridge network is an interface on the host; `compose` refuses files that would make one. Its
# data, socket and pid file live in DOCKER_LOCAL_DIR. Needs root to start an engine; installs
# docker.io and debootstrap through scripts/deps.sh (section docker-engine) when missing.
# Environment:
#   DOCKER_LOCAL_DIR    the private engine's directory (default build/docker-engine)
#   DOCKER_LOCAL_CACHE  where the base image tarball is kept (default build/docker-cache)
#   IMAGE_PREFIX        prefix of the image names (default none): ${IMAGE_PREFIX}webhooks-gateway
#   IMAGE_TAG           tag of the images (default latest)
#   DOCKER              the docker CLI (default /usr/bin/docker, from docker.io, else docker)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/scripts"
D=${DOCKER_LOCAL_DIR:-$root/build/docker-engine}
cache=${DOCKER_LOCAL_CACHE:-$root/build/docker-cache}
prefix=${IMAGE_PREFIX:-}
tag=${IMAGE_TAG:-latest}
suite=bookworm
# Two tarballs: the image for FROM debian:bookworm, and the same slimmed as the official
# debian:bookworm-slim is. The number changes when make_base_tarball does, so that an old cache
# is made again.
base_tar="$cache/debian-$suite-minbase-2.tar.gz"
slim_tar="$cache/debian-$suite-minbase-2-slim.tar.gz"
if [ -z "${DOCKER:-}" ]; then
	DOCKER=docker
	[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
fi

say() { echo "docker-local: $*" >&2; }

# What to undo on exit, run in reverse order; INT and TERM exit too, so that it runs then.
on_exit=()
run_on_exit() {
	local i
	for ((i = ${#on_exit[@]} - 1; i >= 0; i--)); do
		eval "${on_exit[i]}" || true
	done
}
trap run_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
die() {
	say "$*"
	exit 1
}

# A unix socket path is at most 107 bytes: a deep DOCKER_LOCAL_DIR keeps its socket and
# dockerd's exec root (containerd's sockets are under it) in a short directory named after it.
mkdir -p "$D"
D=$(cd "$D" && pwd)
if [ "${#D}" -le 60 ]; then
	R=$D
else
	R="/tmp/docker-local-$(printf '%s' "$D" | md5sum | cut -c1-12)"
fi
sock="$R/docker.sock"
pidfile="$D/docker.pid"

engine_ok() { timeout 20 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The pid of the private engine of D if it runs, else nothing.
engine_pid() {
	local pid
	pid=$(cat "$pidfile" 2>/dev/null) || return 0
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
	# It must be the dockerd started with this exec root, not a pid reused since.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "dockerd .*--exec-root $R/exec " && echo "$pid"
	return 0
}

# start_engine: use the engine that answers (DOCKER_HOST, or the default socket), else start
# the private one. Sets DOCKER_HOST; sets started=1 when this call started an engine.
started=""
start_engine() {
	if [ -n "${DOCKER_HOST:-}" ] || [ -S /var/run/docker.sock ]; then
		if engine_ok; then
			say "using the engine at ${DOCKER_HOST:-unix:///var/run/docker.sock}"
			return 0
		fi
		[ -z "${DOCKER_HOST:-}" ] || [ "$DOCKER_HOST" = "unix://$sock" ] ||
			die "DOCKER_HOST=$DOCKER_HOST does not answer; unset it to start a private engine"
	fi
	export DOCKER_HOST="unix://$sock"
	if [ -n "$(engine_pid)" ] && engine_ok; then
		say "using the private engine already running in $D"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || die "no Docker engine answers, and starting one needs root"
	sh "$here/deps.sh" docker-engine
	command -v dockerd >/dev/null || die "dockerd is not installed (scripts/packages.txt: docker-engine)"
	stop_engine # what a killed run may have left
	mkdir -p "$D/root" "$R/exec"
	# setsid -f: the engine is no child of this script, so that a runner killing this process
	# tree (ctest on a timeout) cannot SIGKILL it mid-write; `stop` ends it cleanly.
	setsid -f dockerd --data-root "$D/root" --exec-root "$R/exec" -H "unix://$sock" \
		--pidfile "$pidfile" --iptables=false --ip6tables=false --ip-forward=false \
		--ip-masq=false --bridge=none --userland-proxy=false \
		--containerd-namespace webhooks-local --containerd-plugins-namespace webhooks-local-plugins \
		</dev/null >"$D/dockerd.log" 2>&1
	started=1
	local i
	for ((i = 0; i < 240; i++)); do
		engine_ok && break
		if ((i > 8)) && [ -z "$(engine_pid)" ]; then
			tail -n 20 "$D/dockerd.log" >&2
			die "dockerd exited at start (log: $D/dockerd.log)"
		fi
		sleep 0.25
	done
	engine_ok || die "dockerd does not answer on $sock after 60 s (log: $D/dockerd.log)"
	say "started a private engine: export DOCKER_HOST=unix://$sock (log: $D/dockerd.log)"
}

# Mount points under D or R, deepest first.
mounts_under() {
	awk -v d="$D/" -v r="$R/" 'index($5, d) == 1 || index($5, r) == 1 { print $5 }' \
		/proc/self/mountinfo | sort -r
}

# stop_engine [--wipe]: stop the private engine of D (SIGTERM: it stops its containers and
# unmounts), end containers a killed engine left running, unmount what is left (the host
# network namespace's bind mount exec/netns/default above all). --wipe deletes the data.
stop_engine() {
	local pid i m id runc_root="$R/exec/runtime-runc/webhooks-local"
	pid=$(engine_pid)
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 180; i++)); do
			[ -d "/proc/$pid" ] || break
			sleep 0.25
		done
		if [ -d "/proc/$pid" ]; then
			say "dockerd $pid did not stop within 45 s of SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	# A killed engine leaves its containers running under their shims: runc, with the state
	# directory of this engine, ends them (and only them).
	if [ -d "$runc_root" ] && command -v runc >/dev/null; then
		for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
			runc --root "$runc_root" kill "$id" KILL 2>/dev/null || true
			runc --root "$runc_root" delete -f "$id" 2>/dev/null || true
		done
	fi
	for m in $(mounts_under); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
	done
	rm -f "$pidfile" "$sock"
	if [ "${1:-}" = --wipe ]; then
		[ -z "$(mounts_under)" ] || die "mounts are left under $D; not deleting it"
		# --one-file-system: never descend into a mount point, should one appear meanwhile.
		rm -rf --one-file-system "$D/root" "$R/exec"
		rm -f "$D/compose.merged.yml" "$D/compose.merged.yml.tmp"
		[ "$R" = "$D" ] || rm -rf --one-file-system "$R"
	fi
}

# The apt sources the host uses, for debootstrap and for the image: one line per entry of
# /etc/apt/sources.list(.d) (one-line and deb822 formats) for this suite and its -updates and
# -security suites, as "URI SUITE COMPONENTS".
host_sources() {
	/usr/bin/python3 - "$suite" <<'PY'
import glob, re, sys
suite = sys.argv[1]
want = {suite, suite + "-updates", suite + "-security"}
out = []
def add(types, uris, suites, comps):
    if "deb" not in types:
        return
    for u in uris:
        for s in suites:
            if s in want:
                out.append((u.rstrip("/"), s, " ".join(comps)))
files = sorted(glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*.list"))
for f in files:
    for line in open(f, encoding="utf-8", errors="replace"):
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^]]*\]", "", line)
        w = line.split()
        if len(w) >= 4:
            add([w[0]], [w[1]], [w[2]], w[3:])
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    text = open(f, encoding="utf-8", errors="replace").read()
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.split()
        if fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        add(fields.get("types", []), fields.get("uris", []), fields.get("suites", []),
            fields.get("components", []))
seen = set()
for o in out:
    if o not in seen:
        seen.add(o)
        print(*o)
PY
}

# make_base_tarball: debootstrap --variant=minbase SUITE from the host's mirror (about 2
# minutes), with the host's sources and proxy settings, tarred into the cache.
make_base_tarball() {
	sh "$here/deps.sh" docker-engine
	local sources mirror include="" rootfs
	sources=$(host_sources)
	mirror=$(awk -v s="$suite" '$2 == s && $3 ~ /(^| )main( |$)/ { print $1; exit }' <<<"$sources")
	[ -n "$mirror" ] || die "no '$suite main' entry in /etc/apt/sources.list(.d) to debootstrap from"
	# apt in the image verifies https mirrors with the CA certificates.
	grep -q '^https:' <<<"$sources" && include="--include=ca-certificates"
	mkdir -p "$cache"
	rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
	on_exit+=("unmount_rootfs '$rootfs'")
	say "making the $suite base image with debootstrap from $mirror (once; cached in $cache)"
	# shellcheck disable=SC2086
	if ! debootstrap --variant=minbase $include "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1; then
		tail -n 20 "$cache/debootstrap.log" >&2
		die "debootstrap failed (log: $cache/debootstrap.log)"
	fi
	# Nothing may stay mounted in it (debootstrap mounts /proc and /sys, maybe /dev) before
	# files are deleted in it or it is tarred.
	unmount_rootfs "$rootfs" keep
	[ -z "$(awk -v d="$rootfs/" 'index($5, d) == 1' /proc/self/mountinfo)" ] ||
		die "cannot unmount what debootstrap mounted in $rootfs"
	rm -f "$rootfs/etc/apt/sources.list"
	awk '{ printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", $1, $2, substr($0, length($1 $2) + 3) }' \
		<<<"$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
	apt-config dump | grep -E '^Acquire::https?::Proxy ' >"$rootfs/etc/apt/apt.conf.d/01proxy" || rm -f "$rootfs/etc/apt/apt.conf.d/01proxy"
	# What the official images set (debuerreotype): no service starts while a package installs,
	# and apt keeps no package cache, no downloaded .deb and no translations in a layer.
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
	printf '%s\n' 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' \
		'APT::Keep-Downloaded-Packages "false";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
	printf '%s\n' 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
	printf '%s\n' 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
	printf '%s\n' 'Apt::AutoRemove::SuggestsImportant "false";' \
		>"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
	printf '%s\n' force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
	rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
		"$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
	find "$rootfs/dev" -xdev -mindepth 1 -delete
	tar --numeric-owner --one-file-system -C "$rootfs" -cf - . | gzip -1 >"$cache/base.tmp"
	# The slim variant: no documentation (copyright files stay), manuals or locales, now and
	# in what dpkg installs later.
	printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
		'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
		'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/lintian/*' \
		'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
		'path-exclude /usr/share/man/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
	(
		cd "$rootfs/usr/share"
		find doc -xdev -mindepth 1 ! -type d ! -name copyright -delete
		find locale -xdev -mindepth 1 ! -type d ! -name locale.alias -delete
		for d in groff info linda lintian man; do
			[ ! -d "$d" ] || find "$d" -xdev -mindepth 1 -delete
		done
		find doc locale -xdev -mindepth 1 -type d -empty -delete
	)
	tar --numeric-owner --one-file-system -C "$rootfs" -cf - . | gzip -1 >"$slim_tar"
	mv "$cache/base.tmp" "$base_tar"
	unmount_rootfs "$rootfs"
}

# unmount_rootfs DIR [keep]: debootstrap mounts /proc and /sys in DIR (and leaves them when it
# fails); unmount them and delete DIR unless keep.
unmount_rootfs() {
	local m
	awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	[ "${2:-}" = keep ] || rm -rf --one-file-system "$1"
}

# The debian:* images the Dockerfiles start FROM (debian:bookworm, debian:bookworm-slim).
base_tags() {
	sed -n 's/^FROM[[:space:]]\{1,\}\(debian:[^[:space:]]*\).*/\1/p' "$root"/docker/*.Dockerfile | sort -u
}

# ensure_base: every base tag in the engine. A missing one is imported from the cached tarball
# (made first if absent) and tagged for each FROM line; an existing image (on an engine that
# can pull, the official one) is left as it is. Prints the tags it created, one a line.
ensure_base() {
	local t tar missing=()
	for t in $(base_tags); do
		"$DOCKER" image inspect "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	((${#missing[@]})) || return 0
	if [ ! -s "$base_tar" ] || [ ! -s "$slim_tar" ]; then
		make_base_tarball
	fi
	for t in "${missing[@]}"; do
		tar=$base_tar
		case $t in *-slim) tar=$slim_tar ;; esac
		say "importing ${tar##*/} as $t"
		"$DOCKER" import --change 'CMD ["bash"]' "$tar" "$t" >/dev/null
		echo "$t"
	done
}

images=("webhooks-gateway:docker/gateway.Dockerfile" "webhooks-svc:docker/webhooks-svc.Dockerfile"
	"webhooks-nats:docker/nats.Dockerfile")

# build_images: the three images, built from the repository root with --network host (the
# engine has no bridge). Prints "NAME SIZE_BYTES SECONDS" per image on stdout.
build_images() {
	local entry name df t0 t1 size
	for entry in "${images[@]}"; do
		name="$prefix${entry%%:*}:$tag"
		df=${entry#*:}
		t0=$(date +%s)
		say "building $name from $df"
		if ! "$DOCKER" build --network host -f "$root/$df" -t "$name" "$root" >"$D/build-${entry%%:*}.log" 2>&1; then
			tail -n 30 "$D/build-${entry%%:*}.log" >&2
			die "building $name failed (log: $D/build-${entry%%:*}.log)"
		fi
		t1=$(date +%s)
		size=$("$DOCKER" image inspect -f '{{.Size}}' "$name")
		echo "$name $size $((t1 - t0))"
	done
}

# compose_local ARGS...: docker-compose ARGS on docker-compose.yml with docker/compose.local.yml,
# merged by docker-compose itself (config), less what host networking cannot do: a service with
# network_mode host publishes no port (the engine refuses the two together, and an override
# cannot remove a list entry), so its `ports` are dropped. The merged file holds the secrets
# from the environment or .env: it is written for root alone, in DOCKER_LOCAL_DIR.
compose_local() {
	local merged="$D/compose.merged.yml"
	(
		umask 077
		cd "$root"
		docker-compose -f docker-compose.yml -f docker/compose.local.yml config >"$merged.tmp"
		/usr/bin/python3 - "$merged.tmp" <<'PY'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path, encoding="utf-8"))
for name, svc in doc["services"].items():
    # A service on a network of its own would make docker-compose create a bridge: an
    # interface on the host, which this engine must never change.
    if "network_mode" not in svc:
        sys.exit(f"docker-local: service {name} has no network_mode: docker-compose would create a bridge network")
    if svc["network_mode"] == "host" and svc.pop("ports", None):
        print(f"docker-local: {name}: host networking, so its published ports are dropped", file=sys.stderr)
if doc.get("networks"):
    sys.exit("docker-local: the compose files declare networks: docker-compose would create bridges")
yaml.safe_dump(doc, open(path, "w", encoding="utf-8"), default_flow_style=False, sort_keys=False)
PY
		mv "$merged.tmp" "$merged"
	)
	# Builds through the docker CLI (the one of DOCKER, first on PATH), as `images` builds: the
	# layers are shared, where docker-compose's own builder misses the CLI's cache.
	PATH="$(dirname "$(command -v "$DOCKER")"):$PATH" COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=0 \
		docker-compose -f "$merged" --project-directory "$root" "$@"
}

cmd=${1:-build}
[ "$#" -eq 0 ] || shift
case $cmd in
start)
	start_engine
	echo "export DOCKER_HOST=$DOCKER_HOST"
	# Only an engine this call started is for `stop` to end.
	[ -z "$started" ] || echo "export DOCKER_LOCAL_STARTED=$D"
	;;
stop)
	stop_engine "$@"
	;;
base)
	start_engine
	[ -z "$started" ] || on_exit+=(stop_engine)
	ensure_base
	;;
images)
	engine_ok || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); try: $0 build"
	build_images
	;;
build)
	start_engine
	[ -z "$started" ] || on_exit+=(stop_engine)
	ensure_base >/dev/null
	build_images | while read -r name size secs; do
		printf '%-32s %4d MB  built in %3d s\n' "$name" $((size / 1000000)) "$secs"
	done
	;;
compose)
	[ "$#" -gt 0 ] || die "usage: $0 compose [-p NAME] COMMAND..."
	start_engine
	[ -z "$started" ] || on_exit+=(stop_engine)
	ensure_base >/dev/null
	compose_local "$@"
	;;
run)
	[ "$#" -gt 0 ] || die "usage: $0 run CMD..."
	start_engine
	[ -z "$started" ] || on_exit+=(stop_engine)
	ensure_base >/dev/null
	"$@"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
