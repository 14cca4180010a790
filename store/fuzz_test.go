package store

import (
	"reflect"
	"testing"
)

func seedTree() []byte {
	return EncodeTree([]Entry{
		{Name: "dir", Type: TypeDir, Mode: 0o755, Subtree: Sum([]byte("x"))},
		{Name: "file", Type: TypeRegular, Mode: 0o644, Size: 5, BlockSize: 4096, Blocks: []Hash{Sum([]byte("hello"))},
			Xattrs: []Xattr{{Name: "user.a", Value: []byte{0, 1}}}, Atime: Timespec{Sec: -5, Nsec: 7}},
		{Name: "sparse", Type: TypeRegular, Size: 1 << 20, BlockSize: 1 << 19, Blocks: []Hash{HoleHash, Sum([]byte("d"))},
			Sparse: true, Extents: []Extent{{Off: 600000, Len: 10}}},
		{Name: "big", Type: TypeRegular, Size: 1 << 30, BlockSize: 1 << 18, HasContent: true, Content: Sum([]byte("c"))},
		{Name: "link", Type: TypeSymlink, Target: "../x", Nlink: 1},
		{Name: "dev", Type: TypeCharDev, Rdev: 259},
	})
}

// FuzzDecodeTree: any bytes decode without panicking, and what decodes
// encodes and decodes again to the same entries.
func FuzzDecodeTree(f *testing.F) {
	f.Add(seedTree())
	f.Add(EncodeTree(nil))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, blob []byte) {
		entries, err := DecodeTree(blob)
		if err != nil {
			return
		}
		again, err := DecodeTree(EncodeTree(entries))
		if err != nil || !reflect.DeepEqual(entries, again) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, entries, again)
		}
	})
}

// FuzzDecodeContent: likewise for content blobs.
func FuzzDecodeContent(f *testing.F) {
	f.Add(EncodeContent([]Hash{Sum([]byte("a")), HoleHash}))
	f.Add([]byte{1, 255, 255, 255, 255, 15})
	f.Fuzz(func(t *testing.T, blob []byte) {
		blocks, err := DecodeContent(blob)
		if err != nil {
			return
		}
		again, err := DecodeContent(EncodeContent(blocks))
		if err != nil || !reflect.DeepEqual(blocks, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
