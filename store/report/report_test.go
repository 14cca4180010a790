package report

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/storetest"
)

const testBS = storetest.BlockSize

var block = storetest.Block

// testRepo is a repository with one volume, v.
func testRepo(t *testing.T) *store.Repo {
	return storetest.Repo(t, store.Volume{Name: "v", Source: "/nowhere", BlockSize: testBS})
}

// snapFile commits a snapshot of v whose tree is one file of blocks.
func snapFile(t *testing.T, r *store.Repo, blocks ...[]byte) *store.Snapshot {
	t.Helper()
	return storetest.FileSnapshot(t, r, "v", blocks...)
}

// TestExclusiveIsWhatDeletionFrees: each snapshot's exclusive size is
// exactly what deleting it and running gc frees; shared is the rest.
func TestExclusiveIsWhatDeletionFrees(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	A, B, C, D, E := block('A'), block('B'), block('C'), block('D'), block('E')
	snapFile(t, r, A, B, C)
	s2 := snapFile(t, r, A, D, C)
	snapFile(t, r, A, E, C)
	if _, err := images.Create(ctx, r, "img", "v", s2.Name, images.Meta{}); err != nil {
		t.Fatal(err)
	}
	u, err := Usage(ctx, r, UsageOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	// B only in s1, E only in s3 (the head); A and C shared; D is s2's
	// and the image's.
	excl := map[string]uint64{}
	for _, s := range u.Snapshots {
		excl[s.Snapshot] = s.Exclusive
		want := uint64(testBS)
		if s.Snapshot == s2.Name {
			want = 0
		}
		if s.Exclusive != want || s.Shared != 3*testBS-want {
			t.Errorf("snapshot %s: exclusive %d, shared %d; want %d, %d", s.Snapshot, s.Exclusive, s.Shared, want, 3*testBS-want)
		}
	}
	if len(u.Images) != 1 || u.Images[0].Snapshot != "img" || u.Images[0].Volume != "" || u.Images[0].Added != 0 || u.Images[0].Logical != s2.Stats.LogicalBytes {
		t.Errorf("images: %+v", u.Images)
	}
	if u.Blocks != 5 || u.StoredBytes != 5*testBS || u.GarbageBytes != 0 || u.Trees == 0 || u.SpaceUsed == 0 {
		t.Errorf("usage %+v", u)
	}
	if err := images.Remove(ctx, r, "img"); err != nil {
		t.Fatal(err)
	}
	if u, err = Usage(ctx, r, UsageOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range u.Snapshots {
		excl[s.Snapshot] = s.Exclusive
	}
	if excl[s2.Name] != testBS {
		t.Errorf("without the image, %s has %d bytes of its own, want %d", s2.Name, excl[s2.Name], testBS)
	}
	if err := r.DeleteSnapshot(ctx, "v", s2.Name); err != nil {
		t.Fatal(err)
	}
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesFreed != excl[s2.Name] {
		t.Errorf("deleting %s freed %d, its exclusive size was %d", s2.Name, st.BytesFreed, excl[s2.Name])
	}
}

// TestChainMapSpecExample draws the example of docs/design.md: snapshot 3
// holds B2, links C1 to snapshot 2 and A, D to snapshot 1.
func TestChainMapSpecExample(t *testing.T) {
	r := testRepo(t)
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	snapFile(t, r, A, B, C, D)
	snapFile(t, r, A, block('b'), block('c'), D)
	snapFile(t, r, A, block('2'), block('c'), D)
	rows, err := ChainMap(context.Background(), r, "v")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[uint64]uint64{{1: 4 * testBS}, {1: 2 * testBS, 2: 2 * testBS}, {1: 2 * testBS, 2: testBS, 3: testBS}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		if !reflect.DeepEqual(rows[i].Held, w) || rows[i].Total != 4*testBS {
			t.Errorf("snapshot %d holders %v (total %d), want %v", i+1, rows[i].Held, rows[i].Total, w)
		}
	}
}

// TestDiff: a changed block of a file long enough to be kept in chunks is
// one range; an added, a removed and a re-moded file are named; equal
// snapshots differ in nothing.
func TestDiff(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	n := 2*store.ChunkBlocks + 300
	data := func(i int, tag string) []byte {
		if i >= store.ChunkBlocks && i < 2*store.ChunkBlocks {
			return nil // a chunk of holes
		}
		b := make([]byte, testBS)
		copy(b, fmt.Sprint(tag, i%97))
		return b
	}
	blocks := make([][]byte, n)
	for i := range blocks {
		blocks[i] = data(i, "a")
	}
	s1 := snapFile(t, r, blocks...)
	blocks[2*store.ChunkBlocks+100] = block('Z')
	s2 := snapFile(t, r, blocks...)

	var changes []Change
	collect := func(ch Change) error { changes = append(changes, ch); return nil }
	if err := Diff(ctx, r, s1, s2, collect); err != nil {
		t.Fatal(err)
	}
	wantRange := []store.Extent{{Off: uint64(2*store.ChunkBlocks+100) * testBS, Len: testBS}}
	if len(changes) != 1 || changes[0].Path != "/disk" || !changes[0].Content || changes[0].Meta || !reflect.DeepEqual(changes[0].Ranges, wantRange) {
		t.Errorf("one block changed: %+v", changes)
	}
	changes = nil
	if err := Diff(ctx, r, s2, s2, collect); err != nil || len(changes) != 0 {
		t.Errorf("a snapshot against itself: %+v %v", changes, err)
	}

	// Trees differing in names and metadata.
	tree := func(es ...store.Entry) *store.Snapshot {
		return storetest.Commit(t, r, "v", store.SnapshotOptions{}, func(storetest.Writer) []store.Entry { return es })
	}
	file := func(name string, mode uint32) store.Entry {
		return store.Entry{Name: name, Type: store.TypeRegular, Mode: mode, Nlink: 1}
	}
	a := tree(file("kept", 0o644), file("gone", 0o644), file("moded", 0o644))
	b := tree(file("added", 0o644), file("kept", 0o644), file("moded", 0o600))
	changes = nil
	if err := Diff(ctx, r, a, b, collect); err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Path: "/added", Kind: "added", Type: store.TypeRegular},
		{Path: "/gone", Kind: "removed", Type: store.TypeRegular},
		{Path: "/moded", Kind: "changed", Type: store.TypeRegular, Meta: true},
	}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("changes %+v\nwant %+v", changes, want)
	}
}

