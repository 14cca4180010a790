#!/usr/bin/env bash
# What a read through the mount costs the daemon, on a medium fast enough
# not to hide it: a repository on a RAM disk (ext4 on a loop device backed
# by /dev/shm) holding a 1 GiB file and the 100k-file tree. For each binary
# and run, a fresh daemon reads the file cold twice (its first read pays
# for cold metadata) and lists the tree cold and warm; the daemon's CPU
# comes from /proc (utime + stime).
#   CHAINFS=bin/chainfs [OLD=/path/to/an/older/chainfs] [RUNS=3] bash bench/read.sh
# With OLD, the two alternate run by run. Needs root. For a profile, run
# the daemon by hand with CHAINFS_CPUPROFILE=cpu.prof (docs/benchmarks.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
RUNS=${RUNS:-3}
bins=$(realpath "$CHAINFS")
[ -n "${OLD:-}" ] && bins="$(realpath "$OLD") $bins"
work=$(mktemp -d /var/tmp/chainfs-read.XXXXXX)
img=/dev/shm/chainfs-read-$$.img
cleanup() {
	mountpoint -q "$work/mnt" 2>/dev/null && umount -l "$work/mnt"
	mountpoint -q "$work/ram" 2>/dev/null && umount "$work/ram"
	rm -rf "$work" "$img"
}
trap cleanup EXIT
mkdir -p "$work/ram" "$work/mnt"
truncate -s 4G "$img"
mkfs.ext4 -q -F "$img"
mount -o loop "$img" "$work/ram"
export CHAINFS_CONFIG=/dev/null CHAINFS_REPO=$work/ram/repo
src=$work/ram/src
mkdir -p "$src/big"
gen read "$((1 << 30))" >"$src/big/big.bin"
(cd "$root" && go run ./bench/gen small "$src/small")
first=${bins##* }
"$first" init >/dev/null
"$first" volume add big "$src/big" >/dev/null
"$first" volume add small "$src/small" >/dev/null
"$first" snapshot create big --name s >/dev/null
"$first" snapshot create small --name s >/dev/null
entries=$(find "$src/small" | wc -l)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# measure PID CMD...: seconds and daemon CPU seconds, "S C"
measure() {
	local pid=$1 c0 t0
	shift
	c0=$(ticks "$pid") t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	python3 -c "print($(date +%s.%N) - $t0, ($(ticks "$pid") - $c0) / $(getconf CLK_TCK))"
}
echo "binary | read 1 (MB/s, CPU-s/GiB) | read 2 | ls -lR cold (s, µs/entry) | ls -lR warm"
for run in $(seq "$RUNS"); do
	for bin in $bins; do
		"$bin" serve --mount "$work/mnt" >/dev/null 2>"$work/serve.log" &
		pid=$!
		for _ in $(seq 100); do [ -e "$work/mnt/volumes/small/s" ] && break; sleep 0.1; done
		line="$bin"
		for _ in 1 2; do
			cold
			read -r s c < <(measure "$pid" dd if="$work/mnt/volumes/big/s/big.bin" of=/dev/null bs=1M)
			line+=" | $(python3 -c "print(f'{1073.741824 / $s:.0f} MB/s, {$c:.2f}')")"
		done
		cold
		read -r s c < <(measure "$pid" ls -lR "$work/mnt/volumes/small/s")
		line+=" | $(python3 -c "print(f'{$s:.2f} s, {$c / $entries * 1e6:.0f} µs')")"
		read -r s c < <(measure "$pid" ls -lR "$work/mnt/volumes/small/s")
		line+=" | $(python3 -c "print(f'{$s:.2f} s, {$c / $entries * 1e6:.0f} µs')")"
		umount "$work/mnt"
		wait "$pid" || true
		echo "$line"
	done
done
