package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDeleteSpecExample deletes snapshot 1 of the example in
// docs/design.md: A and D pass to snapshot 2, B and C lose their last
// reference.
func TestDeleteSpecExample(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	B1, C1, B2 := block('b'), block('c'), block('2')
	s1 := snapFile(t, r, "v", A, B, C, D)
	s2 := snapFile(t, r, "v", A, B1, C1, D)
	s3 := snapFile(t, r, "v", A, B2, C1, D)
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	wantHolders(t, r, s2, 2, 2, 2, 2)
	wantHolders(t, r, s3, 2, 3, 2, 2)
	for _, b := range [][]byte{B, C} {
		if rec, err := r.blockRecord(Sum(b)); err != nil || rec.Refs != 0 {
			t.Errorf("block %c: refs %d, %v; want 0", b[0], rec.Refs, err)
		}
	}
	if _, err := r.Snapshot(ctx, "v", s1.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted snapshot still found: %v", err)
	}
}

// TestDeleteLatestRefused: "latest" is never deleted, whatever it means;
// the refusal names the snapshot it meant and deletes nothing.
func TestDeleteLatestRefused(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	err := r.DeleteSnapshot(ctx, "v", "latest")
	var refused *LatestRefusedError
	if !errors.As(err, &refused) || !errors.Is(err, ErrInvalid) || refused.Latest != "" {
		t.Fatalf("delete latest of a volume without snapshots: %v", err)
	}
	snapFile(t, r, "v", block('A'))
	s2 := snapFile(t, r, "v", block('B'))
	err = r.DeleteSnapshot(ctx, "v", "latest")
	if !errors.As(err, &refused) || !errors.Is(err, ErrInvalid) || refused.Latest != s2.Name {
		t.Fatalf("delete latest: %v", err)
	}
	if want := `refusing to delete "latest": name the snapshot; latest is now "` + s2.Name + `"`; err.Error() != want {
		t.Errorf("delete latest: %q, want %q", err, want)
	}
	if snaps, err := r.Snapshots(ctx, "v"); err != nil || len(snaps) != 2 {
		t.Errorf("after the refusal: %d snapshots, %v; want 2", len(snaps), err)
	}
}

// TestDeleteRandomChains builds random chains, deletes random snapshots
// (first, middle, head), and after every step compares the holders and
// reference counts with those computed from the surviving snapshots' block
// sets alone.
func TestDeleteRandomChains(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, 7))
	for round := 0; round < 12; round++ {
		r := testRepo(t)
		r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
		pool := make([][]byte, 8)
		for i := range pool {
			pool[i] = block(byte('a' + i))
		}
		type state struct {
			snap   *Snapshot
			blocks [][]byte
		}
		var live []state
		newSnap := func() {
			n := 1 + rng.IntN(5)
			var bs [][]byte
			for i := 0; i < n; i++ {
				bs = append(bs, pool[rng.IntN(len(pool))])
			}
			live = append(live, state{snapFile(t, r, "v", bs...), bs})
		}
		check := func(step string) {
			t.Helper()
			if p := problemsOf(t, r); len(p) != 0 {
				t.Fatalf("round %d %s: check: %q", round, step, p)
			}
			runs := map[Hash]uint64{}
			for i, s := range live {
				for _, b := range s.blocks {
					h := Sum(b)
					// Expected holder: earliest j <= i with h in every live
					// snapshot j..i.
					j := i
					for j > 0 && contains(live[j-1].blocks, h) {
						j--
					}
					got, err := r.Index().Holder(ctx, s.snap.VolumeID, s.snap.Seq, h)
					if err != nil || got != live[j].snap.Seq {
						t.Fatalf("round %d %s: snapshot %d block %c: holder %d (%v), want %d",
							round, step, s.snap.Seq, b[0], got, err, live[j].snap.Seq)
					}
				}
				for _, h := range distinct(s.blocks) {
					if i == 0 || !contains(live[i-1].blocks, h) {
						runs[h]++
					}
				}
			}
			// What each snapshot holds itself, counted from the surviving
			// snapshots' block sets alone.
			for i, st := range live {
				var want uint64
				for _, h := range distinct(st.blocks) {
					if i == 0 || !contains(live[i-1].blocks, h) {
						want += testBS
					}
				}
				if got := addedFigures(t, r, "v", st.snap); got != [3]uint64{want, want, want} {
					t.Fatalf("round %d %s: snapshot %d added (record, usage, chain) %v, want %d", round, step, st.snap.Seq, got, want)
				}
			}
			for _, b := range pool {
				h := Sum(b)
				rec, err := r.blockRecord(h)
				if err != nil {
					continue // never stored
				}
				if rec.Refs != runs[h] {
					t.Fatalf("round %d %s: block %c refs %d, want %d", round, step, b[0], rec.Refs, runs[h])
				}
			}
		}
		for i := 0; i < 6; i++ {
			newSnap()
		}
		check("built")
		for len(live) > 0 {
			i := rng.IntN(len(live))
			if err := r.DeleteSnapshot(ctx, "v", live[i].snap.Name); err != nil {
				t.Fatal(err)
			}
			live = append(live[:i], live[i+1:]...)
			check("after delete")
			if rng.IntN(3) == 0 {
				newSnap()
				check("after new snapshot")
			}
		}
	}
}

