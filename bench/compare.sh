#!/usr/bin/env bash
# make bench-compare: chainfs, restic, borg and go-fuse's loopback side by
# side, in one run, on the same deterministic data; prints one table of
# absolute figures and ratios and writes it into docs/benchmarks.md.
#   CHAINFS=bin/chainfs bash bench/compare.sh [WORK_DIR]
# Needs root (drop_caches, mounts), restic, borg with llfuse, Go with the
# module cache. SNAPSHOTS=N sets how many snapshots of the 100k-file tree
# are mounted for the memory figure (default 1000; about 10 minutes);
# DEPTH=N the chain depth of the Go benchmark (default 10000).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
# COMPRESSION is the chainfs repositories': off, fast (chainfs's default)
# or max; chainfs runs twice, into a plain repository and into an
# encrypted one (init --encrypt). MARKER names the section of
# docs/benchmarks.md the table goes to.
: "${COMPRESSION:=fast}" "${MARKER:=bench-compare}"
CHAINFS=$(realpath "$CHAINFS")
SNAPSHOTS=${SNAPSHOTS:-1000}
DEPTH=${DEPTH:-10000}
work=${1:-$(mktemp -d /var/tmp/chainfs-compare.XXXXXX)}
pids=()
cleanup() {
	for m in "$work"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
export CHAINFS_CONFIG=/dev/null CHAINFS_REPO=$work/chainfs-repo
# encrypted runs chainfs on the encrypted repository.
encrypted=(env CHAINFS_REPO="$work/chainfs-encrypted" CHAINFS_PASSWORD_FILE="$work/password" "$CHAINFS")
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache RESTIC_REPOSITORY=$work/restic-repo
export BORG_REPO=$work/borg-repo BORG_CACHE_DIR=$work/borg-cache BORG_CONFIG_DIR=$work/borg-config \
	BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
log() { echo "[$(date +%T)] $*" >&2; }

# timed KEY CMD...: elapsed seconds in T[KEY], peak RSS (KiB) in M[KEY].
declare -A T M
timed() {
	local key=$1
	shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
	read -r T[$key] M[$key] <"$work/time"
}
waitfor() { for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }
py() { python3 -c "$1"; }
mb() { py "print(f'{$1/1e6:.0f}')"; }      # bytes → MB
mbps() { py "print(f'{$1/$2/1e6:.0f}')"; } # bytes, seconds → MB/s
x() { py "print(f'{$1/$2:.2f}')"; }        # a / b

# --- data -----------------------------------------------------------------
log "generating data"
src=$work/src
mixed=$src/mixed small=$src/small
(cd "$root" && go run ./bench/gen mixed "$mixed" && go run ./bench/gen small "$small")
cp -a "$(go env GOROOT)/src" "$mixed/go-src"
mixed_bytes=$(du -sb "$mixed" | cut -f1)
mixed_files=$(find "$mixed" -type f | wc -l)
big=$mixed/big.bin
big_bytes=$(stat -c %s "$big")
cold
timed disk dd if="$big" of=/dev/null bs=1M   # the disk's own cold read

# --- snapshots and backups --------------------------------------------------
log "first snapshots and backups"
echo bench >"$work/password"
"$CHAINFS" init --compression "$COMPRESSION" >/dev/null
"${encrypted[@]}" init --compression "$COMPRESSION" --encrypt >/dev/null
"$CHAINFS" volume add mixed "$mixed" >/dev/null
"$CHAINFS" volume add small "$small" >/dev/null
"${encrypted[@]}" volume add mixed "$mixed" >/dev/null
"${encrypted[@]}" volume add small "$small" >/dev/null
restic init >/dev/null 2>&1
borg init --encryption=none >/dev/null 2>&1
cold; timed chainfs-first "$CHAINFS" snapshot create mixed --name first
cold; timed enc-first "${encrypted[@]}" snapshot create mixed --name first
cold; timed restic-first restic backup --quiet "$mixed"
cold; timed borg-first borg create "::first" "$mixed"

read -r changed_files changed_bytes < <(cd "$root" && go run ./bench/gen change "$mixed")
log "incremental after $changed_files files, $changed_bytes bytes changed"
cold; timed chainfs-incr "$CHAINFS" snapshot create mixed --name second
cold; timed enc-incr "${encrypted[@]}" snapshot create mixed --name second
cold; timed restic-incr restic backup --quiet "$mixed"
cold; timed borg-incr borg create "::second" "$mixed"

log "unchanged"
timed chainfs-same "$CHAINFS" snapshot create mixed --name third
timed enc-same "${encrypted[@]}" snapshot create mixed --name third
timed restic-same restic backup --quiet "$mixed"
timed borg-same borg create "::third" "$mixed"

log "100k-file tree"
cold; timed chainfs-smallfirst "$CHAINFS" snapshot create small --name first
cold; timed enc-smallfirst "${encrypted[@]}" snapshot create small --name first
cold; timed restic-smallfirst restic backup --quiet "$small"
cold; timed borg-smallfirst borg create "::small-first" "$small"
timed chainfs-smallsame "$CHAINFS" snapshot create small --name second
timed enc-smallsame "${encrypted[@]}" snapshot create small --name second
timed restic-smallsame restic backup --quiet "$small"
timed borg-smallsame borg create "::small-second" "$small"
declare -A SIZE
SIZE[chainfs]=$(du -sB1 "$CHAINFS_REPO" | cut -f1)
SIZE[enc]=$(du -sB1 "$work/chainfs-encrypted" | cut -f1)
SIZE[restic]=$(du -sB1 "$RESTIC_REPOSITORY" | cut -f1)
SIZE[borg]=$(du -sB1 "$BORG_REPO" | cut -f1)
# A tree of 400,000 files, chainfs alone, before a daemon runs (a
# snapshot through a daemon is the daemon's work, not the command's).
log "a tree of 400,000 files"
big400=$src/big400
for i in 1 2 3 4; do (cd "$root" && go run ./bench/gen small "$big400/p$i"); done
"$CHAINFS" volume add big400 "$big400" >/dev/null
cold; timed chainfs-400first "$CHAINFS" snapshot create big400 --name first
cold; timed chainfs-400same "$CHAINFS" snapshot create big400 --name second

# --- mounts -------------------------------------------------------------------
log "mounting"
mkdir -p "$work"/mnt-chainfs "$work"/mnt-enc "$work"/mnt-restic "$work"/mnt-borg "$work"/mnt-loop
"$CHAINFS" serve --mount "$work/mnt-chainfs" >/dev/null 2>"$work/chainfs.log" & pids+=($!)
chainfs_pid=$!
"${encrypted[@]}" serve --mount "$work/mnt-enc" >/dev/null 2>"$work/enc.log" & pids+=($!)
enc_pid=$!
waitfor "$work/mnt-chainfs/volumes/small/second"
waitfor "$work/mnt-enc/volumes/small/second"
restic mount --allow-other=false "$work/mnt-restic" >/dev/null 2>&1 & pids+=($!)
restic_pid=$!
waitfor "$work/mnt-restic/ids"
borg mount -f "$BORG_REPO" "$work/mnt-borg" >/dev/null 2>&1 & pids+=($!)
borg_pid=$!
waitfor "$work/mnt-borg/third"
(cd "$root" && go build -o "$work/loopback" github.com/hanwen/go-fuse/v2/example/loopback)
"$work/loopback" -q -directmount "$work/mnt-loop" "$src" & pids+=($!)
loop_pid=$!
waitfor "$work/mnt-loop/small"
restic_id() { restic snapshots --json --path "$1" | py "import json,sys; print(json.load(sys.stdin)[-1]['short_id'])"; }
declare -A MIXED SMALL PID
MIXED[chainfs]=$work/mnt-chainfs/volumes/mixed/third
SMALL[chainfs]=$work/mnt-chainfs/volumes/small/second
MIXED[enc]=$work/mnt-enc/volumes/mixed/third
SMALL[enc]=$work/mnt-enc/volumes/small/second
MIXED[restic]=$work/mnt-restic/ids/$(restic_id "$mixed")$mixed
SMALL[restic]=$work/mnt-restic/ids/$(restic_id "$small")$small
MIXED[borg]=$work/mnt-borg/third$mixed
SMALL[borg]=$work/mnt-borg/small-second$small
MIXED[loop]=$work/mnt-loop/mixed
SMALL[loop]=$work/mnt-loop/small
PID[chainfs]=$chainfs_pid PID[enc]=$enc_pid PID[restic]=$restic_pid PID[borg]=$borg_pid PID[loop]=$loop_pid
tools="chainfs enc restic borg loop"

# cputimed KEY PID CMD...: timed, and the CPU seconds process PID (a
# mount's daemon) spent meanwhile in C[KEY].
declare -A C
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cputimed() {
	local key=$1 pid=$2 before
	shift 2
	before=$(ticks "$pid")
	timed "$key" "$@"
	C[$key]=$(py "print(($(ticks "$pid") - $before) / $(getconf CLK_TCK))")
}

# reads TOOL KEY DIR PID: the read scenarios through a mount of the mixed
# tree at DIR, served by PID, under TOOL-KEY-*.
reads() {
	local t=$1 k=$2 dir=$3 pid=$4
	cold; cputimed "$t-${k}cold" "$pid" dd if="$dir/big.bin" of=/dev/null bs=1M
	cat "$dir/big.bin" >/dev/null
	cputimed "$t-${k}warm" "$pid" bash -c "for i in 1 2 3 4 5; do dd if='$dir/big.bin' of=/dev/null bs=1M status=none; done"
	cold; cputimed "$t-${k}tar" "$pid" bash -c "cd '$dir' && tar cf - . | wc -c"
	rm -rf "$work/rsync-$t"
	cold; cputimed "$t-${k}rsync1" "$pid" rsync -a "$dir/" "$work/rsync-$t/"
}

for t in $tools; do
	log "reading through the $t mount"
	cold; cputimed "$t-ls" "${PID[$t]}" ls -lR "${SMALL[$t]}"
	cputimed "$t-lswarm" "${PID[$t]}" ls -lR "${SMALL[$t]}"
	reads "$t" "" "${MIXED[$t]}" "${PID[$t]}"
	timed "$t-rsync2" rsync -a "${MIXED[$t]}/" "$work/rsync-$t/"
	rm -rf "$work/rsync-$t"
	M[$t-mount]=$(ps -o rss= -p "${PID[$t]}" | tr -d ' ')
done
for t in chainfs enc; do
	diff -rq "$mixed" "${MIXED[$t]}" >/dev/null || { echo "the $t mount differs from the source" >&2; exit 1; }
done
umount "$work/mnt-enc"
wait "$enc_pid" 2>/dev/null || true

# --- the same reads from a RAM disk ----------------------------------------------
# A slow disk hides the CPU a read costs: chainfs's repository and the
# loopback's source are copied to an ext4 file system on a loop device
# backed by memory, whose page cache is dropped like the disk's.
log "reading from a RAM disk"
ram=$work/ram
ram_size=$(( ($(du -sb "$CHAINFS_REPO" | cut -f1) + mixed_bytes) * 12 / 10 + (512 << 20) ))
mkdir -p "$ram" /dev/shm/chainfs-bench
truncate -s "$ram_size" /dev/shm/chainfs-bench/ext4.img
mkfs.ext4 -q -F /dev/shm/chainfs-bench/ext4.img
mount -o loop /dev/shm/chainfs-bench/ext4.img "$ram"
ramdone() {
	mountpoint -q "$ram" && umount "$ram"
	rm -rf /dev/shm/chainfs-bench
}
trap 'ramdone; cleanup' EXIT
cp -a "$CHAINFS_REPO" "$ram/chainfs-repo"
cp -a "$mixed" "$ram/mixed"
mkdir -p "$work/mnt-chainfs-ram" "$work/mnt-loop-ram"
CHAINFS_REPO=$ram/chainfs-repo "$CHAINFS" serve --mount "$work/mnt-chainfs-ram" >/dev/null 2>"$work/chainfs-ram.log" & pids+=($!)
ram_chainfs=$!
"$work/loopback" -q -directmount "$work/mnt-loop-ram" "$ram/mixed" & pids+=($!)
ram_loop=$!
waitfor "$work/mnt-chainfs-ram/volumes/mixed/third/big.bin"
waitfor "$work/mnt-loop-ram/big.bin"
cold; timed ram-disk dd if="$ram/mixed/big.bin" of=/dev/null bs=1M
reads chainfs ram "$work/mnt-chainfs-ram/volumes/mixed/third" "$ram_chainfs"
reads loop ram "$work/mnt-loop-ram" "$ram_loop"
rm -rf "$work"/rsync-*
umount "$work/mnt-chainfs-ram" "$work/mnt-loop-ram"
wait "$ram_chainfs" "$ram_loop" 2>/dev/null || true
ramdone

# --- the daemon with many snapshots of the 100k-file tree -------------------------
log "$SNAPSHOTS snapshots of the 100k-file tree through the control directory"
for i in $(seq 3 "$SNAPSHOTS"); do echo "small s$i" >"$work/mnt-chainfs/.control/snapshot"; done
timed list ls "$work/mnt-chainfs/volumes/small"
ls -lR "$work/mnt-chainfs/volumes/small/$(ls "$work/mnt-chainfs/volumes/small" | grep -v latest | tail -1)" >/dev/null
rss_many=$(ps -o rss= -p "$chainfs_pid" | tr -d ' ')
n_snaps=$(ls "$work/mnt-chainfs/volumes/small" | grep -vc latest)

# --- listing the tree of 400,000 files --------------------------------------------
log "listing 400,000 files"
cold; cputimed chainfs-400ls "$chainfs_pid" ls -lR "$work/mnt-chainfs/volumes/big400/second"
cputimed chainfs-400lswarm "$chainfs_pid" ls -lR "$work/mnt-chainfs/volumes/big400/second"
rss_400=$(ps -o rss= -p "$chainfs_pid" | tr -d ' ')
cold; timed native-400ls ls -lR "$big400"
timed native-400lswarm ls -lR "$big400"
big400_entries=$(find "$big400" | wc -l)

# --- chain depth (Go benchmark) -----------------------------------------------------
log "chain depth $DEPTH (Go benchmark)"
(cd "$root" && CHAINFS_BENCH_DIR=$work CHAINFS_BENCH_DEPTH=$DEPTH go test -timeout 60m -run '^$' -bench ChainDepth -benchtime 20x ./store/) >"$work/depth.txt" ||
	{ tail -40 "$work/depth.txt" >&2; exit 1; } # the work directory goes with the script
ns() { awk -v n="BenchmarkChainDepth/$1-" 'index($1, n) == 1 { print $3 / 1e6 }' "$work/depth.txt"; }

# --- the table ------------------------------------------------------------------------
tsec() { echo "${T[$1]} s"; }
row() { printf '|'; printf ' %s |' "$@"; echo; }
# The first table's columns: chainfs, chainfs encrypted, restic, borg,
# loopback, then restic / chainfs, restic / encrypted, borg / chainfs,
# loopback / chainfs, and loopback / encrypted.
speedrow() { # label bytes key: MB/s for every tool, ratios chainfs/peer
	local label=$1 bytes=$2 key=$3
	row "$label" "$(mbps "$bytes" "${T[chainfs-$key]}") MB/s" "$(mbps "$bytes" "${T[enc-$key]}") MB/s" "$(mbps "$bytes" "${T[restic-$key]}") MB/s" \
		"$(mbps "$bytes" "${T[borg-$key]}") MB/s" "$(mbps "$bytes" "${T[loop-$key]}") MB/s" \
		"$(x "${T[restic-$key]}" "${T[chainfs-$key]}")" "$(x "${T[restic-$key]}" "${T[enc-$key]}")" "$(x "${T[borg-$key]}" "${T[chainfs-$key]}")" \
		"$(x "${T[loop-$key]}" "${T[chainfs-$key]}")" "$(x "${T[loop-$key]}" "${T[enc-$key]}")"
}
timerow() { # label key [loop]: seconds for every tool, ratios peer/chainfs
	local label=$1 key=$2 loop=${3:-}
	local l="" lr="" le=""
	[ -n "$loop" ] && l=$(tsec "loop-$key") lr=$(x "${T[loop-$key]}" "${T[chainfs-$key]}") le=$(x "${T[loop-$key]}" "${T[enc-$key]}")
	row "$label" "$(tsec "chainfs-$key")" "$(tsec "enc-$key")" "$(tsec "restic-$key")" "$(tsec "borg-$key")" "$l" \
		"$(x "${T[restic-$key]}" "${T[chainfs-$key]}")" "$(x "${T[restic-$key]}" "${T[enc-$key]}")" "$(x "${T[borg-$key]}" "${T[chainfs-$key]}")" "$lr" "$le"
}
cpurow() { # label key bytes: daemon CPU seconds per GiB for every tool
	local label=$1 key=$2 bytes=$3 t out=()
	for t in $tools; do out+=("$(py "print(f'{${C[$t-$key]} / ($bytes / 2**30):.2f} s')")"); done
	row "$label" "${out[@]}" "" "" "" "" ""
}
us() { py "print(f'{${C[$1]} / $small_entries * 1e6:.0f} µs')"; } # daemon CPU per entry listed
small_entries=$(find "$small" | wc -l)
ramrow() { # label key bytes: MB/s and CPU per GiB, chainfs and loopback from the RAM disk
	local label=$1 key=$2 bytes=$3
	local c=$(py "print(f'{${C[chainfs-ram$key]} / ($bytes / 2**30):.2f}')") l=$(py "print(f'{${C[loop-ram$key]} / ($bytes / 2**30):.2f}')")
	row "$label" "$(mbps "$bytes" "${T[chainfs-ram$key]}") MB/s, $c CPU-s/GiB" "$(mbps "$bytes" "${T[loop-ram$key]}") MB/s, $l CPU-s/GiB" \
		"$(x "${T[loop-ram$key]}" "${T[chainfs-ram$key]}")"
}
table=$work/table.md
{
	echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, $(($(awk '/MemTotal/ {print $2}' /proc/meminfo) >> 20)) GiB,"
	echo "Linux $(uname -r), $(findmnt -n -o FSTYPE -T "$work") on $(findmnt -n -o SOURCE -T "$work"); the disk reads big.bin cold at $(mbps "$big_bytes" "${T[disk]}") MB/s."
	echo "chainfs $("$CHAINFS" --version | awk '{print $3, $4}'), $(restic version | cut -d' ' -f1-2), $(borg --version), go-fuse loopback $(cd "$root" && go list -m -f '{{.Version}}' github.com/hanwen/go-fuse/v2), $(go version | cut -d' ' -f3)."
	echo "Data: $(mb "$mixed_bytes") MB in $mixed_files files (a 1 GiB file, 8 × 64 MiB, 9,000 files of 4-128 KiB, Go's"
	echo "source tree), and a tree of 100,000 files of 100-3,100 bytes; the change: $changed_files files, $(mb "$changed_bytes") MB."
	echo "Page cache dropped before every first, incremental and cold figure. chainfs with compression $COMPRESSION; restic compresses"
	echo "(auto: zstd's fastest) and always encrypts; borg 1.2 with --encryption=none and its default lz4. chainfs encrypted:"
	echo "a second repository, made with init --encrypt and the same compression, served by a second daemon. The RAM-disk"
	echo "table, the 400,000-file tree, the many snapshots and the chain depth are the plain repository's alone."
	echo
	row "scenario" "chainfs" "chainfs encrypted" "restic" "borg" "loopback" "restic / chainfs" "restic / encrypted" "borg / chainfs" "loopback / chainfs" "loopback / encrypted"
	row "---" "---" "---" "---" "---" "---" "---" "---" "---" "---" "---"
	first() { echo "$(tsec "$1-first") ($(mbps "$mixed_bytes" "${T[$1-first]}") MB/s)"; }
	row "first snapshot (MB/s over the data)" "$(first chainfs)" "$(first enc)" "$(first restic)" "$(first borg)" "" \
		"$(x "${T[restic-first]}" "${T[chainfs-first]}")" "$(x "${T[restic-first]}" "${T[enc-first]}")" "$(x "${T[borg-first]}" "${T[chainfs-first]}")" "" ""
	timerow "incremental after the 1 % change" incr
	row "incremental / first" "$(x "${T[chainfs-incr]}" "${T[chainfs-first]}")" "$(x "${T[enc-incr]}" "${T[enc-first]}")" "$(x "${T[restic-incr]}" "${T[restic-first]}")" "$(x "${T[borg-incr]}" "${T[borg-first]}")" "" "" "" "" "" ""
	timerow "unchanged re-snapshot" same
	timerow "first snapshot of the 100k-file tree" smallfirst
	timerow "unchanged 100k-file tree" smallsame
	row "peak RSS, first snapshot" "$((M[chainfs-first] >> 10)) MiB" "$((M[enc-first] >> 10)) MiB" "$((M[restic-first] >> 10)) MiB" "$((M[borg-first] >> 10)) MiB" "" "" "" "" "" ""
	row "repository after all of the above" "$((SIZE[chainfs] >> 20)) MiB" "$((SIZE[enc] >> 20)) MiB" "$((SIZE[restic] >> 20)) MiB" "$((SIZE[borg] >> 20)) MiB" "" \
		"$(x "${SIZE[restic]}" "${SIZE[chainfs]}")" "$(x "${SIZE[restic]}" "${SIZE[enc]}")" "$(x "${SIZE[borg]}" "${SIZE[chainfs]}")" "" ""
	timerow "ls -lR of 100k files through the mount, cold" ls loop
	speedrow "sequential read of 1 GiB through the mount, cold" "$big_bytes" cold
	speedrow "the same, warm (5 re-reads)" "$((5 * big_bytes))" warm
	speedrow "every file through the mount (tar cf - . \| wc -c), cold" "$mixed_bytes" tar
	timerow "rsync -a from the mount, first" rsync1 loop
	timerow "rsync -a from the mount, again (nothing to copy)" rsync2 loop
	cpurow "daemon CPU per GiB read, cold" cold "$big_bytes"
	cpurow "daemon CPU per GiB read, warm" warm "$((5 * big_bytes))"
	cpurow "daemon CPU per GiB read, every file (tar), cold" tar "$mixed_bytes"
	timerow "ls -lR of 100k files through the mount, warm" lswarm loop
	row "daemon CPU per entry listed (ls -lR), cold / warm" "$(us chainfs-ls) / $(us chainfs-lswarm)" "$(us enc-ls) / $(us enc-lswarm)" "$(us restic-ls) / $(us restic-lswarm)" \
		"$(us borg-ls) / $(us borg-lswarm)" "$(us loop-ls) / $(us loop-lswarm)" "" "" "" "" ""
	row "mount's RSS after the reads" "$((M[chainfs-mount] >> 10)) MiB" "$((M[enc-mount] >> 10)) MiB" "$((M[restic-mount] >> 10)) MiB" "$((M[borg-mount] >> 10)) MiB" "$((M[loop-mount] >> 10)) MiB" "" "" "" "" ""
	echo
	echo "The same reads with chainfs's repository and the loopback's source on a RAM disk (ext4 on a loop device"
	echo "backed by memory, page cache dropped before each cold read; it reads big.bin cold at $(mbps "$big_bytes" "${T[ram-disk]}") MB/s):"
	echo
	row "scenario" "chainfs" "loopback" "loopback / chainfs"
	row "---" "---" "---" "---"
	ramrow "sequential read of 1 GiB through the mount, cold" cold "$big_bytes"
	ramrow "the same, warm (5 re-reads)" warm "$((5 * big_bytes))"
	ramrow "every file through the mount (tar), cold" tar "$mixed_bytes"
	row "rsync -a from the mount, first" "$(tsec chainfs-ramrsync1)" "$(tsec loop-ramrsync1)" "$(x "${T[loop-ramrsync1]}" "${T[chainfs-ramrsync1]}")"
	echo
	echo "Ratios: above 1, chainfs is faster (or smaller). With $n_snaps snapshots of the 100k-file tree mounted, listing"
	echo "them took ${T[list]} s, and after walking the newest the daemon's RSS was $((rss_many >> 10)) MiB."
	echo
	echo "A tree of $big400_entries entries (four of the 100k-file trees), on the disk: chainfs's first snapshot took ${T[chainfs-400first]} s"
	echo "at $((M[chainfs-400first] >> 10)) MiB peak RSS, an unchanged one ${T[chainfs-400same]} s at $((M[chainfs-400same] >> 10)) MiB. \`ls -lR\` of it through the"
	echo "daemon's mount took ${T[chainfs-400ls]} s cold and ${T[chainfs-400lswarm]} s warm ($(py "print(f'{${C[chainfs-400ls]} / $big400_entries * 1e6:.0f} / {${C[chainfs-400lswarm]} / $big400_entries * 1e6:.0f}')") µs of daemon CPU per entry),"
	echo "ext4 itself ${T[native-400ls]} s and ${T[native-400lswarm]} s ($(x "${T[chainfs-400ls]}" "${T[native-400ls]}")× and $(x "${T[chainfs-400lswarm]}" "${T[native-400lswarm]}")×); the daemon's RSS after: $((rss_400 >> 10)) MiB."
	echo
	echo "Chain depth (\`go test -bench ChainDepth ./store/\`, a 16 MiB file of 64 KiB blocks, every snapshot rewriting one block; ms per read of the file):"
	echo
	row "" "depth 1" "depth $DEPTH, newest, no daemon" "ratio" "newest, the daemon's merges" "ratio" "newest after gc" "ratio after gc"
	row "---" "---" "---" "---" "---" "---" "---" "---"
	for temp in warm cold; do
		a=$(ns "depth=1/$temp") b=$(ns "depth=$DEPTH/last/$temp") m=$(ns "depth=$DEPTH/last/merged/$temp") c=$(ns "depth=$DEPTH/last/after-gc/$temp")
		row "$temp" "$a" "$b" "$(x "$b" "$a")" "$m" "$(x "$m" "$a")" "$c" "$(x "$c" "$a")"
	done
	echo
	echo "Goals:"
	ok() { py "print('met' if $1 else 'not met')"; }
	gib_cpu=$(py "print(f'{${C[chainfs-cold]} / ($big_bytes / 2**30):.2f}')") ram_cpu=$(py "print(f'{${C[chainfs-ramcold]} / ($big_bytes / 2**30):.2f}')")
	echo "- cold read ≥ 0.8× loopback: $(ok "${T[loop-cold]}/${T[chainfs-cold]} >= 0.8") ($(x "${T[loop-cold]}" "${T[chainfs-cold]}"); from the RAM disk $(x "${T[loop-ramcold]}" "${T[chainfs-ramcold]}")); ≤ 0.7 daemon CPU-s per GiB: $(ok "$gib_cpu <= 0.7 and $ram_cpu <= 0.7") ($gib_cpu, from the RAM disk $ram_cpu); ≥ 5× restic mount: $(ok "${T[restic-cold]}/${T[chainfs-cold]} >= 5") ($(x "${T[restic-cold]}" "${T[chainfs-cold]}"))"
	echo "- warm read ≥ 0.9× loopback: $(ok "${T[loop-warm]}/${T[chainfs-warm]} >= 0.9") ($(x "${T[loop-warm]}" "${T[chainfs-warm]}"); from the RAM disk $(x "${T[loop-ramwarm]}" "${T[chainfs-ramwarm]}"))"
	echo "- tar and first rsync ≥ 0.8× loopback: $(ok "${T[loop-tar]}/${T[chainfs-tar]} >= 0.8 and ${T[loop-rsync1]}/${T[chainfs-rsync1]} >= 0.8") ($(x "${T[loop-tar]}" "${T[chainfs-tar]}"), $(x "${T[loop-rsync1]}" "${T[chainfs-rsync1]}"))"
	echo "- ls -lR ≤ 1.5× loopback: $(ok "${T[chainfs-ls]}/${T[loop-ls]} <= 1.5") ($(x "${T[chainfs-ls]}" "${T[loop-ls]}")); warm $(x "${T[chainfs-lswarm]}" "${T[loop-lswarm]}")"
	echo "- first snapshot ≥ 3× restic: $(ok "${T[restic-first]}/${T[chainfs-first]} >= 3") ($(x "${T[restic-first]}" "${T[chainfs-first]}")); incremental ≤ 10 % of first: $(ok "${T[chainfs-incr]}/${T[chainfs-first]} <= 0.1") ($(x "${T[chainfs-incr]}" "${T[chainfs-first]}")); unchanged 100k-file tree < 1 s: $(ok "${T[chainfs-smallsame]} < 1") (${T[chainfs-smallsame]} s)"
	mw=$(x "$(ns "depth=$DEPTH/last/merged/warm")" "$(ns depth=1/warm)") mc=$(x "$(ns "depth=$DEPTH/last/merged/cold")" "$(ns depth=1/cold)")
	echo "- depth $DEPTH vs 1 with the daemon's merges ≤ 1.1 warm, ≤ 1.2 cold: $(ok "$mw <= 1.1 and $mc <= 1.2") (warm $mw, cold $mc); no daemon: warm $(x "$(ns "depth=$DEPTH/last/warm")" "$(ns depth=1/warm)"), cold $(x "$(ns "depth=$DEPTH/last/cold")" "$(ns depth=1/cold)"); after gc warm $(x "$(ns "depth=$DEPTH/last/after-gc/warm")" "$(ns depth=1/warm)"), cold $(x "$(ns "depth=$DEPTH/last/after-gc/cold")" "$(ns depth=1/cold)")"
	echo "- 400k entries: snapshot peak RSS ≤ 256 MiB: $(ok "${M[chainfs-400first]} <= 262144 and ${M[chainfs-400same]} <= 262144") ($((M[chainfs-400first] >> 10)), $((M[chainfs-400same] >> 10)) MiB); ls -lR ≤ 3× native cold, ≤ 2× warm: $(ok "${T[chainfs-400ls]} <= 3 * ${T[native-400ls]} and ${T[chainfs-400lswarm]} <= 2 * ${T[native-400lswarm]}"); daemon ≤ 256 MiB: $(ok "$rss_400 <= 262144")"
	enc_cpu=$(py "print(f'{${C[enc-cold]} / ($big_bytes / 2**30):.2f}')")
	echo "- encrypted: first snapshot ≥ 2.5× restic: $(ok "${T[restic-first]}/${T[enc-first]} >= 2.5") ($(x "${T[restic-first]}" "${T[enc-first]}")); cold read ≥ 0.7× loopback: $(ok "${T[loop-cold]}/${T[enc-cold]} >= 0.7") ($(x "${T[loop-cold]}" "${T[enc-cold]}"), at $enc_cpu daemon CPU-s per GiB)"
	echo "- daemon RSS with $n_snaps snapshots of the 100k-file tree ≤ 256 MiB: $(ok "$rss_many <= 262144") ($((rss_many >> 10)) MiB)"
} >"$table"
cat "$table"

# intoDoc MARKER FILE puts FILE into docs/benchmarks.md, between
# <!-- MARKER --> and <!-- /MARKER -->.
doc=$root/docs/benchmarks.md
intoDoc() {
	py "
import re
doc = open('$doc').read()
table = open('$2').read()
new = re.sub(r'(<!-- $1 -->\n).*?(<!-- /$1 -->)', lambda m: m.group(1) + table + m.group(2), doc, flags=re.S)
open('$doc', 'w').write(new)
"
}
intoDoc "$MARKER" "$table"
log "table written to docs/benchmarks.md"

# Object storage: chainfs and restic into one MinIO (bench/s3.sh).
if [ -n "${MINIO:-}" ]; then
	s3table=$work/s3-table.md
	CHAINFS=$CHAINFS MINIO=$MINIO bash "$root/bench/s3.sh" >"$s3table"
	cat "$s3table"
	intoDoc bench-s3 "$s3table"
	log "object storage table written to docs/benchmarks.md"
fi
