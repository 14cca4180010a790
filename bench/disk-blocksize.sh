#!/usr/bin/env bash
# The block size of disk volumes: for each candidate, what a small change
# inside an ext4 image costs to store, and how fast a 1 GiB image of
# incompressible data is read (first snapshot, cold cache). Prints a
# Markdown table for docs/benchmarks.md.
#   CHAINFS=bin/chainfs bash bench/disk-blocksize.sh [WORK_DIR]
# Needs root (loop mounts, dropping the page cache) and mkfs.ext4.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
work=${1:-$(mktemp -d /var/tmp/chainfs-bench.XXXXXX)}
trap 'umount "$work/m" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/m"
cp -a "$(go env GOROOT)/src/net" "$work/src"
mkfs.ext4 -q -d "$work/src" "$work/ext4.img" 256M
cp --sparse=always "$work/ext4.img" "$work/ext4-orig.img"
gen dense 1G >"$work/dense.img"
stat() { "$CHAINFS" snapshot list "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['stats']['$2'])"; }

echo "| block size | stored for the change | repository | 1 GiB read | RSS |"
echo "|---|---|---|---|---|"
for bs in 4K 16K 64K 128K 256K; do
	export CHAINFS_REPO=$work/repo-$bs
	"$CHAINFS" init >/dev/null
	cp --sparse=always "$work/ext4-orig.img" "$work/ext4.img"
	"$CHAINFS" volume add e "$work/ext4.img" --block-size "$bs" >/dev/null
	"$CHAINFS" snapshot create e >/dev/null
	mount -o loop "$work/ext4.img" "$work/m"
	echo "one more line" >>"$work/m/http/server.go"
	cp "$work/m/dial.go" "$work/m/dial-copy.go"
	umount "$work/m"
	"$CHAINFS" snapshot create e >/dev/null
	changed=$(stat e stored_bytes)
	"$CHAINFS" volume add d "$work/dense.img" --block-size "$bs" >/dev/null
	cold
	/usr/bin/time -f '%e %M' -o "$work/time" "$CHAINFS" snapshot create d >/dev/null
	read -r s r <"$work/time"
	printf '| %s | %s KiB | %s MiB | %s s (%s MB/s) | %s MiB |\n' "$bs" "$((changed / 1024))" \
		"$(($(du -sB1 "$CHAINFS_REPO" | cut -f1) / 1048576))" "$s" "$(python3 -c "print(f'{1073.7/$s:.0f}')")" "$((r / 1024))"
	rm -rf "$CHAINFS_REPO"
done
