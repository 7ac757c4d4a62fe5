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
# No package may start a service while it installs: docker.io's would start a system dockerd,
# which creates docker0 and rewrites iptables (the tests start a private one, host networking
# only). policy-rc.d refusing every start is how Debian says so; one already there stays.
rc_policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$rc_policy" ]; then
	printf '#!/bin/sh\n# deps.sh: no service starts while packages install\nexit 101\n' |
		$sudo tee "$rc_policy" >/dev/null
	$sudo chmod 755 "$rc_policy"
	made_policy=1
fi
trap '[ -z "$made_policy" ] || $sudo rm -f "$rc_policy"' EXIT
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
# Nor at the next boot, where systemd runs: the system daemon stays off.
case " $missing " in *" docker.io "*)
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
		$sudo systemctl mask docker.service docker.socket >/dev/null 2>&1 || true
	fi
	;;
esac
