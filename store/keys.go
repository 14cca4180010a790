package store

import (
	"encoding/binary"
	"fmt"
)

// The badger key schema. Every key starts with a one-byte prefix; integers
// are big-endian so that keys sort numerically; hashes are 32 raw bytes.
// docs/format.md describes the values.
const (
	prefixMeta     = 'm' // m name                         → value (schema version, ...)
	prefixCounter  = 'c' // c name                         → u64 last allocated id
	prefixVolume   = 'v' // v name                         → volumeRecord (JSON)
	prefixSnapshot = 's' // s volID:8 seq:8                → snapshotRecord (JSON)
	prefixSnapName = 'n' // n volID:8 name                 → seq:8
	prefixBlock    = 'b' // b hash:32                      → blockRecord (binary)
	prefixTree     = 't' // t hash:32                      → tree or content-list blob
	prefixDelta    = 'd' // d volID:8 seq:8 hash:32        → deltaRecord (binary)
	prefixInterval = 'i' // i volID:8 hash:32 start:8      → intervalRecord (binary)
	prefixPack     = 'p' // p packID:8                     → packRecord (binary)
	prefixPolicy   = 'o' // o name                         → policy.Policy (JSON), through Records
	prefixLease    = 'l' // l name                         → leaseRecord (JSON), in a bucket only (lease.go)
	prefixMarket   = 'k' // k name                         → market.Subscription (JSON), through Records
	prefixTrash    = 'r' // r volID:8 seq:8                → empty: the snapshot is in the trash (trash.go)
)

// SchemaVersion is stored under metaSchemaKey and checked at Open.
// Schema 2 adds chunked content blobs (content.go); a schema 1 repository
// is raised to 2 at Open, since nothing of it changes, so that an older
// chainfs refuses it by its schema rather than taking a chunked list for
// damage. Schema 3 adds holds, the trash and compressed blocks (hold.go,
// trash.go, codec.go): a chainfs that reads up to 2 would delete a held
// snapshot, and, rewriting the record of the snapshot after one it
// deletes, drop its hold or its mark of being in the trash; it would take
// a compressed block's record for damage. A repository is raised to 3 by
// its first hold, deletion into the trash or compressed block
// (raiseSchema), so that from then on an older chainfs refuses it; until
// then it reads it as before.
const SchemaVersion = 3

// schemaChunked is the schema a repository has before anything raises it
// to SchemaVersion.
const schemaChunked = 2

var metaSchemaKey = metaKey("schema")

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

func counterKey(name string) []byte { return append([]byte{prefixCounter}, name...) }

// leaseKey: 'l' name. The sweep's (gc, repair) is "sweep"; a running
// snapshot's "snapshot/" replica "/" volume.
func leaseKey(name string) []byte { return append([]byte{prefixLease}, name...) }

var (
	sweepLeaseKey      = leaseKey("sweep")
	snapshotLeasesFrom = leaseKey("snapshot/")
)

func snapshotLeaseKey(replica, volume string) []byte {
	return leaseKey("snapshot/" + replica + "/" + volume)
}

// volumeKey: 'v' name
func volumeKey(name string) []byte { return append([]byte{prefixVolume}, name...) }

// snapshotKey: 's' volID:8 seq:8
func snapshotKey(vol, seq uint64) []byte {
	k := make([]byte, 17)
	k[0] = prefixSnapshot
	binary.BigEndian.PutUint64(k[1:], vol)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

// snapshotPrefix: 's' volID:8, the prefix of all snapshots of a volume.
func snapshotPrefix(vol uint64) []byte { return snapshotKey(vol, 0)[:9] }

// parseSnapshotKey returns the seq of a snapshotKey.
func parseSnapshotKey(k []byte) (vol, seq uint64, err error) {
	if len(k) != 17 || k[0] != prefixSnapshot {
		return 0, 0, fmt.Errorf("snapshot key %x: %w", k, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), nil
}

// snapNameKey: 'n' volID:8 name
func snapNameKey(vol uint64, name string) []byte {
	k := make([]byte, 9, 9+len(name))
	k[0] = prefixSnapName
	binary.BigEndian.PutUint64(k[1:], vol)
	return append(k, name...)
}

// trashKey: 'r' volID:8 seq:8
func trashKey(vol, seq uint64) []byte {
	k := snapshotKey(vol, seq)
	k[0] = prefixTrash
	return k
}

// trashPrefix: 'r' volID:8, a volume's snapshots in the trash.
func trashPrefix(vol uint64) []byte { return trashKey(vol, 0)[:9] }

// blockKey: 'b' hash:32
func blockKey(h Hash) []byte { return append([]byte{prefixBlock}, h[:]...) }

// treeKey: 't' hash:32
func treeKey(h Hash) []byte { return append([]byte{prefixTree}, h[:]...) }

// deltaKey: 'd' volID:8 seq:8 hash:32
func deltaKey(vol, seq uint64, h Hash) []byte {
	k := make([]byte, 49)
	k[0] = prefixDelta
	binary.BigEndian.PutUint64(k[1:], vol)
	binary.BigEndian.PutUint64(k[9:], seq)
	copy(k[17:], h[:])
	return k
}

// deltaPrefix: 'd' volID:8 seq:8
func deltaPrefix(vol, seq uint64) []byte { return deltaKey(vol, seq, Hash{})[:17] }

// parseDeltaKey returns the hash of a deltaKey.
func parseDeltaKey(k []byte) (Hash, error) {
	var h Hash
	if len(k) != 49 || k[0] != prefixDelta {
		return h, fmt.Errorf("delta key %x: %w", k, ErrCorrupt)
	}
	copy(h[:], k[17:])
	return h, nil
}

// intervalKey: 'i' volID:8 hash:32 start:8
func intervalKey(vol uint64, h Hash, start uint64) []byte {
	k := make([]byte, 49)
	k[0] = prefixInterval
	binary.BigEndian.PutUint64(k[1:], vol)
	copy(k[9:], h[:])
	binary.BigEndian.PutUint64(k[41:], start)
	return k
}

// intervalPrefix: 'i' volID:8 hash:32, all runs of one block in one volume.
func intervalPrefix(vol uint64, h Hash) []byte { return intervalKey(vol, h, 0)[:41] }

// parseIntervalKey splits an intervalKey.
func parseIntervalKey(k []byte) (vol uint64, h Hash, start uint64, err error) {
	if len(k) != 49 || k[0] != prefixInterval {
		return 0, h, 0, fmt.Errorf("interval key %x: %w", k, ErrCorrupt)
	}
	copy(h[:], k[9:41])
	return binary.BigEndian.Uint64(k[1:]), h, binary.BigEndian.Uint64(k[41:]), nil
}

// packKey: 'p' packID:8
func packKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixPack
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func parsePackKey(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefixPack {
		return 0, fmt.Errorf("pack key %x: %w", k, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}
