#!/bin/sh
# congodb-install.sh DIR -- install CongoDB, the MongoDB stand-in of the tests (tests/congodb/
# launch.mjs), into DIR/node_modules: exactly the npm packages of tests/congodb/package-lock.json,
# with `npm ci`. ctest runs it as the test congodb_install (a fixture of every *_congodb test),
# with DIR = <build dir>/congodb, so `make test` installs it into build/ and build-asan/.
#
# Quick when done already: DIR/.installed holds the hash of package.json + package-lock.json
# that was installed, and nothing is done while it matches. Runs as root with CI=true and no
# standard input; needs node (>= 18) and npm, which scripts/deps.sh installs (the [test] section
# of scripts/packages.txt; NodeSource's nodejs, which provides npm, counts).
#
# Why a lock written partly by hand: @push.rocks/smartmongo 2.2.0 depends on packages that do not
# resolve as published (@push.rocks/lik@^6.4.1 through @push.rocks/mongodump and smartdata) and
# on mongodb-memory-server, which downloads a MongoDB build; CongoDB (its dist_ts/congodb/) needs
# none of them, only bson 6, mingo 7 and four @push.rocks packages. So package-lock.json is
# `npm install --package-lock-only` of those six (pinned in package.json) plus one entry, written
# by hand, for @push.rocks/smartmongo 2.2.0 with its registry integrity hash and no
# dependencies. `npm ci` installs a lock as it is, so its tree is exactly that; --ignore-scripts:
# none of these packages has an install script, and none may run.
set -eu
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: scripts/congodb-install.sh DIR" >&2
	exit 2
fi
src=$(cd "$(dirname "$0")/../tests/congodb" && pwd)
mkdir -p "$1"
dest=$(cd "$1" && pwd)

for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "congodb-install: $tool is not installed: run scripts/deps.sh (as root)" >&2
		exit 1
	fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
	echo "congodb-install: node $(node --version) is too old (18 or later needed)" >&2
	exit 1
fi

stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
installed() {
	[ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$stamp" ] &&
		[ -f "$dest/node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js" ]
}
installed && exit 0

# One installer at a time per directory (two ctest runs on one build tree).
exec 9>"$dest/.lock"
flock 9
installed && exit 0

echo "congodb-install: installing @push.rocks/smartmongo 2.2.0 (CongoDB) into $dest/node_modules" >&2
rm -f "$dest/.installed"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
# HOME may be unset in a bare CI environment: npm then needs a cache of its own.
[ -n "${HOME:-}" ] && [ -w "${HOME:-/nonexistent}" ] || export npm_config_cache="$dest/.npm-cache"
t0=$(date +%s)
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null >&2
node --input-type=module -e "
  const m = await import('$dest/node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js');
  if (typeof m.CongoServer !== 'function') throw new Error('no CongoServer');
" </dev/null
echo "$stamp" >"$dest/.installed"
echo "congodb-install: done in $(($(date +%s) - t0)) s" >&2
