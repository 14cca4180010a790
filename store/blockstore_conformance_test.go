package store_test

import (
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/storetest"
)

// TestPackDirConformance: pack files in a directory keep what the store
// relies on of a BlockStore (store/s3 runs the same on object storage).
func TestPackDirConformance(t *testing.T) {
	storetest.BlockStoreConformance(t, func(t *testing.T) store.BlockStore {
		bs, err := store.NewPackDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return bs
	})
}