func contains(bs [][]byte, h Hash) bool {
	for _, b := range bs {
		if Sum(b) == h {
			return true
		}
	}
	return false
}

func distinct(bs [][]byte) []Hash {
	seen := map[Hash]bool{}
	var out []Hash
	for _, b := range bs {
		if h := Sum(b); !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// TestImageHoldsItsBlocks: an image keeps every block after its source
// snapshot is deleted, and removing it drops exactly its references.
func TestImageHoldsItsBlocks(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, B := block('A'), block('B')
	s1 := snapFile(t, r, "v", A, B)
	img := imageOf(t, r, "golden", s1)
	if img.Name != "golden" || img.Snapshot.Root != s1.Root || string(img.Volume.Image) != `{"owner":7}` {
		t.Errorf("image %+v", img)
	}
	if _, err := r.ImageVolumes().Begin(ctx, "golden", nil, "", ""); !errors.Is(err, ErrExists) {
		t.Errorf("second image of the same name: %v", err)
	}
	if err := r.DeleteSnapshot(ctx, "v", s1.Name); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{A, B} {
		if rec, _ := r.blockRecord(Sum(b)); rec.Refs != 1 {
			t.Errorf("block %c after its snapshot went: refs %d, want 1 (the image's)", b[0], rec.Refs)
		}
	}
	vols, _ := r.Volumes(ctx)
	if len(vols) != 1 {
		t.Errorf("the image shows as a volume: %v", vols)
	}
	if err := r.RemoveVolume(ctx, img.Volume.Name, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("an image's volume removed as a volume: %v", err)
	}
	if err := r.ImageVolumes().Remove(ctx, "golden"); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{A, B} {
		if rec, _ := r.blockRecord(Sum(b)); rec.Refs != 0 {
			t.Errorf("block %c after the image went: refs %d, want 0", b[0], rec.Refs)
		}
	}
	if _, err := r.ImageVolumes().Get(ctx, "golden"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed image: %v", err)
	}
}

// TestDeleteSpecChainEveryOrder builds the A/B/C/D chain of
// docs/design.md and deletes its snapshots in every order: after each
// deletion every survivor reads back exactly and each block is held by
// the earliest survivor of its run.
func TestDeleteSpecChainEveryOrder(t *testing.T) {
	ctx := context.Background()
	A, B, C, D := block('A'), block('B'), block('C'), block('D')
	B1, C1, B2 := block('b'), block('c'), block('2')
	contents := [][][]byte{{A, B, C, D}, {A, B1, C1, D}, {A, B2, C1, D}}
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		r := testRepo(t)
		r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
		snaps := make([]*Snapshot, 3)
		for i, c := range contents {
			snaps[i] = snapFile(t, r, "v", c...)
		}
		alive := []int{0, 1, 2}
		for _, victim := range order {
			if err := r.DeleteSnapshot(ctx, "v", snaps[victim].Name); err != nil {
				t.Fatal(err)
			}
			alive = slices.DeleteFunc(alive, func(i int) bool { return i == victim })
			for k, i := range alive {
				e, err := Lookup(ctx, r, &snaps[i].RootDir, "disk")
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, testBS)
				for b, h := range e.Blocks {
					if _, err := r.ReadBlock(ctx, h, buf); err != nil || string(buf) != string(contents[i][b]) {
						t.Fatalf("order %v: snapshot %d block %d reads wrong: %v", order, i+1, b, err)
					}
					// The holder: the earliest survivor from which every
					// survivor up to i has the block.
					j := k
					for j > 0 && containsBlock(contents[alive[j-1]], contents[i][b]) {
						j--
					}
					holder, err := r.Index().Holder(ctx, snaps[i].VolumeID, snaps[i].Seq, h)
					if err != nil || holder != snaps[alive[j]].Seq {
						t.Fatalf("order %v after deleting %d: snapshot %d block %d held by %d (%v), want %d",
							order, victim+1, i+1, b, holder, err, snaps[alive[j]].Seq)
					}
				}
			}
		}
	}
}

