#!/usr/bin/env bash
# Side-by-side mount benchmarks: chainfs's mount, go-fuse's own loopback
# example (the FUSE ceiling, built from the module cache) and restic mount,
# over the same data in one run. Prints a Markdown table.
#   CHAINFS=bin/chainfs bash bench/mount.sh [WORK_DIR]
# Needs root (drop_caches, mounts), restic, and Go with the module cache.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
SNAPSHOTS=${SNAPSHOTS:-1000}   # snapshots of the 100k-file tree for the RSS figure
work=${1:-$(mktemp -d /var/tmp/chainfs-mbench.XXXXXX)}
pids=()
cleanup() {
	for m in "$work"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
secs() { /usr/bin/time -f %e -o "$work/t" "$@" >/dev/null 2>&1; cat "$work/t"; }
mbps() { python3 -c "print(f'{$1/$2/1e6:.0f}')"; }
waitfor() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }

src=$work/src
mkdir -p "$src/small"
gen big 1G >"$src/big.bin"
python3 - "$src/small" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"d{d // 100}", f"e{d}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"f{f}.txt"), "wb") as fh:
            fh.write(os.urandom(100 + (d * 100 + f) % 3000))
PY
size=$(stat -c %s "$src/big.bin")

# chainfs
export CHAINFS_REPO=$work/chainfs-repo
"$CHAINFS" init >/dev/null
"$CHAINFS" volume add v "$src" >/dev/null
"$CHAINFS" snapshot create v --name s1 >/dev/null
mkdir -p "$work/mnt-chainfs" "$work/mnt-loop" "$work/mnt-restic"
"$CHAINFS" serve --mount "$work/mnt-chainfs" >/dev/null 2>&1 & pids+=($!)
waitfor "$work/mnt-chainfs/volumes/v/s1/big.bin"
c_file=$work/mnt-chainfs/volumes/v/s1/big.bin
c_tree=$work/mnt-chainfs/volumes/v/s1/small

# go-fuse loopback over the source itself
go build -o "$work/loopback" github.com/hanwen/go-fuse/v2/example/loopback
"$work/loopback" -q -directmount "$work/mnt-loop" "$src" & pids+=($!)
waitfor "$work/mnt-loop/big.bin"

# restic
restic init --repo "$work/restic-repo" >/dev/null 2>&1
restic --repo "$work/restic-repo" backup --quiet "$src" >/dev/null
restic --repo "$work/restic-repo" mount "$work/mnt-restic" >/dev/null 2>&1 & pids+=($!)
waitfor "$work/mnt-restic/snapshots/latest"
r_file=$(ls -d "$work"/mnt-restic/snapshots/latest"$src"/big.bin)
r_tree=$(ls -d "$work"/mnt-restic/snapshots/latest"$src"/small)

declare -A t
for who in chainfs loop restic; do
	case $who in
	chainfs) f=$c_file tree=$c_tree ;;
	loop) f=$work/mnt-loop/big.bin tree=$work/mnt-loop/small ;;
	restic) f=$r_file tree=$r_tree ;;
	esac
	cold; t[$who-cold]=$(secs dd if="$f" of=/dev/null bs=1M)
	cat "$f" >/dev/null
	# Five re-reads: one takes about the timer's resolution.
	t[$who-warm]=$(secs bash -c "for i in 1 2 3 4 5; do dd if='$f' of=/dev/null bs=1M; done")
	cold; t[$who-ls]=$(secs ls -lR "$tree")
done

# Daemon memory with many snapshots mounted: make them, list them all, walk one.
for i in $(seq 2 "$SNAPSHOTS"); do "$CHAINFS" snapshot create v --name "s$i" >/dev/null; done
ls "$work/mnt-chainfs/volumes/v" | wc -l >/dev/null
t[list]=$(secs ls "$work/mnt-chainfs/volumes/v")
ls -lR "$work/mnt-chainfs/volumes/v/s$SNAPSHOTS/small" >/dev/null
rss=$(ps -o rss= -p "${pids[0]}")

cat <<MD
| scenario | chainfs | go-fuse loopback | restic mount | chainfs / loopback | chainfs / restic |
|---|---|---|---|---|---|
| sequential read of a 1 GiB file, cold | $(mbps $size ${t[chainfs-cold]}) MB/s | $(mbps $size ${t[loop-cold]}) MB/s | $(mbps $size ${t[restic-cold]}) MB/s | $(ratio ${t[loop-cold]} ${t[chainfs-cold]}) | $(ratio ${t[restic-cold]} ${t[chainfs-cold]}) |
| the same, warm (5 re-reads) | $(mbps $((5 * size)) ${t[chainfs-warm]}) MB/s | $(mbps $((5 * size)) ${t[loop-warm]}) MB/s | $(mbps $((5 * size)) ${t[restic-warm]}) MB/s | $(ratio ${t[loop-warm]} ${t[chainfs-warm]}) | $(ratio ${t[restic-warm]} ${t[chainfs-warm]}) |
| ls -lR of 100k files, cold | ${t[chainfs-ls]} s | ${t[loop-ls]} s | ${t[restic-ls]} s | $(ratio ${t[chainfs-ls]} ${t[loop-ls]}) (time ratio) | $(ratio ${t[restic-ls]} ${t[chainfs-ls]}) |

Ratios are speed ratios (higher is better for chainfs) except the ls -lR time ratio
against loopback (goal ≤ 1.5). With $SNAPSHOTS snapshots of the tree mounted, listing
them took ${t[list]} s, and after walking one the daemon's RSS was $((rss / 1024)) MiB.
MD
