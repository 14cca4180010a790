package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is; the store wraps them
// with the name of what failed.
var (
	// ErrNotFound: no such volume, snapshot, image, path or block.
	ErrNotFound = errors.New("not found")
	// ErrExists: the name is taken.
	ErrExists = errors.New("already exists")
	// ErrBusy: an operation that must run alone on a volume is running.
	ErrBusy = errors.New("busy")
	// ErrChanged is a write refused because what it was to replace
	// changed since it was read: an object's conditional write, or a
	// commit to a repository in an object store that another writer
	// committed to first (nothing of it was made; it may be run again).
	ErrChanged = errors.New("changed since last seen")
	// ErrInUse: another process holds the repository.
	ErrInUse = errors.New("repository in use")
	// ErrNotRepository: the path is not a chainfs repository.
	ErrNotRepository = errors.New("not a chainfs repository")
	// ErrFormat: the repository's format is unknown or newer than this build.
	ErrFormat = errors.New("unsupported repository format")
	// ErrCorrupt: stored data failed a consistency or hash check.
	ErrCorrupt = errors.New("repository data corrupt")
	// ErrDamagedMetadata: a file of the metadata database (a table, its
	// manifest) is damaged; the error names the file.
	// It is also ErrCorrupt.
	ErrDamagedMetadata = fmt.Errorf("metadata damaged: %w", ErrCorrupt)
	// ErrInvalid: a malformed name or argument.
	ErrInvalid = errors.New("invalid argument")
	// ErrHasSnapshots: the volume still has snapshots.
	ErrHasSnapshots = errors.New("volume has snapshots")
)
