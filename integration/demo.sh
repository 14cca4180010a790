#!/usr/bin/env bash
# The README's first command runs this (make demo): a repository on the
# embedded default, a sample tree snapshotted twice, a restore checked
# against its source. CHAINFS is the binary, DEMO_DIR the scratch space.
set -euo pipefail
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
: "${DEMO_DIR:=/tmp/chainfs-demo}"

# A previous demo's daemon: stop it before starting again.
if mountpoint -q "$DEMO_DIR/mnt" 2>/dev/null; then
	"$CHAINFS" umount "$DEMO_DIR/mnt" || umount -l "$DEMO_DIR/mnt"
	sleep 0.5
fi
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
export CHAINFS_REPO=$DEMO_DIR/repo
src=$DEMO_DIR/source
bold=; plain=
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
say() {
	printf '\n%s$ chainfs' "$bold"
	printf ' %q' "${@:2}"
	printf '%s\n' "$plain"
	"$@"
}

# A sample tree: Go's own source tree when there is one, and a few files of
# every kind chainfs records.
mkdir -p "$src/docs" "$src/empty"
if [ -d "$(go env GOROOT 2>/dev/null)/src/net" ]; then
	cp -a "$(go env GOROOT)/src/net" "$src/go-net"
fi
head -c 20000000 /dev/urandom >"$src/big.bin"
echo "first version" >"$src/docs/notes.txt"
ln "$src/docs/notes.txt" "$src/docs/notes-hardlink.txt"
ln -s docs/notes.txt "$src/notes-symlink"
mkfifo "$src/fifo"
truncate -s 64M "$src/sparse.img"
printf 'data in the middle' | dd of="$src/sparse.img" bs=1 seek=$((32 << 20)) conv=notrunc status=none
echo "scratch, excluded by the volume's pattern" >"$src/scratch.tmp"
setfattr -n user.comment -v "kept with the file" "$src/docs/notes.txt" 2>/dev/null || true

say "$CHAINFS" init
say "$CHAINFS" volume add demo "$src" --exclude '*.tmp'
say "$CHAINFS" snapshot create demo --name first --description "the sample tree"

# Change a little: a block in the middle of the big file, a note, a new file.
printf 'CHANGED' | dd of="$src/big.bin" bs=1 seek=10000000 conv=notrunc status=none
echo "second version" >"$src/docs/notes.txt"
echo "new" >"$src/docs/added.txt"

say "$CHAINFS" snapshot create demo --name second
say "$CHAINFS" snapshot list
say "$CHAINFS" restore demo/first "$DEMO_DIR/restored-first"
say "$CHAINFS" restore demo/second/docs/notes.txt "$DEMO_DIR/notes-second.txt"

echo
echo "Checking the second snapshot's restore against the source with rsync (no output = identical):"
"$CHAINFS" restore demo/second "$DEMO_DIR/restored-second" >/dev/null
rsync -aHAXn --checksum -i --delete --exclude '*.tmp' "$src/" "$DEMO_DIR/restored-second/"
cat "$DEMO_DIR/restored-first/docs/notes.txt" | sed 's/^/first snapshot says: /'
cat "$DEMO_DIR/notes-second.txt" | sed 's/^/second snapshot says: /'

# The daemon: every snapshot, read-only, at a mount point.
mkdir -p "$DEMO_DIR/mnt"
nohup "$CHAINFS" serve --mount "$DEMO_DIR/mnt" --log-level info >"$DEMO_DIR/serve.log" 2>&1 &
for _ in $(seq 100); do [ -e "$DEMO_DIR/mnt/volumes/demo/latest" ] && break; sleep 0.1; done
say "$CHAINFS" snapshot list demo
echo
echo "The daemon (pid $!) serves every snapshot at $DEMO_DIR/mnt. Look at:"
echo "  ls -l $DEMO_DIR/mnt/volumes/demo/                 first, second, latest"
echo "  diff -r $DEMO_DIR/mnt/volumes/demo/first/docs $DEMO_DIR/mnt/volumes/demo/second/docs"
echo "  echo demo third > $DEMO_DIR/mnt/.control/snapshot   # a snapshot, through the control file"
echo "  cat $DEMO_DIR/mnt/.control/status"
echo "  export CHAINFS_REPO=$CHAINFS_REPO; $CHAINFS snapshot list   # the CLI talks to the daemon"
echo "Stop it with: $CHAINFS umount $DEMO_DIR/mnt"
