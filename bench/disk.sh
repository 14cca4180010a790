#!/usr/bin/env bash
# Side-by-side disk-volume benchmark in one run: snapshots of a 2 GiB disk
# image (first, and after 1 % of it changed) next to qemu-img convert of
# the same image (to qcow2, and to a sparse raw copy) and restic backup of
# it. Prints a Markdown table for docs/benchmarks.md.
#   CHAINFS=bin/chainfs bash bench/disk.sh [WORK_DIR]
# Needs root (to drop the page cache), qemu-img and restic (make
# bench-compare installs them).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
work=${1:-$(mktemp -d /var/tmp/chainfs-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
declare -A secs rss
# timed LABEL CMD...: runs CMD from a cold page cache, records elapsed
# seconds and peak RSS (KiB).
timed() {
	local label=$1
	shift
	cold
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
	read -r secs[$label] rss[$label] <"$work/time"
}

# --- data: a 2 GiB disk, 1.5 GiB written and 0.5 GiB never (a hole) ----------
img=$work/disk.img
gen disk 1536M >"$img"
truncate -s 2G "$img"
bytes=$(stat -c %s "$img")

export CHAINFS_REPO=$work/repo
"$CHAINFS" init >/dev/null
"$CHAINFS" volume add disk "$img" >/dev/null
restic init --repo "$work/restic" >/dev/null 2>&1

timed chainfs_first "$CHAINFS" snapshot create disk --name first
timed qemu_qcow2 qemu-img convert -O qcow2 "$img" "$work/copy.qcow2"
rm -f "$work/copy.qcow2"
# chainfs makes its packs durable before it commits; qemu-img leaves its
# output in the page cache. With a sync after it, both have written.
timed qemu_qcow2_sync bash -c "qemu-img convert -O qcow2 '$img' '$work/copy.qcow2' && sync"
timed qemu_raw qemu-img convert -O raw "$img" "$work/copy.raw"
timed restic_first restic --repo "$work/restic" backup --quiet "$img"
rm -f "$work/copy.qcow2" "$work/copy.raw"

# --- 1 % changed: 160 writes of 128 KiB scattered over the written part ------
for i in $(seq 0 159); do
	dd if=/dev/urandom of="$img" bs=128K count=1 seek=$((i * 76)) conv=notrunc status=none
done
timed chainfs_second "$CHAINFS" snapshot create disk --name second
timed qemu_qcow2_2 qemu-img convert -O qcow2 "$img" "$work/copy.qcow2"
timed restic_second restic --repo "$work/restic" backup --quiet "$img"
stored=$("$CHAINFS" snapshot list disk --json | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['stats']['stored_bytes'])")
repo=$(du -sB1 "$CHAINFS_REPO" | cut -f1)
restic_repo=$(du -sB1 "$work/restic" | cut -f1)

# --- report -----------------------------------------------------------------------
mbps() { python3 -c "print(f'{$bytes/1e6/${secs[$1]}:.0f}')"; }
row() { printf '| %s | %s s | %s MB/s | %s MiB |\n' "$1" "${secs[$2]}" "$(mbps "$2")" "$((rss[$2] / 1024))"; }
echo "Data: a $((bytes / 1048576)) MiB raw disk image, 1,536 MiB of it written (incompressible), the rest a hole; then 1 % (20 MiB in 160 writes of 128 KiB) changed. $(nproc) cores; cold page cache before each step; throughput over the image's size."
echo
echo "| step | time | throughput | peak RSS |"
echo "|---|---|---|---|"
row "chainfs snapshot, first" chainfs_first
row "qemu-img convert -O qcow2" qemu_qcow2
row "qemu-img convert -O qcow2, then sync" qemu_qcow2_sync
row "qemu-img convert -O raw" qemu_raw
row "restic backup, first" restic_first
row "chainfs snapshot, after 1 % changed" chainfs_second
row "qemu-img convert -O qcow2, again" qemu_qcow2_2
row "restic backup, after 1 % changed" restic_second
echo
printf 'Ratios (time of the peer / time of chainfs; above 1 = chainfs faster): first snapshot vs qemu-img convert to qcow2 %s (with sync %s), to raw %s, vs restic %s; after the change vs qemu-img %s, vs restic %s.\n' \
	"$(ratio "${secs[qemu_qcow2]}" "${secs[chainfs_first]}")" "$(ratio "${secs[qemu_qcow2_sync]}" "${secs[chainfs_first]}")" "$(ratio "${secs[qemu_raw]}" "${secs[chainfs_first]}")" \
	"$(ratio "${secs[restic_first]}" "${secs[chainfs_first]}")" "$(ratio "${secs[qemu_qcow2_2]}" "${secs[chainfs_second]}")" \
	"$(ratio "${secs[restic_second]}" "${secs[chainfs_second]}")"
printf 'The second snapshot stored %s MiB for 20 MiB changed; the repository holds %s MiB (restic: %s MiB).\n' \
	"$(python3 -c "print(f'{$stored/1048576:.1f}')")" "$((repo / 1048576))" "$((restic_repo / 1048576))"
