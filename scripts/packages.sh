#!/bin/sh
# packages.sh [SECTION...] -- print the Debian packages of scripts/packages.txt, one a line:
# those of the named sections, or of every section when none is named, each name once.
# Used by scripts/deps.sh and, through it, by the Dockerfiles. A named section that the list
# lacks, or a package line before any section, is an error (exit 2): a typo in a caller fails
# instead of installing nothing. PACKAGES_LIST=FILE reads another list.
set -eu
list="${PACKAGES_LIST:-$(dirname "$0")/packages.txt}"
[ -r "$list" ] || { echo "packages.sh: cannot read $list" >&2; exit 2; }
asked=" $* "

section=""
seen=" "
out=" "
n=0
while IFS= read -r line || [ -n "$line" ]; do
	n=$((n + 1))
	case $line in
	"# ["*"]"*)
		section=${line#"# ["}
		section=${section%%"]"*}
		seen="$seen$section "
		continue
		;;
	esac
	line=${line%%#*}
	for pkg in $line; do
		if [ -z "$section" ]; then
			echo "packages.sh: $list:$n: package $pkg is in no section" >&2
			exit 2
		fi
		if [ "$#" -eq 0 ] || case $asked in *" $section "*) true ;; *) false ;; esac; then
			case $out in
			*" $pkg "*) ;;
			*) out="$out$pkg " && echo "$pkg" ;;
			esac
		fi
	done
done <"$list"

for s in "$@"; do
	case $seen in
	*" $s "*) ;;
	*) echo "packages.sh: no section [$s] in $list (sections:$seen)" >&2 && exit 2 ;;
	esac
done
