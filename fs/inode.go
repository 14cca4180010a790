//go:build linux

package fs

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// Fixed inode numbers of the top of the tree.
const (
	inoRoot = 1 + iota
	inoVolumes
	inoImages
	inoControl
	inoCtlSnapshot
	inoCtlDelete
	inoCtlExport
	inoCtlStatus
	firstHashedIno = 1 << 16
)

// inodeNumber makes the inode number of an object from the parts that name
// it. It is stable across listings and remounts, and unique among live
// objects unless 64-bit hashes collide.
func inodeNumber(kind string, nums []uint64, path string) uint64 {
	h := blake3.New()
	var b [8]byte
	h.Write([]byte(kind))
	for _, n := range nums {
		binary.LittleEndian.PutUint64(b[:], n)
		h.Write(b[:])
	}
	// The path goes last, so no two (nums, path) pairs hash the same bytes.
	h.Write([]byte(path))
	var sum [32]byte
	h.Sum(sum[:0])
	ino := binary.LittleEndian.Uint64(sum[:8])
	if ino < firstHashedIno {
		ino += firstHashedIno
	}
	if ino == ^uint64(0) {
		ino--
	}
	return ino
}
