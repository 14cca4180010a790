package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/chainfs/chainfs/store"
)

// BlockStoreConformance checks what the store relies on of a BlockStore,
// for every kind of it: a pack's blocks are at the offsets Append gave
// and read back to the byte, a read past a pack's end or of a pack that
// is not there fails (a missing one as store.ErrCorrupt), List names the
// packs finished and those being written, Abort and Remove take a pack
// away (Remove twice is no error), and concurrent readers get their own
// bytes. open makes an empty one for the test, which closes it.
func BlockStoreConformance(t *testing.T, open func(t *testing.T) store.BlockStore) {
	ctx := context.Background()
	bs := open(t)
	defer bs.Close()
	a, b := bytes.Repeat([]byte("a"), 5000), bytes.Repeat([]byte("bc"), 3000)
	w, err := bs.Create(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	offA, errA := w.Append(a)
	offB, errB := w.Append(b)
	if errA != nil || errB != nil || offA != 0 || offB != int64(len(a)) || w.Size() != int64(len(a)+len(b)) {
		t.Fatalf("Append: offsets %d %d (%v %v), size %d", offA, offB, errA, errB, w.Size())
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	unfinished, err := bs.Create(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	unfinished.Append(a)
	if ids := list(t, bs); !slices.Equal(ids, []uint64{1, 2}) {
		t.Errorf("List while pack 2 is written: %v", ids)
	}
	if n, err := bs.PackSize(ctx, 1); err != nil || n != int64(len(a)+len(b)) {
		t.Errorf("PackSize: %d %v", n, err)
	}
	if n, err := bs.Size(ctx); err != nil || n < int64(len(a)+len(b)) {
		t.Errorf("Size: %d %v", n, err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off, n := int64(i*700), 1000+i
			got := make([]byte, n)
			if err := bs.ReadAt(ctx, 1, got, off); err != nil {
				t.Errorf("ReadAt %d+%d: %v", off, n, err)
				return
			}
			if want := append(slices.Clone(a), b...)[off : off+int64(n)]; !bytes.Equal(got, want) {
				t.Errorf("ReadAt %d+%d: other bytes", off, n)
			}
		}()
	}
	wg.Wait()
	if err := bs.ReadAt(ctx, 1, make([]byte, 10), int64(len(a)+len(b))-5); err == nil {
		t.Error("a read past the end of a pack succeeded")
	}
	if err := bs.ReadAt(ctx, 9, make([]byte, 10), 0); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("a read of a pack that is not there: %v", err)
	}
	if err := unfinished.Abort(); err != nil {
		t.Fatal(err)
	}
	if ids := list(t, bs); !slices.Equal(ids, []uint64{1}) {
		t.Errorf("List after Abort: %v", ids)
	}
	for range 2 {
		if err := bs.Remove(ctx, 1); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if ids := list(t, bs); len(ids) != 0 {
		t.Errorf("List after Remove: %v", ids)
	}
	if err := bs.ReadAt(ctx, 1, make([]byte, 10), 0); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("a read of a removed pack: %v", err)
	}
}

func list(t *testing.T, bs store.BlockStore) []uint64 {
	t.Helper()
	ids, err := bs.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}
