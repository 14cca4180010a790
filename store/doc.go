// Package store is the chainfs repository: volumes, incremental snapshot
// chains, content-addressed blocks and the trees that name them.
//
// A repository is a directory holding a marker file (format version, region),
// a badger database with all metadata (meta/) and pack files with block data
// (packs/). The key schema is in keys.go and described byte by byte in
// docs/format.md.
//
// # Chains
//
// A snapshot is a tree of directory blobs whose regular files list BLAKE3
// block hashes. Blocks are stored once per repository. For every volume the
// store keeps an interval index: for each block hash, the runs of consecutive
// snapshots of that volume that reference it. The first snapshot of a run is
// the one that holds the block; the others link to it. "Which snapshot holds
// block h in snapshot s" is one index seek, whatever the chain depth.
//
// # Atomicity
//
// A snapshot becomes visible with one small badger transaction that writes
// its record. Everything written before (pack data, block and tree records,
// the per-snapshot delta, interval updates) is either harmless when
// unreferenced or undone at the next Open from the delta journal, so a crash
// at any point leaves the repository as it was plus reclaimable space.
//
// store knows nothing of FUSE or the CLI; no badger type leaves the package.
package store
