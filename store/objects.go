package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Objects is a store of objects by key, as object storage keeps them
// (store/s3's Bucket is one): each written whole, or only if it is as
// last seen, read by range, listed by prefix. An object that is not
// there is an error that errors.Is takes for fs.ErrNotExist.
type Objects interface {
	// Stat tells of the object at key.
	Stat(ctx context.Context, key string) (Object, error)
	// ReadAt fills p from the object at key, from off.
	ReadAt(ctx context.Context, key string, p []byte, off int64) error
	// Put writes the object at key whole, size bytes from r.
	Put(ctx context.Context, key string, r io.Reader, size int64) (Object, error)
	// PutIf writes data at key only if the object is as last seen: with
	// the ETag etag, or, when etag is "", not there at all. Otherwise it
	// writes nothing and fails with an error that errors.Is takes for
	// ErrChanged: of writers that saw the same object, one wins.
	PutIf(ctx context.Context, key string, data []byte, etag string) (Object, error)
	// Remove deletes the object at key; one that is not there is no error.
	Remove(ctx context.Context, key string) error
	// List yields the objects whose keys begin with prefix, in key order.
	List(ctx context.Context, prefix string) iter.Seq2[Object, error]
}

// Object is what an object store tells of one object.
type Object struct {
	Key  string
	Size int64
	// ETag names this content of the object.
	ETag     string
	Modified time.Time
}

// objectPacks is a BlockStore of packs as objects, packs/<id>.pack below
// a prefix. A pack is written to a file of a local staging directory as
// it is built and sent whole when it is finished: an object is written
// once and never changed, and one that is there is complete.
type objectPacks struct {
	objs   Objects
	prefix string
	stage  *packDir
	// cache, if set, keeps what reads fetched (chunkCache); sizes are
	// the sizes of the packs it read, which bound their last chunks.
	cache *chunkCache
	sizes sync.Map // pack id → int64
}

// NewObjectPacks returns a BlockStore that keeps packs as objects of
// objs below prefix ("" or ending in "/"), staged in the local directory
// staging while they are written. What staging holds is cleared: the
// packs of a writer that died, which were never sent (the caller holds
// the one lock of the directory).
func NewObjectPacks(objs Objects, prefix, staging string) (BlockStore, error) {
	o, err := newObjectPacks(objs, prefix, staging, nil)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// newObjectPacks is NewObjectPacks whose reads go through cache, if set.
func newObjectPacks(objs Objects, prefix, staging string, cache *chunkCache) (*objectPacks, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("object prefix %q does not end in /: %w", prefix, ErrInvalid)
	}
	if err := os.RemoveAll(staging); err != nil {
		return nil, fmt.Errorf("staging %s: %w", staging, err)
	}
	stage, err := newPackDir(staging)
	if err != nil {
		return nil, err
	}
	stage.staging = true
	return &objectPacks{objs: objs, prefix: prefix + packsDir + "/", stage: stage, cache: cache}, nil
}

func (o *objectPacks) key(id uint64) string { return fmt.Sprintf("%s%016x.pack", o.prefix, id) }

func (o *objectPacks) Create(ctx context.Context, id uint64) (PackWriter, error) {
	w, err := o.stage.Create(ctx, id)
	if err != nil {
		return nil, err
	}
	return &objectPackWriter{PackWriter: w, o: o, id: id}, nil
}

func (o *objectPacks) readStore(ctx context.Context, id uint64, p []byte, off int64) error {
	err := o.objs.ReadAt(ctx, o.key(id), p, off)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pack %016x: %v: %w", id, err, ErrCorrupt)
	}
	return err
}

func (o *objectPacks) ReadAt(ctx context.Context, id uint64, p []byte, off int64) error {
	if o.cache == nil {
		return o.readStore(ctx, id, p, off)
	}
	size := func(ctx context.Context) (int64, error) {
		if n, ok := o.sizes.Load(id); ok {
			return n.(int64), nil
		}
		n, err := o.PackSize(ctx, id)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("pack %016x: %v: %w", id, err, ErrCorrupt)
		} else if err != nil {
			return 0, err
		}
		o.sizes.Store(id, n)
		return n, nil
	}
	return o.cache.readAt(ctx, id, p, off, size, func(ctx context.Context, b []byte, off int64) error { return o.readStore(ctx, id, b, off) })
}

// dropCached forgets what the cache holds of [off, off+n) of pack id, so
// that the next read asks the store; false when there is no cache.
func (o *objectPacks) dropCached(id uint64, off int64, n int) bool {
	if o.cache == nil {
		return false
	}
	o.cache.forgetRange(id, off, n)
	return true
}

func (o *objectPacks) Remove(ctx context.Context, id uint64) error {
	if err := o.stage.Remove(ctx, id); err != nil {
		return err
	}
	if o.cache != nil {
		o.cache.forgetPack(id)
		o.sizes.LoadAndDelete(id)
	}
	return o.objs.Remove(ctx, o.key(id))
}

// List is the packs sent and those staged, being written or left by a
// writer that died.
func (o *objectPacks) List(ctx context.Context) ([]uint64, error) {
	ids, err := o.stage.List(ctx)
	if err != nil {
		return nil, err
	}
	for obj, err := range o.objs.List(ctx, o.prefix) {
		if err != nil {
			return nil, err
		}
		if id, ok := packIDOf(path.Base(obj.Key)); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// packIDOf reads a pack's id from its name, <id:016x>.pack.
func packIDOf(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".pack")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

func (o *objectPacks) PackSize(ctx context.Context, id uint64) (int64, error) {
	obj, err := o.objs.Stat(ctx, o.key(id))
	if err != nil {
		return 0, err
	}
	return obj.Size, nil
}

func (o *objectPacks) Size(ctx context.Context) (int64, error) {
	total, err := o.stage.Size(ctx)
	if err != nil {
		return 0, err
	}
	for obj, err := range o.objs.List(ctx, o.prefix) {
		if err != nil {
			return 0, err
		}
		total += obj.Size
	}
	return total, nil
}

func (o *objectPacks) Close() error { return o.stage.Close() }

// objectPackWriter builds a pack in the staging directory and sends it
// when it is finished.
type objectPackWriter struct {
	PackWriter
	o  *objectPacks
	id uint64
}

// Finish completes the staged file and sends it; the staged copy goes
// once the object is there. A pack that cannot be sent stays staged, for
// Abort to remove. Abort touches only the staged file: an object sent
// whose answer was lost, which no pack record names, goes at the next
// open's sweep of unrecorded packs, as a pack file of a killed writer
// does.
func (w *objectPackWriter) Finish(ctx context.Context) error {
	if err := w.PackWriter.Finish(ctx); err != nil {
		return err
	}
	f, err := os.Open(w.o.stage.path(w.id))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := w.o.objs.Put(ctx, w.o.key(w.id), f, st.Size()); err != nil {
		return fmt.Errorf("send pack %016x: %w", w.id, err)
	}
	return w.o.stage.Remove(ctx, w.id)
}
