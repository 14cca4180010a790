#!/usr/bin/env bash
# Compression on Go's source tree: the packs a first snapshot writes and
# its time, with compression off, fast and max, beside zstd -1 of the
# tree's tar; the tree is read once first, so every run reads it warm.
#   CHAINFS=bin/chainfs bash bench/compress.sh [TREE]
set -euo pipefail
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
CHAINFS=$(realpath "$CHAINFS")
tree=${1:-$(go env GOROOT)/src}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$(dirname "$tree")" -cf - "$(basename "$tree")" >/dev/null
bytes=$(du -sb "$tree" | cut -f1)
echo "| compression | packs (MB) | of the tree | first snapshot (s, warm) |"
echo "|---|---|---|---|"
for c in off fast max; do
	repo=$work/repo-$c
	CHAINFS_REPO=$repo "$CHAINFS" init --compression "$c" >/dev/null
	CHAINFS_REPO=$repo "$CHAINFS" volume add src "$tree" >/dev/null
	start=$(date +%s.%N)
	CHAINFS_REPO=$repo "$CHAINFS" snapshot create src >/dev/null
	end=$(date +%s.%N)
	packs=$(du -sb "$repo/packs" | cut -f1)
	python3 -c "print(f'| $c | {$packs/1e6:.1f} | {$packs/$bytes:.2f} | {$end-$start:.2f} |')"
done
z=$(tar -C "$(dirname "$tree")" -cf - "$(basename "$tree")" | zstd -1 -q -c | wc -c)
python3 -c "print(f'| zstd -1 of its tar | {$z/1e6:.1f} | {$z/$bytes:.2f} | |')"
echo
echo "The tree: $(python3 -c "print(f'{$bytes/1e6:.1f}')") MB in $(find "$tree" -type f | wc -l) files ($tree)."
