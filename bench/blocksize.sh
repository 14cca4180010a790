#!/usr/bin/env bash
# Measures what the block size costs and buys, to choose the default:
# first-snapshot and restore time, and what an incremental snapshot stores
# after scattered small writes (the common case for databases, VM images
# and logs). Usage: CHAINFS=bin/chainfs bash bench/blocksize.sh [WORK_DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
work=${1:-$(mktemp -d /tmp/chainfs-bs.XXXXXX)}
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
cp -a "$(go env GOROOT)/src" "$src/go-src"
# 1 GiB of incompressible data in four files.
for i in 0 1 2 3; do
	gen $i 256M >"$src/data$i.bin"
done
logical=$(du -sb --apparent-size "$src" | cut -f1)

# The same scattered change for every block size: 400 writes of 4 KiB at
# random offsets of the data files (1.6 MiB in all).
changes=$work/changes
python3 - "$changes" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    for _ in range(400):
        f.write(f"{random.randrange(4)} {random.randrange(0, (256 << 20) - 4096) & ~4095}\n")
PY

printf '| block size | first snapshot | MB/s | restore | incremental stored (1.6 MiB changed) | metadata |\n|---|---|---|---|---|---|\n'
for bs in 64K 128K 256K 512K 1M; do
	export CHAINFS_REPO=$work/repo-$bs
	cp -a "$src" "$work/src-$bs"
	"$CHAINFS" init >/dev/null
	"$CHAINFS" volume add v "$work/src-$bs" --block-size $bs >/dev/null
	cold
	t0=$(date +%s.%N)
	"$CHAINFS" snapshot create v --name one >/dev/null
	t1=$(date +%s.%N)
	while read -r file off; do
		head -c 4096 /dev/urandom | dd of="$work/src-$bs/data$file.bin" bs=4096 seek=$((off / 4096)) conv=notrunc status=none
	done <"$changes"
	stored=$("$CHAINFS" snapshot create v --name two --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["stored_bytes"])')
	cold
	t2=$(date +%s.%N)
	"$CHAINFS" restore v/one "$work/restored-$bs" >/dev/null
	t3=$(date +%s.%N)
	meta=$(du -sB1 "$CHAINFS_REPO/meta" | cut -f1)
	python3 -c "
first=$t1-$t0; rest=$t3-$t2
print(f'| $bs | {first:.2f} s | {$logical/first/1e6:.0f} | {rest:.2f} s | {$stored/2**20:.1f} MiB | {$meta/2**20:.1f} MiB |')"
	rm -rf "$work/src-$bs" "$work/restored-$bs" "$CHAINFS_REPO"
done
