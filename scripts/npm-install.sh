#!/bin/sh
# npm-install.sh SRC_DIR DEST_DIR CHECK_MODULE [EXPORT] -- install exactly the npm packages that
# SRC_DIR/package-lock.json pins into DEST_DIR/node_modules, with `npm ci --ignore-scripts`, for
# the tests that run node tools from the build tree. ctest runs it as a fixture of those tests
# (verifier_install, congodb_install, openapi_install), with DEST_DIR under the build directory;
# scripts/verifier-install.sh and scripts/congodb-install.sh call it with their own arguments.
#
# CHECK_MODULE is a path under DEST_DIR/node_modules that the packages must provide. Once they
# are installed it is loaded to prove they work: a package directory (a bare name such as
# standardwebhooks) or a .js/.mjs/.cjs file is imported, and when EXPORT is given the module
# must export a function of that name; a .json file is parsed.
#
# Quick when done already: DEST_DIR/.installed holds the hash of the package.json and
# package-lock.json that were installed, and nothing is done while it matches and CHECK_MODULE
# is there; after that the packages need no network. One installer at a time per DEST_DIR (two
# ctest runs on one build tree). Runs as root with CI=true and no standard input; needs node and
# npm, which scripts/deps.sh installs (the [test] section of scripts/packages.txt; NodeSource's
# nodejs, which provides npm, counts): node 18 or later, or what package.json's engines.node
# asks when that is ">=X.Y.Z". --ignore-scripts: no package of ours needs an install script,
# and none may run.
set -eu
if [ "$#" -lt 3 ] || [ "$#" -gt 4 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
	echo "usage: scripts/npm-install.sh SRC_DIR DEST_DIR CHECK_MODULE [EXPORT]" >&2
	exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
dest=$(cd "$2" && pwd)
check=$3
export_name=${4:-}
me="npm-install ($(basename "$src"))"

for f in package.json package-lock.json; do
	if [ ! -f "$src/$f" ]; then
		echo "$me: $src/$f is missing" >&2
		exit 2
	fi
done
for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$me: $tool is not installed: run scripts/deps.sh (as root)" >&2
		exit 1
	fi
done
# The values go to node through the environment, never spliced into its code.
export NPM_INSTALL_SRC="$src" NPM_INSTALL_DEST="$dest" NPM_INSTALL_CHECK="$check" \
	NPM_INSTALL_EXPORT="$export_name"
if ! node -e '
	const want = (require(process.env.NPM_INSTALL_SRC + "/package.json").engines || {}).node;
	const m = /^\s*>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(want || "") || [0, 18, 0, 0];
	const have = process.versions.node.split(".").map(Number);
	const need = [1, 2, 3].map((i) => Number(m[i] || 0));
	for (let i = 0; i < 3; i++) {
		if (have[i] !== need[i]) process.exit(have[i] > need[i] ? 0 : 1);
	}' </dev/null; then
	echo "$me: node $(node --version) is too old for $src/package.json (engines.node, or 18)" >&2
	exit 1
fi

stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
installed() {
	[ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$stamp" ] &&
		[ -e "$dest/node_modules/$check" ]
}
installed && exit 0

exec 9>"$dest/.lock"
flock 9
installed && exit 0

what=$(node -p '
	const deps = require(process.env.NPM_INSTALL_SRC + "/package.json").dependencies || {};
	Object.entries(deps).map(([name, version]) => name + " " + version).join(", ")' </dev/null)
echo "$me: installing $what into $dest/node_modules" >&2
rm -f "$dest/.installed"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
# HOME may be unset in a bare CI environment: npm then needs a cache of its own.
if [ -z "${HOME:-}" ] || [ ! -w "$HOME" ]; then
	export npm_config_cache="$dest/.npm-cache"
fi
t0=$(date +%s)
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null >&2
if [ ! -e "$dest/node_modules/$check" ]; then
	echo "$me: the packages installed but $dest/node_modules/$check is not there" >&2
	exit 1
fi
# Imported from DEST_DIR, so that a bare package name resolves in its node_modules.
node --input-type=module -e '
	import { readFileSync } from "node:fs";
	import { pathToFileURL } from "node:url";
	const { NPM_INSTALL_DEST: dest, NPM_INSTALL_CHECK: check, NPM_INSTALL_EXPORT: name } =
		process.env;
	const file = dest + "/node_modules/" + check;
	if (check.endsWith(".json")) {
		JSON.parse(readFileSync(file, "utf8"));
	} else {
		const m = await import(/\.[cm]?js$/.test(check) ? pathToFileURL(file).href : check);
		const f = name ? (m[name] ?? (m.default && m.default[name])) : m;
		if (name && typeof f !== "function")
			throw new Error(check + " does not export a function " + name);
	}' </dev/null
echo "$stamp" >"$dest/.installed"
echo "$me: done in $(($(date +%s) - t0)) s" >&2
