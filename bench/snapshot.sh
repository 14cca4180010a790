#!/usr/bin/env bash
# Side-by-side snapshot benchmarks: chainfs and restic on the same data in
# one run. Prints a Markdown table for docs/benchmarks.md.
#   CHAINFS=bin/chainfs bash bench/snapshot.sh [WORK_DIR]
# Needs root (to drop the page cache between runs) and restic.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
work=${1:-$(mktemp -d /var/tmp/chainfs-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
# timed LABEL CMD...: runs CMD, records elapsed seconds and peak RSS (KiB).
declare -A secs rss best_s
timed() {
	local label=$1
	shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
	read -r secs[$label] rss[$label] <"$work/time"
}

# --- data: ~2 GiB of mixed files -------------------------------------------
mixed=$work/mixed
mkdir -p "$mixed/media" "$mixed/medium"
cp -a "$(go env GOROOT)/src" "$mixed/go-src"                       # ~ 15k small files
for i in 0 1 2 3 4 5; do gen big$i 256M >"$mixed/media/big$i.bin"; done   # 1.5 GiB large
for i in $(seq 0 199); do gen med$i 1M >"$mixed/medium/m$i.bin"; done      # 200 MiB medium
bytes=$(du -sb "$mixed" | cut -f1)
files=$(find "$mixed" -type f | wc -l)

# --- first snapshot / backup ------------------------------------------------
export CHAINFS_REPO=$work/chainfs-repo
"$CHAINFS" init >/dev/null
"$CHAINFS" volume add mixed "$mixed" >/dev/null
cold; timed chainfs_first "$CHAINFS" snapshot create mixed --name first
restic init --repo "$work/restic-repo" >/dev/null 2>&1
cold; timed restic_first restic --repo "$work/restic-repo" backup --quiet "$mixed"

# --- incremental after a 1 % change ------------------------------------------
for i in 0 1 2 3 4 5; do   # 6 × 2 MiB rewritten in the middle of each big file
	dd if=/dev/urandom of="$mixed/media/big$i.bin" bs=1M count=2 seek=100 conv=notrunc status=none
done
for i in $(seq 0 7); do gen new$i 1M >"$mixed/medium/new$i.bin"; done   # 8 MiB added
rm "$mixed/medium/m1"?.bin                                                 # 10 MiB removed
cold; timed chainfs_incr "$CHAINFS" snapshot create mixed --name second
cold; timed restic_incr restic --repo "$work/restic-repo" backup --quiet "$mixed"

# --- unchanged re-snapshot -----------------------------------------------------
timed chainfs_same "$CHAINFS" snapshot create mixed --name third
timed restic_same restic --repo "$work/restic-repo" backup --quiet "$mixed"
chainfs_size=$(du -sB1 "$CHAINFS_REPO" | cut -f1)
restic_size=$(du -sB1 "$work/restic-repo" | cut -f1)

# --- unchanged 100k-file tree ----------------------------------------------------
small=$work/small
python3 - "$small" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"d{d // 100}", f"e{d}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"f{f}.txt"), "wb") as fh:
            fh.write(os.urandom(100 + (d * 100 + f) % 3000))
PY
"$CHAINFS" volume add small "$small" >/dev/null
timed chainfs_small_first "$CHAINFS" snapshot create small
timed chainfs_small_same "$CHAINFS" snapshot create small
restic --repo "$work/restic-repo" backup --quiet "$small" >/dev/null
timed restic_small_same restic --repo "$work/restic-repo" backup --quiet "$small"

# --- restore from snapshot 1 and snapshot 1000 of a 1000-deep chain -------------
chain=$work/chain
mkdir -p "$chain"
for i in 0 1 2 3; do gen chain$i 64M >"$chain/f$i.bin"; done
"$CHAINFS" volume add chain "$chain" >/dev/null
for n in $(seq 1 1000); do
	printf '%08d' "$n" | dd of="$chain/f$((n % 4)).bin" bs=1 seek=$(((n * 7919 % 256) * 262144)) conv=notrunc status=none
	"$CHAINFS" snapshot create chain --name "s$n" >/dev/null
done
for n in 1 1000; do
	rm -rf "$work/restore-$n"
	cold; timed "restore_s$n" "$CHAINFS" restore "chain/s$n" "$work/restore-$n"
	for try in 1 2 3; do   # warm: the repository in the page cache; best of three
		rm -rf "$work/restore-$n"
		timed "warm_s$n" "$CHAINFS" restore "chain/s$n" "$work/restore-$n"
		best=${best_s[$n]:-999}
		python3 -c "import sys; sys.exit(0 if ${secs[warm_s$n]} < $best else 1)" && best_s[$n]=${secs[warm_s$n]}
	done
	secs[warm_s$n]=${best_s[$n]}
done

mbps() { python3 -c "print(f'{$bytes/$1/1e6:.0f}')"; }
cat <<MD
Data: $((bytes >> 20)) MiB in $files files (Go's source tree, 6 × 256 MiB, 200 × 1 MiB);
page cache dropped before each first and incremental run.

| scenario | chainfs | restic | restic / chainfs |
|---|---|---|---|
| first snapshot | ${secs[chainfs_first]} s ($(mbps ${secs[chainfs_first]}) MB/s) | ${secs[restic_first]} s ($(mbps ${secs[restic_first]}) MB/s) | $(ratio ${secs[restic_first]} ${secs[chainfs_first]}) |
| incremental, 1 % changed | ${secs[chainfs_incr]} s | ${secs[restic_incr]} s | $(ratio ${secs[restic_incr]} ${secs[chainfs_incr]}) |
| unchanged re-snapshot | ${secs[chainfs_same]} s | ${secs[restic_same]} s | $(ratio ${secs[restic_same]} ${secs[chainfs_same]}) |
| unchanged 100k-file tree | ${secs[chainfs_small_same]} s | ${secs[restic_small_same]} s | $(ratio ${secs[restic_small_same]} ${secs[chainfs_small_same]}) |
| first snapshot of the 100k-file tree | ${secs[chainfs_small_first]} s | | |
| peak RSS, first snapshot | $((rss[chainfs_first] / 1024)) MiB | $((rss[restic_first] / 1024)) MiB | |
| repository after three snapshots | $((chainfs_size >> 20)) MiB | $((restic_size >> 20)) MiB | |

Incremental / first (chainfs): $(ratio ${secs[chainfs_incr]} ${secs[chainfs_first]}).

Chain depth: restore of a 256 MiB volume from snapshot 1 and from snapshot 1000 of a
1000-deep chain in which every snapshot rewrote one block:

| | snapshot 1 | snapshot 1000 | ratio |
|---|---|---|---|
| warm (repository in the page cache; best of 3) | ${secs[warm_s1]} s | ${secs[warm_s1000]} s | $(ratio ${secs[warm_s1000]} ${secs[warm_s1]}) |
| cold | ${secs[restore_s1]} s | ${secs[restore_s1000]} s | $(ratio ${secs[restore_s1000]} ${secs[restore_s1]}) |
MD
