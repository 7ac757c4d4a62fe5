#!/bin/sh
# verifier-install.sh DIR -- install the Standard Webhooks reference verifier (the npm package
# standardwebhooks 1.1.1, exactly as tests/verifier/package-lock.json pins it) into
# DIR/node_modules with `npm ci`, for the signature tests (tests/delivery/test_signatures.py
# and tests/verifier/verify.mjs). ctest runs it as the test verifier_install, a fixture of
# those tests, with DIR = <build dir>/verifier; it does nothing when DIR holds it already.
set -eu
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: scripts/verifier-install.sh DIR" >&2
	exit 2
fi
src=$(cd "$(dirname "$0")/../tests/verifier" && pwd)
mkdir -p "$1"
dest=$(cd "$1" && pwd)

for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "verifier-install: $tool is not installed: run scripts/deps.sh (as root)" >&2
		exit 1
	fi
done

stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
installed() {
	[ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$stamp" ] &&
		[ -f "$dest/node_modules/standardwebhooks/package.json" ]
}
installed && exit 0

# One installer at a time per directory (two ctest runs on one build tree).
exec 9>"$dest/.lock"
flock 9
installed && exit 0

echo "verifier-install: installing standardwebhooks 1.1.1 into $dest/node_modules" >&2
rm -f "$dest/.installed"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
# HOME may be unset in a bare CI environment: npm then needs a cache of its own.
[ -n "${HOME:-}" ] && [ -w "${HOME:-/nonexistent}" ] || export npm_config_cache="$dest/.npm-cache"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null >&2
node -e "const { Webhook } = require('$dest/node_modules/standardwebhooks'); new Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');" </dev/null
echo "$stamp" >"$dest/.installed"
echo "verifier-install: done" >&2
