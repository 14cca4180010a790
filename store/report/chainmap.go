package report

import (
	"bytes"
	"context"
	"slices"

	"github.com/chainfs/chainfs/store"
)

// ChainRow is one snapshot of a chain map: how many bytes of its data each
// snapshot holds (itself included), each distinct block counted once.
type ChainRow struct {
	Snapshot string `json:"snapshot"`
	Seq      uint64 `json:"seq"`
	// Held maps a holder snapshot's seq to the bytes of this snapshot's
	// data it holds.
	Held map[uint64]uint64 `json:"held"`
	// Total is the data this snapshot references (distinct blocks).
	Total uint64 `json:"total_bytes"`
	// Trashed says the snapshot is in the trash: still in the chain,
	// holding its blocks.
	Trashed bool `json:"trashed,omitempty"`
}

// ChainMap returns, for every snapshot of a volume, where its data lies:
// the A/B/C/D picture of docs/design.md for the volume's own data. It
// reads every snapshot's block list; each block's holder is one index
// seek. Snapshots in the trash are in it: they hold blocks still.
func ChainMap(ctx context.Context, r *store.Repo, volume string) ([]ChainRow, error) {
	snaps, err := r.Chain(ctx, volume)
	if err != nil {
		return nil, err
	}
	rows := make([]ChainRow, 0, len(snaps))
	for i := range snaps {
		s := &snaps[i]
		blocks := map[store.Hash]uint32{}
		if err := store.CollectBlocks(ctx, r, s.Root, blocks); err != nil {
			return nil, err
		}
		hs := make([]store.Hash, 0, len(blocks))
		for h := range blocks {
			hs = append(hs, h)
		}
		slices.SortFunc(hs, func(a, b store.Hash) int { return bytes.Compare(a[:], b[:]) })
		holders, err := r.Index().Holders(ctx, s.VolumeID, s.Seq, hs)
		if err != nil {
			return nil, err
		}
		row := ChainRow{Snapshot: s.Name, Seq: s.Seq, Held: map[uint64]uint64{}, Trashed: s.Trashed != nil}
		for i, h := range hs {
			holder := holders[i]
			if holder == 0 {
				holder = s.Seq
			}
			row.Held[holder] += uint64(blocks[h])
			row.Total += uint64(blocks[h])
		}
		rows = append(rows, row)
	}
	return rows, nil
}
