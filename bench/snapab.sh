#!/usr/bin/env bash
# Snapshot times on bench-compare's mixed data, one binary against another:
# for each run and each binary (OLD first, when set), a new repository's
# first snapshot (page cache dropped), go run ./bench/gen change, the
# incremental (page cache dropped) and an unchanged one; then, RUNS times,
# the first snapshot of each top-level part of the data alone (page cache dropped),
# with user and system CPU, and of the 100k-file tree. Prints one line per
# measurement. ENCRYPT=1 makes every repository encrypted (init --encrypt);
# RESTIC=1 also times restic's first backup of the same tree in each run.
#   CHAINFS=bin/chainfs [OLD=/path/to/an/older/chainfs] [RUNS=2] [ENCRYPT=1] [RESTIC=1] bash bench/snapab.sh
# Needs root (drop_caches), and restic for RESTIC=1. The data stays in /var/tmp/chainfs-snapab and
# /var/tmp/chainfs-snapab-small.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
RUNS=${RUNS:-2}
bins=$(realpath "$CHAINFS")
[ -n "${OLD:-}" ] && bins="$(realpath "$OLD") $bins"
data=/var/tmp/chainfs-snapab small=/var/tmp/chainfs-snapab-small
if [ ! -d "$data/go-src" ]; then
	(cd "$root" && go run ./bench/gen mixed "$data" >/dev/null)
	cp -a "$(go env GOROOT)/src" "$data/go-src"
fi
[ -d "$small" ] || (cd "$root" && go run ./bench/gen small "$small" >/dev/null)
work=$(mktemp -d /var/tmp/chainfs-snapab-work.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CHAINFS_CONFIG=/dev/null CHAINFS_REPO=$work/repo
encrypt=()
if [ "${ENCRYPT:-}" = 1 ]; then
	echo bench >"$work/password"
	export CHAINFS_PASSWORD_FILE=$work/password
	encrypt=(--encrypt)
	echo "chainfs repositories encrypted (init --encrypt)"
else
	echo "chainfs repositories plain"
fi
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$work/restic RESTIC_CACHE_DIR=$work/restic-cache
secs() { /usr/bin/time -f '%e s, %U s user, %S s system' "$@" 2>&1 >/dev/null | tail -1; }
fresh() { # fresh SRC: a new repository with one volume of SRC
	rm -rf "$CHAINFS_REPO"
	"$bin" init "${encrypt[@]}" >/dev/null
	"$bin" volume add m "$1" >/dev/null
}
for run in $(seq 1 "$RUNS"); do
	for bin in $bins; do
		rm -rf "$work/src" && cp -a "$data" "$work/src"
		fresh "$work/src"
		cold; first=$(secs "$bin" snapshot create m --name first)
		(cd "$root" && go run ./bench/gen change "$work/src" >/dev/null)
		cold; incr=$(secs "$bin" snapshot create m --name second)
		same=$(secs "$bin" snapshot create m --name third)
		echo "run $run $bin: first $first; incremental $incr; unchanged $same"
	done
	if [ "${RESTIC:-}" = 1 ]; then
		rm -rf "$work/src" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" && cp -a "$data" "$work/src"
		restic init >/dev/null 2>&1
		cold; first=$(secs restic backup --quiet "$work/src")
		echo "run $run restic: first $first"
	fi
done
for part in "$data"/* "$small"; do
	rm -rf "$work/part" && mkdir "$work/part" && cp -a "$part" "$work/part/"
	for run in $(seq 1 "$RUNS"); do
		for bin in $bins; do
			fresh "$work/part"
			cold; t=$(secs "$bin" snapshot create m)
			echo "run $run, $(basename "$part") alone, $bin: $t"
		done
	done
done
