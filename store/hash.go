package store

import (
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
