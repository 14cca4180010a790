package integration

import (
	"crypto/sha256"
	"hash"
)

func newDigest() hash.Hash { return sha256.New() }
