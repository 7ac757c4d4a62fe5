#!/bin/sh
# deps.sh [SECTION...] -- install the Debian packages of scripts/packages.txt that are missing:
# every section when called with no arguments (make run, make test, CI), only the named
# sections otherwise (the Dockerfiles: `build`, `runtime runtime-gateway`, ...).
# A no-op when everything is present; runs `apt-get update` at most once. A name that an
# installed package provides counts as present (NodeSource's nodejs provides npm, and Debian's
# npm could not be installed beside it).
set -eu
here=$(dirname "$0")
pkgs=$(sh "$here/packages.sh" "$@")
missing=""
provided=""
for pkg in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		if [ -z "$provided" ]; then
			# What the installed packages provide, one name a line (versions dropped).
			provided=$(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
				sed -n 's/^ii *|//p' | tr ',' '\n' | sed 's/([^)]*)//; s/^ *//; s/ *$//')
			[ -n "$provided" ] || provided=" "
		fi
		printf '%s\n' "$provided" | grep -qxF "$pkg" || missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
