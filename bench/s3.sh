#!/usr/bin/env bash
# Repositories in buckets: chainfs and restic, each into the same MinIO,
# side by side on the same data (TREE, Go's source tree by default, and a
# file of 512 MiB of random bytes): first snapshot, unchanged, after a 1 %
# change; then, as a second host with an empty cache would, a cold
# sequential read of the big file and an `ls -lR` of the tree through each
# one's mount, and the read again. For each step: wall seconds, and the
# requests and bytes MinIO counted; at the end what a month would cost at
# public S3 prices. One run: compare the ratios.
#   CHAINFS=bin/chainfs MINIO=... bash bench/s3.sh [TREE]
# Needs root (to drop the page cache and mount), restic, curl, bc and a
# MinIO server binary (make minio builds one; make bench-s3 passes it).
set -euo pipefail
: "${CHAINFS:?set CHAINFS to the chainfs binary}"
: "${MINIO:?set MINIO to a MinIO server binary}"
tree=${1:-/usr/local/go/src}
work=$(mktemp -d /var/tmp/chainfs-bench-s3.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MINIO_ROOT_USER=benchak MINIO_ROOT_PASSWORD=bench-secret-$RANDOM MINIO_BROWSER=off MINIO_PROMETHEUS_AUTH_TYPE=public
"$MINIO" server --quiet --address "127.0.0.1:$port" "$work/minio" >"$work/minio.log" 2>&1 &
minio=$!
mounts=()
cleanup() {
	for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
	kill $minio 2>/dev/null; wait $minio 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
until curl -sf "http://127.0.0.1:$port/minio/health/cluster" >/dev/null; do sleep 0.2; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER
export AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1
export RESTIC_PASSWORD=bench CHAINFS_CONFIG=/dev/null
rr=(restic -q -r "s3:http://127.0.0.1:$port/restic-bench")

data=$work/data
mkdir -p "$data"
cp -a "$tree" "$data/tree"
head -c $((512 << 20)) /dev/urandom >"$data/big"
gib=$(du -sb "$data" | awk '{print $1 / 2^30}')

# counters prints MinIO's request counts, as S3 bills them (PUT, COPY,
# POST and LIST at one price, GET, HEAD and the rest at another, DELETE
# free), and its bytes received and sent.
counters() {
	# The v3 API's figures are current; v2's are cached for seconds.
	curl -s "http://127.0.0.1:$port/minio/metrics/v3/api/requests" | awk '
		/^minio_api_requests_total\{/ && /type="s3"/ {
			api = $0; sub(/.*name="/, "", api); sub(/".*/, "", api); api = tolower(api)
			if (api ~ /^(putobject|putobjectpart|newmultipartupload|completemultipartupload|copyobject|listobjects|listobjectsv2|listobjectversions|listbuckets|putbucket|makebucket)/) put += $NF
			else if (api !~ /^delete/) get += $NF
		}
		/^minio_api_requests_traffic_received_bytes\{/ && /type="s3"/ { rx += $NF }
		/^minio_api_requests_traffic_sent_bytes\{/ && /type="s3"/ { tx += $NF }
		END { printf "%d %d %d %d\n", put, get, rx, tx }'
}
declare -A cost_put cost_get secs
# step TOOL KEY LABEL CMD...: runs CMD, timed, and records its requests
# under TOOL/KEY.
step() {
	local tool=$1 key=$2 name=$3; shift 3
	local before after t0 t1
	read -r -a before < <(counters)
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	read -r -a after < <(counters)
	local put=$((after[0] - before[0])) get=$((after[1] - before[1]))
	local rx=$((after[2] - before[2])) tx=$((after[3] - before[3]))
	cost_put[$tool/$key]=$put
	cost_get[$tool/$key]=$get
	secs[$tool/$key]=$(echo "$t1 - $t0" | bc)
	printf '| %s | %s | %.2f s | %d | %d | %.1f MiB | %.1f MiB |\n' "$tool" "$name" "$(echo "$t1 - $t0" | bc)" \
		"$put" "$get" "$(echo "$rx / 2^20" | bc -l)" "$(echo "$tx / 2^20" | bc -l)"
}
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
change() {
	# 1 %: a line appended to every hundredth file, 5 MiB of the big file.
	find "$data/tree" -type f | awk 'NR % 100 == 0' | while read -r f; do echo "// changed" >>"$f"; done
	dd if=/dev/urandom of="$data/big" bs=1M count=5 seek=100 conv=notrunc status=none
}
waitfor() { for _ in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.2; done; echo "$1 never showed" >&2; return 1; }

cf=("$CHAINFS" --repo s3://chainfs-bench/r --cache "$work/cache-a")
echo "data: $tree ($(find "$data/tree" -type f | wc -l) files) and a 512 MiB file: $(du -sh "$data" | cut -f1)"
echo
echo "| tool | step | time | PUT/LIST | GET/HEAD | bytes in | bytes out |"
echo "|---|---|---|---|---|---|---|"
"${cf[@]}" init >/dev/null
"${cf[@]}" volume add v "$data" >/dev/null
"${rr[@]}" init >/dev/null
cold; step chainfs first first "${cf[@]}" snapshot create v --name s1
cold; step restic first first env RESTIC_CACHE_DIR="$work/restic-cache-a" "${rr[@]}" backup "$data"
step chainfs unchanged unchanged "${cf[@]}" snapshot create v --name s2
step restic unchanged unchanged env RESTIC_CACHE_DIR="$work/restic-cache-a" "${rr[@]}" backup "$data"
change
step chainfs change "1 % changed" "${cf[@]}" snapshot create v --name s3
step restic change "1 % changed" env RESTIC_CACHE_DIR="$work/restic-cache-a" "${rr[@]}" backup "$data"

# A second host: an empty cache, its mount, a cold read.
mc=$work/mnt-chainfs mr=$work/mnt-restic
mkdir -p "$mc" "$mr"
"$CHAINFS" --repo s3://chainfs-bench/r --cache "$work/cache-b" serve --mount "$mc" >"$work/serve.log" 2>&1 &
mounts+=("$mc")
waitfor "$mc/volumes/v/s3"
env RESTIC_CACHE_DIR="$work/restic-cache-b" "${rr[@]}" mount "$mr" >"$work/restic-mount.log" 2>&1 &
mounts+=("$mr")
waitfor "$mr/snapshots/latest"
rs=$mr/snapshots/latest$data
cold; step chainfs read "cold read 512 MiB" cat "$mc/volumes/v/s3/big"
cold; step restic read "cold read 512 MiB" cat "$rs/big"
cold; step chainfs ls "ls -lR" ls -lR "$mc/volumes/v/s3/tree"
cold; step restic ls "ls -lR" ls -lR "$rs/tree"
cold; step chainfs again "read again (page cache dropped)" cat "$mc/volumes/v/s3/big"
cold; step restic again "read again (page cache dropped)" cat "$rs/big"
cmp "$mc/volumes/v/s3/big" "$data/big"
cmp "$rs/big" "$data/big"

# A month: the bucket stored, one first snapshot and 29 like the 1 %
# change, at S3 Standard's public prices (us-east-1): $0.023 a GB-month,
# $0.005 per 1,000 PUT, COPY, POST or LIST, $0.0004 per 1,000 GET.
echo
echo "| tool | bucket | a month: storage | requests | in all |"
echo "|---|---|---|---|---|"
for tool in chainfs restic; do
	bucket=$([ $tool = chainfs ] && echo chainfs-bench || echo restic-bench)
	bytes=$(du -sb "$work/minio/$bucket" | cut -f1)
	put=$((${cost_put[$tool/first]} + 29 * ${cost_put[$tool/change]}))
	get=$((${cost_get[$tool/first]} + 29 * ${cost_get[$tool/change]}))
	storage=$(echo "$bytes / 10^9 * 0.023" | bc -l)
	requests=$(echo "$put / 1000 * 0.005 + $get / 1000 * 0.0004" | bc -l)
	printf '| %s | %.0f MiB | $%.4f | $%.4f | $%.4f |\n' $tool "$(echo "$bytes / 2^20" | bc -l)" "$storage" "$requests" \
		"$(echo "$storage + $requests" | bc -l)"
done
echo
printf 'data: %.2f GiB. Requests per GiB of data: ' "$gib"
for tool in chainfs restic; do
	printf '%s first snapshot %.0f, cold read %.0f (per GiB read); ' $tool \
		"$(echo "(${cost_put[$tool/first]} + ${cost_get[$tool/first]}) / $gib" | bc -l)" \
		"$(echo "(${cost_put[$tool/read]} + ${cost_get[$tool/read]}) * 2" | bc -l)"
done
echo
printf 'restic/chainfs: first snapshot %.2f, unchanged %.2f, 1 %% changed %.2f, cold read %.2f, ls -lR %.2f, read again %.2f\n' \
	"$(echo "${secs[restic/first]} / ${secs[chainfs/first]}" | bc -l)" \
	"$(echo "${secs[restic/unchanged]} / ${secs[chainfs/unchanged]}" | bc -l)" \
	"$(echo "${secs[restic/change]} / ${secs[chainfs/change]}" | bc -l)" \
	"$(echo "${secs[restic/read]} / ${secs[chainfs/read]}" | bc -l)" \
	"$(echo "${secs[restic/ls]} / ${secs[chainfs/ls]}" | bc -l)" \
	"$(echo "${secs[restic/again]} / ${secs[chainfs/again]}" | bc -l)"
