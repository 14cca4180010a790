#!/usr/bin/env bash
# What a file's history costs to list: a tree of 100,000 small files (go
# run ./bench/gen small) snapshotted SNAPSHOTS times through a daemon's
# control directory, one file of a churn directory rewritten before each
# (so every snapshot has a new top tree), and the file asked for rewritten
# before every tenth. Then chainfs versions of that file, through the
# daemon, cold (page cache dropped) and warm, and ls of its .versions
# directory in the mount.
#   CHAINFS=bin/chainfs [SNAPSHOTS=1000] bash bench/versions.sh
# Needs root (drop_caches, the mount). Takes about ten minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
CHAINFS=$(realpath "$CHAINFS")
SNAPSHOTS=${SNAPSHOTS:-1000}
workdir versions
export CHAINFS_CONFIG=/dev/null CHAINFS_REPO=$work/repo
src=$work/src
(cd "$root" && go run ./bench/gen small "$src" >/dev/null)
mkdir -p "$src/churn"
target=$(cd "$src" && find . -type f | sort | sed -n 5000p | cut -c3-)
"$CHAINFS" init >/dev/null
"$CHAINFS" volume add small "$src" >/dev/null
mkdir "$work/mnt"
"$CHAINFS" serve --mount "$work/mnt" >"$work/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -e "$work/mnt/volumes" ] && break; sleep 0.1; done
for i in $(seq 1 "$SNAPSHOTS"); do
	echo "$i" >"$src/churn/f$((i % 100))"
	[ $((i % 10)) -eq 1 ] && echo "version $i" >>"$src/$target"
	echo "small s$i" >"$work/mnt/.control/snapshot"
	# The control file returns once the snapshot began: wait for its end.
	for _ in $(seq 1200); do [ -e "$work/mnt/volumes/small/s$i" ] && break; sleep 0.05; done
done
n=$("$CHAINFS" versions "small/$target" --json | grep -c '"snapshot"')
t() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
cold; cold_s=$(t "$CHAINFS" versions "small/$target")
warm_s=$(t "$CHAINFS" versions "small/$target")
cold; ls_s=$(t ls -l "$work/mnt/volumes/small/.versions/$target")
echo "$SNAPSHOTS snapshots of a tree of $(find "$src" -type f | wc -l) files; $target has $n versions"
echo "chainfs versions: cold ${cold_s} s, warm ${warm_s} s; ls -l of its .versions directory, cold: ${ls_s} s"
