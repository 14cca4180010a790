#!/usr/bin/env bash
# Encryption's cost: a first snapshot of the same tree into a plain and an
# encrypted repository (both with compression fast), and a cold read of its
# largest file through each one's mount, with the daemon's CPU. The rounds
# take the two in turn; medians of RUNS rounds. TREE is 1 GiB of
# incompressible data and Go's source tree by default.
#   CHAINFS=bin/chainfs [RUNS=3] bash bench/encrypt.sh [TREE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
CHAINFS=$(realpath "$CHAINFS")
workdir encrypt
export CHAINFS_CONFIG=/dev/null
echo bench >"$work/password"
tree=${1:-}
if [ -z "$tree" ]; then
	tree=$work/tree
	mkdir -p "$tree"
	gen encrypt $((1 << 30)) >"$tree/big.bin"
	cp -a "$(go env GOROOT)/src" "$tree/go-src"
fi
big=$(find "$tree" -type f -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2-)
tar -C "$tree" -cf - . >/dev/null
bytes=$(du -sb "$tree" | cut -f1)
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
declare -A snap snapcpu readt readcpu
for round in $(seq "${RUNS:-3}"); do
	for mode in plain encrypted; do
		repo=$work/repo-$mode
		rm -rf "$repo"
		flags=()
		[ "$mode" = encrypted ] && flags=(--encrypt)
		export CHAINFS_REPO=$repo CHAINFS_PASSWORD_FILE=$work/password
		"$CHAINFS" init "${flags[@]}" >/dev/null
		"$CHAINFS" volume add src "$tree" >/dev/null
		sync
		/usr/bin/time -f '%e %U %S' -o "$work/time" "$CHAINFS" snapshot create src --name s >/dev/null
		read -r e u s <"$work/time"
		snap[$mode]+=" $e" snapcpu[$mode]+=" $(python3 -c "print($u+$s)")"
		mkdir -p "$work/mnt"
		"$CHAINFS" serve --mount "$work/mnt" >/dev/null 2>&1 &
		daemon=$!
		for _ in $(seq 300); do [ -e "$work/mnt/volumes/src/s" ] && break; sleep 0.1; done
		cold
		c0=$(cpu "$daemon")
		start=$(date +%s.%N)
		cat "$work/mnt/volumes/src/s/$big" >/dev/null
		end=$(date +%s.%N)
		c1=$(cpu "$daemon")
		readt[$mode]+=" $(python3 -c "print($end-$start)")" readcpu[$mode]+=" $(python3 -c "print($c1-$c0)")"
		kill "$daemon"
		wait "$daemon" 2>/dev/null || true
		daemon=
	done
done
med() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
size=$(stat -c %s "$tree/$big")
echo "| repository | first snapshot (s, warm) | its CPU (s) | cold read of $big through the mount (MB/s) | daemon CPU-s per GiB read |"
echo "|---|---|---|---|---|"
for mode in plain encrypted; do
	t=$(med ${readt[$mode]})
	python3 -c "print(f'| $mode | $(med ${snap[$mode]}) | $(med ${snapcpu[$mode]}) | {$size/$t/1e6:.0f} | {$(med ${readcpu[$mode]})/($size/2**30):.2f} |')"
done
echo
echo "Medians of ${RUNS:-3} rounds, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; the tree: $(python3 -c "print(f'{$bytes/1e6:.0f}')") MB in $(find "$tree" -type f | wc -l) files."
