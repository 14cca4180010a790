#!/usr/bin/env bash
# Compression: the packs a first snapshot writes and its time, with
# compression off, fast and max, beside zstd -1 of the tree's tar. The
# tree is read once first, so every run reads it warm. TREE is Go's
# source tree by default; "random" is 1 GiB of incompressible data.
#   CHAINFS=bin/chainfs [RUNS=3] bash bench/compress.sh [TREE|random]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
CHAINFS=$(realpath "$CHAINFS")
workdir compress
export CHAINFS_CONFIG=/dev/null
tree=${1:-$(go env GOROOT)/src}
if [ "$tree" = random ]; then
	tree=$work/random
	mkdir -p "$tree"
	gen compress $((1 << 30)) >"$tree/big.bin"
fi
tar -C "$(dirname "$tree")" -cf - "$(basename "$tree")" >/dev/null
bytes=$(du -sb "$tree" | cut -f1)
# Each round snapshots with every compression in turn, into new
# repositories: the medians of RUNS rounds, so that no compression always
# runs after another's writes.
declare -A times packs
for round in $(seq "${RUNS:-3}"); do
	for c in off fast max; do
		repo=$work/repo-$c
		rm -rf "$repo"
		CHAINFS_REPO=$repo "$CHAINFS" init --compression "$c" >/dev/null
		CHAINFS_REPO=$repo "$CHAINFS" volume add src "$tree" >/dev/null
		sync # the run before's packs are not this one's writeback
		start=$(date +%s.%N)
		CHAINFS_REPO=$repo "$CHAINFS" snapshot create src >/dev/null
		end=$(date +%s.%N)
		times[$c]+=" $(python3 -c "print($end-$start)")"
		packs[$c]=$(du -sb "$repo/packs" | cut -f1)
	done
done
echo "| compression | packs (MB) | of the tree | first snapshot (s, warm, median of ${RUNS:-3}) |"
echo "|---|---|---|---|"
for c in off fast max; do
	med=$(python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" ${times[$c]})
	python3 -c "print(f'| $c | {${packs[$c]}/1e6:.1f} | {${packs[$c]}/$bytes:.2f} | $med |')"
done
z=$(tar -C "$(dirname "$tree")" -cf - "$(basename "$tree")" | zstd -1 -q -c | wc -c)
python3 -c "print(f'| zstd -1 of its tar | {$z/1e6:.1f} | {$z/$bytes:.2f} | |')"
echo
echo "The tree: $(python3 -c "print(f'{$bytes/1e6:.1f}')") MB in $(find "$tree" -type f | wc -l) files ($tree)."
