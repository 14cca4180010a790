package integration

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGCGivesSpaceBack: after deleting all but the last snapshot and
// running gc, the repository is at most 1.2 × a fresh repository holding
// one snapshot of the same data, and the last snapshot restores exactly.
func TestGCGivesSpaceBack(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	e.ok("volume", "add", "v", src)
	for i := 0; i < 5; i++ {
		// Each round replaces most of the data.
		for j := 0; j < 4; j++ {
			os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", j)), randomData(uint64(100*i+j), 8<<20), 0o644)
		}
		e.snapshot("v", "--name", fmt.Sprintf("s%d", i))
	}
	for i := 0; i < 4; i++ {
		e.ok("snapshot", "delete", fmt.Sprintf("v/s%d", i))
	}
	e.ok("trash", "empty", "v") // deleted snapshots keep their data in the trash until then
	var st struct {
		BlocksFreed uint64 `json:"blocks_freed"`
		SizeAfter   int64  `json:"size_after"`
	}
	if err := json.Unmarshal([]byte(e.ok("gc", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.BlocksFreed == 0 {
		t.Error("gc freed nothing")
	}
	gcSize := du(t, e.repo)

	fresh := &env{t: t, dir: e.dir, repo: filepath.Join(e.dir, "fresh")}
	fresh.ok("init")
	fresh.ok("volume", "add", "v", src)
	fresh.snapshot("v", "--name", "only")
	freshSize := du(t, fresh.repo)
	t.Logf("after gc %d bytes, fresh %d bytes (%.2f)", gcSize, freshSize, float64(gcSize)/float64(freshSize))
	if float64(gcSize) > 1.2*float64(freshSize) {
		t.Errorf("after gc the repository takes %d bytes, %.2f × a fresh one (%d)", gcSize, float64(gcSize)/float64(freshSize), freshSize)
	}
	dst := filepath.Join(e.dir, "restored")
	e.ok("restore", "v/s4", dst)
	rsyncSame(t, src, dst)
}

// TestExclusiveSizeIsTrue: usage's exclusive size of a snapshot is within
// 5 % of what deleting it (and emptying it from the trash) and running gc
// frees.
func TestExclusiveSizeIsTrue(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	e.ok("volume", "add", "v", src)
	os.WriteFile(filepath.Join(src, "stable"), randomData(1, 8<<20), 0o644)
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(src, "changing"), randomData(uint64(10+i), 6<<20), 0o644)
		e.snapshot("v", "--name", fmt.Sprintf("s%d", i))
	}
	var u struct {
		Snapshots []struct {
			Snapshot  string `json:"snapshot"`
			Exclusive uint64 `json:"exclusive_bytes"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(e.ok("usage", "--json")), &u); err != nil {
		t.Fatal(err)
	}
	var excl uint64
	for _, s := range u.Snapshots {
		if s.Snapshot == "s1" {
			excl = s.Exclusive
		}
	}
	before := du(t, e.repo)
	e.ok("snapshot", "delete", "v/s1")
	e.ok("trash", "empty", "v/s1")
	var st struct {
		BytesFreed uint64 `json:"bytes_freed"`
	}
	if err := json.Unmarshal([]byte(e.ok("gc", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	shrink := before - du(t, e.repo)
	for what, freed := range map[string]float64{"gc's count": float64(st.BytesFreed), "du": float64(shrink)} {
		if diff := freed - float64(excl); excl == 0 || diff > 0.05*float64(excl) || diff < -0.05*float64(excl) {
			t.Errorf("s1: exclusive %d, deleting it freed %.0f by %s", excl, freed, what)
		}
	}
	if out := e.ok("usage"); !strings.Contains(out, "by deduplication and compression") {
		t.Errorf("usage:\n%s", out)
	}
}

// TestGCWhileReading: gc rewrites a pack while the mount reads the live
// blocks in it; every read is exact.
func TestGCWhileReading(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	live := randomData(1, 4<<20)
	os.WriteFile(filepath.Join(src, "live"), live, 0o644)
	os.WriteFile(filepath.Join(src, "dead"), randomData(2, 12<<20), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "a") // one pack: live (4 MiB) and dead (12 MiB)
	os.WriteFile(filepath.Join(src, "dead"), randomData(3, 1<<20), 0o644)
	e.snapshot("v", "--name", "b")
	e.ok("snapshot", "delete", "v/a") // the first pack is now a quarter live
	d := e.serve(filepath.Join(e.dir, "mnt"))

	path := filepath.Join(d.snapDir("v", "b"), "live")
	stop := make(chan struct{})
	errs := make(chan error, 1)
	reads := 0
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) // read through the daemon, not the page cache
			got, err := os.ReadFile(path)
			if err != nil || string(got) != string(live) {
				errs <- fmt.Errorf("read %d: %v, exact %v", reads, err, string(got) == string(live))
				return
			}
			reads++
		}
	}()
	var st struct {
		PacksRepacked uint64 `json:"packs_repacked"`
	}
	if err := json.Unmarshal([]byte(e.ok("gc", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
		if got, err := os.ReadFile(path); err != nil || string(got) != string(live) {
			t.Errorf("read after gc: %v", err)
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Error(err)
	}
	if st.PacksRepacked == 0 {
		t.Errorf("gc repacked nothing; the test did not test")
	}
	t.Logf("%d reads during gc", reads)
}

// TestDaemonMergesSmallPacks: a chain of small snapshots taken through the
// daemon leaves a pack each; the daemon merges them in the background,
// without anyone running gc, and every snapshot still reads exactly
// through the mount, also while the merge may be moving its blocks.
func TestDaemonMergesSmallPacks(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	file := filepath.Join(src, "disk.img")
	data := randomData(1, 4<<20)
	os.WriteFile(file, data, 0o644)
	e.ok("volume", "add", "v", src)
	d := e.serve(filepath.Join(e.dir, "mnt"))
	const rounds = 20
	var sums [rounds][32]byte
	for i := range rounds {
		// One 64 KiB block changes: a pack of one block.
		copy(data[i*64<<10:], randomData(uint64(100+i), 64<<10))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(data)
		e.snapshot("v", "--name", fmt.Sprintf("s%d", i))
	}
	packs := func() int {
		ids, _ := filepath.Glob(filepath.Join(e.repo, "packs", "*.pack"))
		return len(ids)
	}
	before := packs()
	if before < rounds {
		t.Fatalf("%d packs after %d snapshots", before, rounds)
	}
	readAll := func() {
		for i := range rounds {
			b, err := os.ReadFile(filepath.Join(d.snapDir("v", fmt.Sprintf("s%d", i)), "disk.img"))
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(b) != sums[i] {
				t.Fatalf("snapshot s%d reads other bytes than were snapshotted", i)
			}
		}
	}
	// The daemon looks every 10 s; the chain settles 10 s after its last
	// snapshot, and then the smallest packs are merged too.
	deadline := time.Now().Add(90 * time.Second)
	for packs() > 2 && time.Now().Before(deadline) {
		readAll()
		time.Sleep(time.Second)
	}
	if n := packs(); n > 2 {
		t.Fatalf("%d packs (%d before) after 90 s of the daemon", n, before)
	}
	if !strings.Contains(d.log.String(), "merged small packs") {
		t.Errorf("the daemon did not log its merge:\n%s", d.log.String())
	}
	readAll()
	e.ok("check")
}
