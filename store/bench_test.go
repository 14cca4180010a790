package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
)

func BenchmarkSum(b *testing.B) {
	buf := make([]byte, DefaultBlockSize)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Sum(buf)
	}
}

// BenchmarkReadBlock reads and verifies one stored block (page-cached).
func BenchmarkReadBlock(b *testing.B) {
	r := testRepo(b)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
	s := snapFile(b, r, "v", block('x'))
	e, _ := Lookup(ctx, r, &s.RootDir, "disk")
	buf := make([]byte, testBS)
	b.SetBytes(testBS)
	for b.Loop() {
		if _, err := r.ReadBlock(ctx, e.Blocks[0], buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHolder answers "which snapshot holds this block" for the newest
// snapshot of chains 1 and 1,000 deep, for a block held by the first
// snapshot: the cost must not grow with depth.
func BenchmarkHolder(b *testing.B) {
	for _, depth := range []int{1, 1000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			r := testRepo(b)
			ctx := context.Background()
			r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere"})
			var s *Snapshot
			for i := 0; i < depth; i++ {
				changing := block(byte(i))
				changing[1] = byte(i >> 8)
				s = snapFile(b, r, "v", block('A'), changing)
			}
			h := Sum(block('A'))
			b.ResetTimer()
			for b.Loop() {
				holder, err := r.Index().Holder(ctx, s.VolumeID, s.Seq, h)
				if err != nil || holder != 1 {
					b.Fatalf("holder %d, %v", holder, err)
				}
			}
		})
	}
}

// benchWriter is a snapshot writer of a volume of 256 KiB blocks,
// aborted when the benchmark ends.
func benchWriter(b *testing.B) *SnapshotWriter {
	r := testRepo(b)
	ctx := context.Background()
	r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: DefaultBlockSize})
	w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Abort)
	return w
}

