#!/usr/bin/env bash
# What a snapshot of many small files costs in memory and time, and what
# listing it through the mount costs: for a tree of N × 100,000 files (go
# run ./bench/gen small, N times), a new repository's first snapshot and
# an unchanged one (page cache dropped before each; peak RSS from
# /usr/bin/time), then a daemon serving it lists it with ls -lR cold and
# warm (daemon CPU from /proc, its RSS after). With OLD, the two binaries
# alternate on the same tree.
#   CHAINFS=bin/chainfs [OLD=/path/to/an/older/chainfs] [N=4] [LIST=1] bash bench/snapmem.sh
# Needs root (drop_caches, the mount); the tree stays in /var/tmp between
# runs (chainfs-snapmem-N), as it takes a while to make.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
N=${N:-4}
LIST=${LIST:-1}
bins=$(realpath "$CHAINFS")
[ -n "${OLD:-}" ] && bins="$(realpath "$OLD") $bins"
src=/var/tmp/chainfs-snapmem-$N
if [ ! -d "$src/p$N" ]; then
	for i in $(seq 1 "$N"); do (cd "$root" && go run ./bench/gen small "$src/p$i" >/dev/null); done
fi
workdir snapmem
echo "tree: $(find "$src" | wc -l) entries, $(du -sm "$src" | cut -f1) MiB"
for bin in $bins; do
	repo=$work/repo
	rm -rf "$repo"
	"$bin" --repo "$repo" init >/dev/null
	"$bin" --repo "$repo" volume add t "$src" >/dev/null
	for name in first unchanged; do
		cold
		/usr/bin/time -f "$bin: $name snapshot %e s, peak RSS %M KiB" "$bin" --repo "$repo" snapshot create t --name "$name" >/dev/null
	done
	echo "$bin: metadata $(du -sm "$repo/meta" | cut -f1) MiB"
	if [ "$LIST" = 1 ]; then
		mkdir -p "$work/mnt"
		"$bin" --repo "$repo" serve --mount "$work/mnt" >/dev/null 2>&1 &
		daemon=$!
		for _ in $(seq 100); do [ -d "$work/mnt/volumes/t/first" ] && break; sleep 0.2; done
		cpu() { awk '{print ($14 + $15) / 100}' "/proc/$daemon/stat"; }
		cold
		for pass in cold warm; do
			c0=$(cpu) t0=$(date +%s.%N)
			ls -lR "$work/mnt/volumes/t/first" >/dev/null
			t1=$(date +%s.%N) c1=$(cpu)
			echo "$bin: ls -lR $pass $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, daemon $(python3 -c "print(f'{$c1 - $c0:.2f}')") CPU-s"
		done
		echo "$bin: daemon RSS after $(ps -o rss= -p "$daemon" | tr -d ' ') KiB"
		umount "$work/mnt"
		wait "$daemon" || true
		daemon=
	fi
done