// TestFiguresAgreeAfterDeletions: after every deletion of a chain, what
// each survivor holds itself is the same in its record, in usage and in
// the chain map.
func TestFiguresAgreeAfterDeletions(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	var snaps []*store.Snapshot
	for _, blocks := range [][][]byte{{A, B, C, D}, {A, block('b'), C, D}, {A, block('b'), block('c'), D}, {A, B, block('c'), block('d')}, {block('a'), B, C, D}} {
		snaps = append(snaps, snapFile(t, r, blocks...))
	}
	for _, del := range []int{1, 3, 0, 2} {
		if err := r.DeleteSnapshot(ctx, "v", snaps[del].Name); err != nil {
			t.Fatal(err)
		}
		u, err := Usage(ctx, r, UsageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ChainMap(ctx, r, "v")
		if err != nil {
			t.Fatal(err)
		}
		held := map[string]uint64{}
		for _, row := range rows {
			held[row.Snapshot] = row.Held[row.Seq]
		}
		survivors, _ := r.Snapshots(ctx, "v")
		if len(u.Snapshots) != len(survivors) || len(rows) != len(survivors) {
			t.Fatalf("after deleting %d: %d survivors, usage %d, chain %d", del, len(survivors), len(u.Snapshots), len(rows))
		}
		for i, s := range survivors {
			if su := u.Snapshots[i]; su.Snapshot != s.Name || su.Added != s.Stats.AddedBytes || held[s.Name] != s.Stats.AddedBytes {
				t.Errorf("after deleting %d, %s holds %d (record), %d (usage), %d (chain map)", del, s.Name, s.Stats.AddedBytes, su.Added, held[s.Name])
			}
		}
	}
}

// TestDirectoryMtimeFromEntries: a directory whose entries changed is not
// listed for the mtime that change moved, only for what else changed.
func TestDirectoryMtimeFromEntries(t *testing.T) {
	dir := func(tree byte, mtime int64, mode uint32) *store.Entry {
		return &store.Entry{Type: store.TypeDir, Subtree: store.Sum([]byte{tree}), Mtime: store.Timespec{Sec: mtime}, Mode: mode}
	}
	for _, c := range []struct {
		o, n *store.Entry
		want bool
	}{
		{dir('a', 1, 0o755), dir('b', 2, 0o755), false}, // an entry added: its own line says it
		{dir('a', 1, 0o755), dir('b', 2, 0o700), true},  // and chmod
		{dir('a', 1, 0o755), dir('a', 2, 0o755), true},  // touch alone
		{dir('a', 1, 0o755), dir('b', 1, 0o755), false}, // nothing of its own
	} {
		if got := metaChanged(c.o, c.n) && !onlyEntriesChanged(c.o, c.n); got != c.want {
			t.Errorf("%+v → %+v: listed %v, want %v", c.o, c.n, got, c.want)
		}
	}
}
