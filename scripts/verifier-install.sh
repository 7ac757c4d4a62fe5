#!/bin/sh
# verifier-install.sh DIR -- install the Standard Webhooks reference verifier (the npm package
# standardwebhooks 1.1.1, exactly as tests/verifier/package-lock.json pins it) into
# DIR/node_modules with `npm ci`, for the signature tests (tests/delivery/test_signatures.py
# and tests/verifier/verify.mjs). ctest runs it as the test verifier_install, a fixture of
# those tests, with DIR = <build dir>/verifier; it does nothing when DIR holds it already.
# The work is scripts/npm-install.sh's (stamp, lock, npm cache, the check that it loads).
set -eu
if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: scripts/verifier-install.sh DIR" >&2
	exit 2
fi
here=$(dirname "$0")
exec sh "$here/npm-install.sh" "$here/../tests/verifier" "$1" standardwebhooks Webhook
