#!/usr/bin/env bash
# Side-by-side image benchmarks in one run: chainfs image export/import
# and volume add --from-image, next to borg export-tar / import-tar,
# restic dump, and GNU tar and cp -a on the same data as the ceiling.
# Prints a Markdown table for docs/benchmarks.md.
#   CHAINFS=bin/chainfs bash bench/image.sh [WORK_DIR]
# Needs root (to drop the page cache between runs), restic and borg
# (make bench-compare installs them).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
work=${1:-$(mktemp -d /var/tmp/chainfs-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
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
# timed_sh LABEL SCRIPT: the same for a shell pipeline.
timed_sh() { timed "$1" bash -c "$2"; }

# --- data: a 1 GiB file and Go's source tree ---------------------------------
data=$work/data
mkdir -p "$data"
gen big 1G >"$data/big.bin"
cp -a "$(go env GOROOT)/src" "$data/go-src"
bytes=$(du -sb "$data" | cut -f1)
files=$(find "$data" -type f | wc -l)

export CHAINFS_REPO=$work/repo
"$CHAINFS" init >/dev/null
"$CHAINFS" volume add data "$data" >/dev/null
"$CHAINFS" snapshot create data --name s >/dev/null
"$CHAINFS" image create img --from data/s >/dev/null
borg init --encryption=none "$work/borg" >/dev/null 2>&1
(cd "$work" && borg create "$work/borg::s" data >/dev/null 2>&1)
restic init --repo "$work/restic" >/dev/null 2>&1
(cd "$work" && restic --repo "$work/restic" backup --quiet data >/dev/null)

# --- export ---------------------------------------------------------------------
timed chainfs_native "$CHAINFS" image export img "$work/img.native"
timed chainfs_tar "$CHAINFS" image export img "$work/img.tar" --format tar
timed_sh borg_tar "cd $work && borg export-tar $work/borg::s $work/borg.tar"
timed_sh restic_tar "restic --repo $work/restic dump --archive tar latest / > $work/restic.tar"
timed gnu_tar tar -C "$data" --sparse -cf "$work/gnu.tar" .

# --- import into empty repositories ---------------------------------------------
timed chainfs_import_native env CHAINFS_REPO="$work/r-native" bash -c "'$CHAINFS' init && '$CHAINFS' image import x '$work/img.native'"
timed chainfs_import_tar env CHAINFS_REPO="$work/r-tar" bash -c "'$CHAINFS' init && '$CHAINFS' image import x '$work/img.tar'"
borg init --encryption=none "$work/borg2" >/dev/null 2>&1
timed borg_import borg import-tar "$work/borg2::x" "$work/img.tar"
mkdir -p "$work/gnu-x"
timed gnu_untar tar -C "$work/gnu-x" -xpf "$work/img.tar"

# --- a new volume from the image, against copying the tree ------------------------
timed chainfs_volume "$CHAINFS" volume add nv "$work/nv" --from-image img
timed cp_a cp -a "$data" "$work/cp"
timed_sh borg_extract "mkdir -p $work/bx && cd $work/bx && borg extract $work/borg::s"

# --- report -------------------------------------------------------------------------
mbps() { python3 -c "print(f'{$bytes/1e6/${secs[$1]}:.0f}')"; }
row() { printf '| %s | %s s | %s MB/s | %s MiB |\n' "$1" "${secs[$2]}" "$(mbps "$2")" "$((rss[$2] / 1024))"; }
echo "Data: $((bytes / 1048576)) MiB in $files files (a 1 GiB file and Go's source tree); $(nproc) cores; cold page cache before each step."
echo
echo "| step | time | throughput | peak RSS |"
echo "|---|---|---|---|"
row "chainfs image export (native)" chainfs_native
row "chainfs image export --format tar" chainfs_tar
row "borg export-tar" borg_tar
row "restic dump --archive tar" restic_tar
row "GNU tar -c of the source (ceiling)" gnu_tar
row "chainfs image import (native, empty repository)" chainfs_import_native
row "chainfs image import (tar, empty repository)" chainfs_import_tar
row "borg import-tar (empty repository)" borg_import
row "GNU tar -x of the tar (ceiling)" gnu_untar
row "chainfs volume add --from-image" chainfs_volume
row "borg extract" borg_extract
row "cp -a of the source (ceiling)" cp_a
echo
printf 'Ratios (time of the peer / time of chainfs; above 1 = chainfs faster): export tar vs borg %s, vs restic %s, vs GNU tar %s; import tar vs borg %s; volume from image vs borg extract %s, vs cp -a %s.\n' \
	"$(ratio "${secs[borg_tar]}" "${secs[chainfs_tar]}")" "$(ratio "${secs[restic_tar]}" "${secs[chainfs_tar]}")" \
	"$(ratio "${secs[gnu_tar]}" "${secs[chainfs_tar]}")" "$(ratio "${secs[borg_import]}" "${secs[chainfs_import_tar]}")" \
	"$(ratio "${secs[borg_extract]}" "${secs[chainfs_volume]}")" "$(ratio "${secs[cp_a]}" "${secs[chainfs_volume]}")"
printf 'Sizes: native %s MiB, chainfs tar %s MiB, borg tar %s MiB, restic tar %s MiB, GNU tar %s MiB.\n' \
	"$(($(stat -c %s "$work/img.native") / 1048576))" "$(($(stat -c %s "$work/img.tar") / 1048576))" \
	"$(($(stat -c %s "$work/borg.tar") / 1048576))" "$(($(stat -c %s "$work/restic.tar") / 1048576))" \
	"$(($(stat -c %s "$work/gnu.tar") / 1048576))"
