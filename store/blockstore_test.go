package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc")
	}
	return len(names)
}

// TestPackHandlesBounded: readers of more packs than the handle cache
// keeps, at once and again, never hold more than the cache's bound plus
// the readers in flight, and a handle is never closed under a read (also
// when its pack is removed meanwhile). Handles are closed by count, not
// left to the garbage collector.
func TestPackHandlesBounded(t *testing.T) {
	bs, err := NewPackDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	const packs = maxOpenPacks + 300
	data := func(id uint64) []byte { return bytes.Repeat([]byte{byte(id)}, 64) }
	for id := uint64(1); id <= packs; id++ {
		w, err := bs.Create(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		w.Append(data(id))
		if err := w.Finish(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	before := openFDs(t)
	const readers = 8
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for round := range 3 {
				for i := uint64(0); i < packs; i++ {
					id := 1 + (i+uint64(g*97+round*31))%packs
					if err := bs.ReadAt(context.Background(), id, buf, 0); err != nil {
						errs <- fmt.Errorf("pack %d: %w", id, err)
						return
					}
					if !bytes.Equal(buf, data(id)) {
						errs <- fmt.Errorf("pack %d: wrong bytes", id)
						return
					}
				}
			}
		}()
	}
	// A pack removed while it is read: reads in flight finish.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := uint64(packs - 10); id <= packs; id++ {
			bs.Remove(context.Background(), id)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !bytes.Contains([]byte(err.Error()), []byte("repository data corrupt")) {
			t.Error(err)
		}
	}
	if after := openFDs(t); after-before > maxOpenPacks+readers {
		t.Errorf("%d descriptors open after reading %d packs, %d before: the cache keeps at most %d", after, packs, before, maxOpenPacks)
	}
}

// TestPackFileWrites: appends of every size, gathered and written by the
// pack's writer, reach the file in order and whole; a write that fails is
// returned by the next Append or by Finish, never lost; Abort removes the
// file whatever was queued.
func TestPackFileWrites(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *packFile {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return &packFile{f: f, dir: dir}
	}
	p := open("whole")
	var want []byte
	for i, n := range []int{1, 4096, packBuffer - 4097, 3, packBuffer, 2*packBuffer + 5, 256 << 10, 17} {
		b := bytes.Repeat([]byte{byte(i + 1)}, n)
		off, err := p.Append(b)
		if err != nil || off != int64(len(want)) {
			t.Fatalf("append %d bytes: offset %d, %v", n, off, err)
		}
		want = append(want, b...)
		clear(b) // the caller's buffer is its own again at once
	}
	if err := p.Finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "whole")); !bytes.Equal(got, want) {
		t.Errorf("pack holds %d bytes, want %d as appended", len(got), len(want))
	}

	p = open("failing")
	p.f.Close() // every write now fails
	var err error
	for i := 0; i < 8 && err == nil; i++ {
		_, err = p.Append(make([]byte, packBuffer))
	}
	if ferr := p.Finish(context.Background()); ferr == nil {
		t.Error("Finish of a pack whose writes failed succeeded")
	}

	p = open("aborted")
	p.Append(make([]byte, 3*packBuffer))
	p.Append(make([]byte, 10))
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "aborted")); !os.IsNotExist(err) {
		t.Errorf("aborted pack: %v", err)
	}
}

// TestPackFileLeavesPageCache: a pack being written keeps no more than
// two writeback chunks in the page cache, and none once finished, so a
// large snapshot does not fill the cache with packs.
func TestPackFileLeavesPageCache(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
		t.Skip("a tmpfs keeps its pages")
	}
	f, err := os.OpenFile(filepath.Join(dir, "pack"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if !canDrop(f) {
		t.Skip("sync_file_range is refused here")
	}
	p := &packFile{f: f, dir: dir}
	buf := bytes.Repeat([]byte{7}, packBuffer)
	for range 5 * writebackChunk / packBuffer {
		if err := p.write(buf); err != nil { // as the pack's writer does
			t.Fatal(err)
		}
	}
	if n := resident(t, f.Name()); n > 2*writebackChunk+packBuffer {
		t.Errorf("%d bytes of a %d-byte pack being written in the page cache; want at most two chunks", n, p.written)
	}
	p.size = p.written
	if err := p.Finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := resident(t, f.Name()); n != 0 {
		t.Errorf("%d bytes of a finished pack in the page cache", n)
	}
}

// resident is how many bytes of a file are in the page cache.
func resident(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n * page
}