// BenchmarkPutBlock stores new 256 KiB blocks through a snapshot writer:
// the hash is the caller's, so this is the store's write path alone
// (pack appends, block records, the space checks), committed at the end.
func BenchmarkPutBlock(b *testing.B) {
	ctx := context.Background()
	w := benchWriter(b)
	buf := make([]byte, DefaultBlockSize)
	b.SetBytes(DefaultBlockSize)
	i := uint64(0)
	for b.Loop() {
		i++
		binary.LittleEndian.PutUint64(buf, i)
		if err := w.PutBlock(ctx, Sum(buf), buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutBlockParallel is BenchmarkPutBlock from as many writers
// as cores, each hashing its blocks as a snapshot's workers do: what the
// writer's lock costs them when one of them is writing a pack buffer out.
func BenchmarkPutBlockParallel(b *testing.B) {
	ctx := context.Background()
	w := benchWriter(b)
	b.SetBytes(DefaultBlockSize)
	var next atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, DefaultBlockSize)
		for pb.Next() {
			binary.LittleEndian.PutUint64(buf, next.Add(1))
			if err := w.PutBlock(ctx, Sum(buf), buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkChainDepth reads a 16 MiB file (256 blocks of 64 KiB) as the
// only snapshot of a volume (depth=1), and as the first and the last
// snapshot of a chain 10,000 deep in which every snapshot rewrote one
// block: looking the file up and reading and verifying every block must
// not grow with the chain. CHAINFS_BENCH_DEPTH sets another depth. The
// repositories are built once (about a minute for 10,000) in
// CHAINFS_BENCH_DIR (default /var/tmp: a disk, for the cold figures).
// Each is read warm (the page cache holds the repository) and, as root,
// cold (the page cache dropped before each read, which then also pays for
// where the blocks lie on disk). A second chain is built as the daemon
// builds it, merging small packs as it grows (MergeSmallPacks). Then gc
// merges the first chain's small packs and it is read again.
func BenchmarkChainDepth(b *testing.B) {
	depth := 10000
	if s := os.Getenv("CHAINFS_BENCH_DEPTH"); s != "" {
		depth, _ = strconv.Atoi(s)
	}
	// Cold reads drop the page cache first, which takes root.
	coldOK := os.Geteuid() == 0
	ctx := context.Background()
	one, _ := depthRepo(b, 1, false)
	deep, deepSnaps := depthRepo(b, depth, false)
	merged, mergedSnaps := depthRepo(b, depth, true)
	for _, c := range []struct {
		name string
		r    *Repo
		s    *Snapshot
	}{{"depth=1", one, nil}, {fmt.Sprintf("depth=%d/first", depth), deep, deepSnaps[0]}, {fmt.Sprintf("depth=%d/last", depth), deep, deepSnaps[1]},
		// Built as the daemon builds it: merging small packs when due.
		{fmt.Sprintf("depth=%d/first/merged", depth), merged, mergedSnaps[0]}, {fmt.Sprintf("depth=%d/last/merged", depth), merged, mergedSnaps[1]},
		// gc merges the chain's small packs, the newest file in order.
		{"gc", deep, nil},
		{fmt.Sprintf("depth=%d/first/after-gc", depth), deep, deepSnaps[0]}, {fmt.Sprintf("depth=%d/last/after-gc", depth), deep, deepSnaps[1]}} {
		if c.name == "gc" {
			if _, err := deep.GC(ctx); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for _, cold := range []bool{false, true} {
			name := c.name + "/warm"
			if cold {
				if !coldOK {
					continue
				}
				name = c.name + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				s := c.s
				if s == nil {
					snaps, _ := c.r.Snapshots(ctx, "v")
					s = &snaps[0]
				}
				buf := make([]byte, depthBS)
				b.SetBytes(depthBlocks * depthBS)
				for b.Loop() {
					if cold {
						b.StopTimer()
						dropCaches()
						b.StartTimer()
					}
					e, err := Lookup(ctx, c.r, &s.RootDir, "file")
					if err != nil {
						b.Fatal(err)
					}
					list, err := OpenBlocks(ctx, c.r, e)
					if err != nil {
						b.Fatal(err)
					}
					for i := 0; i < list.Len(); i++ {
						h, err := list.At(ctx, i)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := c.r.ReadBlock(ctx, h, buf); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// dropCaches empties the page cache (root only).
func dropCaches() {
	exec.Command("sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches").Run()
}

const depthBS, depthBlocks = 64 << 10, 256

// depthRepo builds a repository whose volume v has a chain of depth
// snapshots of one file, each rewriting one block, and returns it with
// the chain's first and last snapshots. With merge, small packs are
// merged after each snapshot when a merge is due, as the daemon does.
func depthRepo(b *testing.B, depth int, merge bool) (*Repo, [2]*Snapshot) {
	dir, err := os.MkdirTemp(cmp.Or(os.Getenv("CHAINFS_BENCH_DIR"), "/var/tmp"), "chainfs-depth")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	r := newRepoAt(b, dir+"/repo", Options{})
	b.Cleanup(func() { r.Close() })
	if _, err := r.AddVolume(ctx, Volume{Name: "v", Source: "/nowhere", BlockSize: depthBS}); err != nil {
		b.Fatal(err)
	}
	blocks := make([]Hash, depthBlocks)
	buf := make([]byte, depthBS)
	var ends [2]*Snapshot
	for k := 0; k < depth; k++ {
		w, err := r.BeginSnapshot(ctx, "v", SnapshotOptions{})
		if err != nil {
			b.Fatal(err)
		}
		put := func(i int) {
			binary.LittleEndian.PutUint64(buf, uint64(k))
			binary.LittleEndian.PutUint64(buf[8:], uint64(i))
			blocks[i] = Sum(buf)
			if err := w.PutBlock(ctx, blocks[i], buf); err != nil {
				b.Fatal(err)
			}
		}
		if k == 0 {
			for i := range blocks {
				put(i)
			}
		} else {
			put(k % depthBlocks)
		}
		e := Entry{Name: "file", Type: TypeRegular, Mode: 0o644, Size: depthBlocks * depthBS, BlockSize: depthBS, Nlink: 1}
		if err := e.SetBlocks(blocks, func(blob []byte) (Hash, error) { return w.PutTree(ctx, blob) }); err != nil {
			b.Fatal(err)
		}
		root, err := w.PutTree(ctx, EncodeTree([]Entry{e}))
		if err != nil {
			b.Fatal(err)
		}
		s, err := w.Commit(ctx, Entry{Type: TypeDir, Mode: 0o755, Subtree: root}, SnapshotStats{})
		if err != nil {
			b.Fatal(err)
		}
		if k == 0 {
			ends[0] = s
		}
		ends[1] = s
		if merge {
			if _, err := r.MergeSmallPacks(ctx, false); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The chain settles: the daemon merges the smallest packs too.
	if merge {
		if _, err := r.MergeSmallPacks(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	return r, ends
}
