package store

import (
	"context"
	"fmt"
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
	e, _ := r.Lookup(ctx, s, "disk")
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
				holder, err := r.Holder(ctx, s.VolumeID, s.Seq, h)
				if err != nil || holder != 1 {
					b.Fatalf("holder %d, %v", holder, err)
				}
			}
		})
	}
}
