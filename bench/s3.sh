#!/usr/bin/env bash
# A first figure for repositories in buckets: chainfs and restic, each
# into the same MinIO, snapshot a tree (first, then unchanged), one run
# each; wall seconds.
#   CHAINFS=bin/chainfs MINIO=... bash bench/s3.sh [TREE]
# Needs root (to drop the page cache), restic and a MinIO server binary
# (make minio builds one; make bench-s3 passes it).
set -euo pipefail
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
: "${MINIO:?set MINIO to a MinIO server binary}"
src=${1:-/usr/local/go/src}
work=$(mktemp -d /var/tmp/chainfs-bench-s3.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MINIO_ROOT_USER=benchak MINIO_ROOT_PASSWORD=bench-secret-$RANDOM MINIO_BROWSER=off
"$MINIO" server --quiet --address "127.0.0.1:$port" "$work/data" >"$work/minio.log" 2>&1 &
minio=$!
trap 'kill $minio; wait $minio 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "http://127.0.0.1:$port/minio/health/cluster" >/dev/null; do sleep 0.2; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER
export AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache CHAINFS_CONFIG=/dev/null
cf=("$CHAINFS" --repo s3://chainfs-bench/r --cache "$work/cache")
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
echo "tree $src: $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files"
"${cf[@]}" init >/dev/null
"${cf[@]}" volume add v "$src" >/dev/null
sync; echo 3 >/proc/sys/vm/drop_caches
c1=$(secs "${cf[@]}" snapshot create v)
c2=$(secs "${cf[@]}" snapshot create v)
restic -q -r "s3:http://127.0.0.1:$port/restic-bench" init >/dev/null
sync; echo 3 >/proc/sys/vm/drop_caches
r1=$(secs restic -q -r "s3:http://127.0.0.1:$port/restic-bench" backup "$src")
r2=$(secs restic -q -r "s3:http://127.0.0.1:$port/restic-bench" backup "$src")
echo "| | chainfs | restic | restic/chainfs |"
echo "|---|---|---|---|"
printf '| first snapshot | %.2f s | %.2f s | %.2f |\n' "$c1" "$r1" "$(echo "$r1 / $c1" | bc -l)"
printf '| unchanged | %.2f s | %.2f s | %.2f |\n' "$c2" "$r2" "$(echo "$r2 / $c2" | bc -l)"
