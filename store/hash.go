package store

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// HashSize is the size of a BLAKE3 digest as stored.
const HashSize = 32

// Hash identifies a block or a tree blob by the BLAKE3 hash of its bytes.
type Hash [HashSize]byte

// HoleHash stands for a block that is a hole in a sparse file: it is never
// stored and reads as zeros. No real BLAKE3 digest is all zeros.
var HoleHash Hash

// Sum returns the BLAKE3 hash of b.
func Sum(b []byte) Hash { return Hash(blake3.Sum256(b)) }

// IsHole reports whether h stands for a hole.
func (h Hash) IsHole() bool { return h == HoleHash }

// zeros is what IsZero compares against: bytes.Equal runs at memory speed.
var zeros = make([]byte, 64<<10)

// IsZero reports whether b is all zero bytes: a block that is stored as a
// hole.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// String is the lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short is the first 12 hex digits, for messages.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// ParseHash parses the hex form.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		return h, fmt.Errorf("hash %q: %w", s, ErrInvalid)
	}
	copy(h[:], b)
	return h, nil
}
