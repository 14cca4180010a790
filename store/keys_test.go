package store

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
)

// TestKeysRoundTrip: every key with fields parses back to them; a key of
// the wrong length or prefix is corruption, never a misread.
func TestKeysRoundTrip(t *testing.T) {
	h := Sum([]byte("block"))
	for _, c := range []struct{ vol, seq uint64 }{{0, 0}, {1, 2}, {math.MaxUint64, math.MaxUint64}, {1 << 32, 1<<56 + 3}} {
		if vol, seq, err := parseSnapshotKey(snapshotKey(c.vol, c.seq)); err != nil || vol != c.vol || seq != c.seq {
			t.Errorf("snapshot key %v: %d %d %v", c, vol, seq, err)
		}
		if got, err := parseDeltaKey(deltaKey(c.vol, c.seq, h)); err != nil || got != h {
			t.Errorf("delta key %v: %v %v", c, got, err)
		}
		if vol, gotH, start, err := parseIntervalKey(intervalKey(c.vol, h, c.seq)); err != nil || vol != c.vol || gotH != h || start != c.seq {
			t.Errorf("interval key %v: %d %v %d %v", c, vol, gotH, start, err)
		}
		if id, err := parsePackKey(packKey(c.seq)); err != nil || id != c.seq {
			t.Errorf("pack key %d: %d %v", c.seq, id, err)
		}
	}
	bad := [][]byte{nil, {prefixSnapshot}, blockKey(h), append(snapshotKey(1, 2), 0)}
	for _, k := range bad {
		if _, _, err := parseSnapshotKey(k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("snapshot key %x: %v", k, err)
		}
		if _, err := parseDeltaKey(k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("delta key %x: %v", k, err)
		}
		if _, _, _, err := parseIntervalKey(k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("interval key %x: %v", k, err)
		}
		if _, err := parsePackKey(k); !errors.Is(err, ErrCorrupt) {
			t.Errorf("pack key %x: %v", k, err)
		}
	}
}

// TestKeysSortOrder: keys sort as their numbers do (big-endian), so that
// a seek finds the newest run at or before a snapshot and a volume's
// snapshots list in order; a prefix holds exactly its own keys.
func TestKeysSortOrder(t *testing.T) {
	h1, h2 := Sum([]byte("1")), Sum([]byte("2"))
	ordered := [][][]byte{
		{snapshotKey(1, 1), snapshotKey(1, 2), snapshotKey(1, 255), snapshotKey(1, 256), snapshotKey(1, 1<<40), snapshotKey(2, 0)},
		{intervalKey(7, h1, 9), intervalKey(7, h1, 10), intervalKey(7, h1, 1<<33), intervalKey(8, h1, 0)},
		{packKey(1), packKey(2), packKey(300), packKey(1 << 50)},
		{deltaKey(3, 4, h1), deltaKey(3, 5, h1), deltaKey(3, 256, h1)},
	}
	for i, keys := range ordered {
		if !slices.IsSortedFunc(keys, bytes.Compare) {
			t.Errorf("set %d: keys out of numeric order", i)
		}
	}
	if bytes.Compare(h1[:], h2[:]) < 0 != (bytes.Compare(intervalKey(7, h1, 99), intervalKey(7, h2, 0)) < 0) {
		t.Error("interval keys do not sort by hash before start")
	}
	has := func(prefix, key []byte) bool { return bytes.HasPrefix(key, prefix) }
	switch {
	case !has(snapshotPrefix(1), snapshotKey(1, 5)), has(snapshotPrefix(1), snapshotKey(2, 5)), has(snapshotPrefix(1), snapNameKey(1, "x")):
		t.Error("snapshot prefix")
	case !has(intervalPrefix(7, h1), intervalKey(7, h1, 3)), has(intervalPrefix(7, h1), intervalKey(7, h2, 3)), has(intervalPrefix(7, h1), intervalKey(8, h1, 3)):
		t.Error("interval prefix")
	case !has(deltaPrefix(3, 4), deltaKey(3, 4, h2)), has(deltaPrefix(3, 4), deltaKey(3, 5, h2)):
		t.Error("delta prefix")
	}
	// Every kind of key starts with its own byte: no prefix scan of one
	// kind meets another's keys.
	kinds := map[byte][]byte{prefixVolume: volumeKey("v"), prefixSnapshot: snapshotKey(1, 1), prefixSnapName: snapNameKey(1, "s"),
		prefixBlock: blockKey(h1), prefixTree: treeKey(h1), prefixDelta: deltaKey(1, 1, h1), prefixInterval: intervalKey(1, h1, 1),
		prefixPack: packKey(1), prefixMeta: metaKey("schema"), prefixCounter: counterKey("pack"), prefixTrash: trashKey(1, 1)}
	for p, k := range kinds {
		if k[0] != p {
			t.Errorf("key %x does not start with its prefix %c", k, p)
		}
	}
	if len(kinds) != 11 || byte(PolicyRecords) != prefixPolicy || byte(MarketRecords) != prefixMarket ||
		slices.Contains(slices.Collect(maps.Keys(kinds)), prefixPolicy) || slices.Contains(slices.Collect(maps.Keys(kinds)), prefixMarket) {
		t.Error("record kinds overlap the store's own prefixes")
	}
}
