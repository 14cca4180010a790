package store

import (
	"bytes"
	"errors"
	"testing"
)

// TestJournalEntryCodec: an entry comes back as it went, sets and
// deletes, empty values too; a flipped byte, a cut, another number and
// trailing bytes are refused as corrupt.
func TestJournalEntryCodec(t *testing.T) {
	muts := []kv{{key: []byte("a"), val: []byte("1")}, {key: []byte("b")}, {key: []byte("c"), val: []byte{}}}
	b := encodeEntry(7, [nonceSize]byte{1}, muts)
	got, err := decodeEntry(7, b)
	if err != nil || len(got) != 3 || !bytes.Equal(got[0].val, []byte("1")) || got[1].val != nil || got[2].val == nil {
		t.Fatalf("decode: %+v %v", got, err)
	}
	bad := map[string][]byte{
		"flipped":  append(bytes.Clone(b[:10]), append([]byte{b[10] ^ 1}, b[11:]...)...),
		"cut":      b[:len(b)-1],
		"trailing": append(bytes.Clone(b), 0),
		"empty":    nil,
	}
	for name, e := range bad {
		if _, err := decodeEntry(7, e); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := decodeEntry(8, b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("entry 7 read as 8: %v", err)
	}
}

// FuzzDecodeEntry: any bytes are decoded or refused, never a panic; what
// is accepted encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(1, [nonceSize]byte{7}, []kv{{key: []byte("k"), val: []byte("v")}, {key: []byte("d")}}))
	f.Add(encodeEntry(1, [nonceSize]byte{}, nil))
	f.Add([]byte("CFJ1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		muts, err := decodeEntry(1, b)
		if err != nil {
			return
		}
		var nonce [nonceSize]byte
		copy(nonce[:], b[len(entryMagic)+8:])
		if again := encodeEntry(1, nonce, muts); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which encodes as %x", b, again)
		}
	})
}
