package store

import (
	"context"
	"sort"

	"github.com/dgraph-io/badger/v4"
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
}

// ChainMap returns, for every snapshot of a volume, where its data lies:
// the A/B/C/D picture of docs/design.md for the volume's own data. It
// reads every snapshot's block list; each block's holder is one index
// seek.
func (r *Repo) ChainMap(ctx context.Context, volume string) ([]ChainRow, error) {
	v, err := r.Volume(ctx, volume)
	if err != nil {
		return nil, err
	}
	snaps, err := r.snapshotsOf(v.ID)
	if err != nil {
		return nil, err
	}
	rows := make([]ChainRow, 0, len(snaps))
	for i := range snaps {
		s := &snaps[i]
		blocks := map[Hash]uint32{}
		if err := r.collectBlocks(ctx, s.Root, blocks); err != nil {
			return nil, err
		}
		hs := make([]Hash, 0, len(blocks))
		for h := range blocks {
			hs = append(hs, h)
		}
		sort.Slice(hs, func(i, j int) bool { return string(hs[i][:]) < string(hs[j][:]) })
		row := ChainRow{Snapshot: s.Name, Seq: s.Seq, Held: map[uint64]uint64{}}
		err := r.view(func(txn *badger.Txn) error {
			for _, h := range hs {
				start, _, found, err := lastInterval(txn, v.ID, h, s.Seq)
				if err != nil {
					return err
				}
				if !found {
					start = s.Seq
				}
				row.Held[start] += uint64(blocks[h])
				row.Total += uint64(blocks[h])
			}
			return ctx.Err()
		})
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}
