package store

import "sync"

// placeCacheSize bounds the places a Repo remembers: 32,768 blocks, 8 GiB
// of data at the default block size, in about 3 MiB.
const placeCacheSize = 1 << 15

// place is where a block's bytes lie: a pack, an offset and a length,
// and how they are kept there.
type place struct {
	pack, offset uint64
	length       uint32
	codec        Codec
}

// placeCache remembers where blocks were last read, so that a read need
// not look its block up in the metadata store, whose lookups cost more as
// it grows with the chain. An entry may go stale (gc moves blocks, repair
// stores damaged ones anew), and that is safe: packs never change and
// their ids are never reused, so a stale place either reads the block's
// own bytes or fails (its pack is gone, or damaged), and a failed read
// looks the block up afresh.
type placeCache struct {
	mu     sync.Mutex
	places map[Hash]place
}

func newPlaceCache() *placeCache { return &placeCache{places: make(map[Hash]place)} }

func (c *placeCache) get(h Hash) (place, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.places[h]
	return p, ok
}

func (c *placeCache) put(h Hash, p place) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.places) >= placeCacheSize {
		// Emptied when full: a read of a new region refills it, and no
		// order needs keeping for an eviction policy.
		c.places = make(map[Hash]place, placeCacheSize)
	}
	c.places[h] = p
}

func (c *placeCache) drop(h Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.places, h)
}
