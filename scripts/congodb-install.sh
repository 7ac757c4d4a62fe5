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
# none of these packages has an install script, and none may run. The work is
# scripts/npm-install.sh's (stamp, lock, npm cache, node version, the check that it loads).
set -eu
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: scripts/congodb-install.sh DIR" >&2
	exit 2
fi
here=$(dirname "$0")
exec sh "$here/npm-install.sh" "$here/../tests/congodb" "$1" \
	@push.rocks/smartmongo/dist_ts/congodb/index.js CongoServer
