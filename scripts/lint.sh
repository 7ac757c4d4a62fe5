#!/bin/sh
# lint.sh -- refuse banned C calls, as curl's checksrc does, and C not formatted by .clang-format.
set -eu
cd "$(dirname "$0")/.."
banned=$(grep -rnE '\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets)[[:space:]]*\(' \
	--include='*.c' --include='*.h' common gateway webhooks-svc tests bench || true)
if [ -n "$banned" ]; then
	echo "lint: banned calls (use snprintf, memcpy with lengths, strtol):" >&2
	echo "$banned" >&2
	exit 1
fi
echo "lint: no banned calls"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common gateway webhooks-svc tests bench -name '*.[ch]')
if ! clang-format --dry-run -Werror $files; then
	echo "lint: format the files above with clang-format -i (the rules are in .clang-format)" >&2
	exit 1
fi
echo "lint: formatted as .clang-format says"
