#!/usr/bin/env bash
# Reading every file of Go's source tree through the mount (tar), cold,
# from a repository with compression off and one with fast, alternating
# runs: what decoding costs a read.
#   CHAINFS=bin/chainfs [RUNS=3] bash bench/compress-read.sh [TREE]
# Needs root (drop_caches).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
CHAINFS=$(realpath "$CHAINFS")
RUNS=${RUNS:-3}
tree=${1:-$(go env GOROOT)/src}
w=$(mktemp -d /var/tmp/chainfs-compress-read.XXXXXX)
export CHAINFS_CONFIG=/dev/null
cleanup() {
	for c in off fast; do
		mountpoint -q "$w/mnt-$c" 2>/dev/null && umount -l "$w/mnt-$c"
	done
	wait 2>/dev/null || true
	rm -rf "$w"
}
trap cleanup EXIT
for c in off fast; do
	CHAINFS_REPO=$w/repo-$c "$CHAINFS" init --compression "$c" >/dev/null
	CHAINFS_REPO=$w/repo-$c "$CHAINFS" volume add src "$tree" >/dev/null
	CHAINFS_REPO=$w/repo-$c "$CHAINFS" snapshot create src --name s >/dev/null
	mkdir -p "$w/mnt-$c"
	CHAINFS_REPO=$w/repo-$c "$CHAINFS" serve --mount "$w/mnt-$c" >/dev/null 2>&1 &
done
for _ in $(seq 100); do
	[ -e "$w/mnt-off/volumes/src/s" ] && [ -e "$w/mnt-fast/volumes/src/s" ] && break
	sleep 0.1
done
echo "| run | off | fast |"
echo "|---|---|---|"
for run in $(seq "$RUNS"); do
	row="| $run |"
	for c in off fast; do
		cold
		s=$(date +%s.%N)
		(cd "$w/mnt-$c/volumes/src/s" && tar cf - . | wc -c >/dev/null)
		e=$(date +%s.%N)
		row+=" $(python3 -c "print(f'{$e-$s:.2f} s')") |"
	done
	echo "$row"
done