func containsBlock(bs [][]byte, b []byte) bool {
	for _, x := range bs {
		if string(x) == string(b) {
			return true
		}
	}
	return false
}

// addedFigures is what a snapshot holds itself, as its record, its
// holdings (what usage reports) and the holders of its blocks (what the
// chain map draws) say.
func addedFigures(t *testing.T, r *Repo, vol string, s *Snapshot) [3]uint64 {
	t.Helper()
	ctx := context.Background()
	var got [3]uint64
	rec, err := r.Snapshot(ctx, vol, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = rec.Stats.AddedBytes
	snaps, err := r.Snapshots(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	var next uint64
	for i := range snaps {
		if snaps[i].Seq == s.Seq && i+1 < len(snaps) {
			next = snaps[i+1].Seq
		}
	}
	held, err := r.Index().Holdings(ctx, s.VolumeID, s.Seq, next)
	if err != nil {
		t.Fatal(err)
	}
	got[1] = held.AddedBytes
	blocks := map[Hash]uint32{}
	if err := CollectBlocks(ctx, r, s.Root, blocks); err != nil {
		t.Fatal(err)
	}
	for h, n := range blocks {
		if holder, err := r.Index().Holder(ctx, s.VolumeID, s.Seq, h); err == nil && holder == s.Seq {
			got[2] += uint64(n)
		}
	}
	return got
}

// TestDeleteMovesAdded: deleting s2, whose added blocks s3 keeps, makes
// them s3's own data; and when s3 had taken back a block s2 dropped, the
// runs merge and that block is s1's again. Every figure says so.
func TestDeleteMovesAdded(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	A, P, X, Y, Z := block('A'), block('P'), block('X'), block('Y'), block('Z')
	snapFile(t, r, "v", A, P)
	s2 := snapFile(t, r, "v", A, X, Y)       // adds X Y, drops P
	s3 := snapFile(t, r, "v", A, P, X, Y, Z) // keeps X Y, adds P again and Z
	if got := addedFigures(t, r, "v", s3); got != [3]uint64{2 * testBS, 2 * testBS, 2 * testBS} {
		t.Fatalf("s3 added before the deletion: %v", got)
	}
	if err := r.DeleteSnapshot(ctx, "v", s2.Name); err != nil {
		t.Fatal(err)
	}
	// s3 holds X Y Z now; P is s1's again.
	if got := addedFigures(t, r, "v", s3); got != [3]uint64{3 * testBS, 3 * testBS, 3 * testBS} {
		t.Errorf("s3 added (record, usage, chain) after deleting s2: %v, want %d each", got, 3*testBS)
	}
}
