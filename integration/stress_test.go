package integration

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentStress: 16 readers read files of stable snapshots through
// the mount, comparing every byte, while the CLI makes snapshots, deletes
// others and runs gc; the daemon's open files and memory stay flat.
// CHAINFS_STRESS_SECONDS sets how long (default 10; make stress runs
// minutes, with a race-built binary).
func TestConcurrentStress(t *testing.T) {
	seconds := 10
	if n, err := strconv.Atoi(os.Getenv("CHAINFS_STRESS_SECONDS")); err == nil && n > 0 {
		seconds = n
	}
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	const files = 12
	sum := func(b []byte) [32]byte { return sha256.Sum256(b) }
	want := map[string][files][32]byte{} // stable snapshot → file digests
	write := func(gen, i int) [32]byte {
		data := randomData(uint64(gen*100+i), 64<<10+(gen*7919+i*104729)%(3<<20))
		os.WriteFile(filepath.Join(src, fmt.Sprint("f", i)), data, 0o644)
		return sum(data)
	}
	var digests [files][32]byte
	for i := 0; i < files; i++ {
		digests[i] = write(0, i)
	}
	e.ok("volume", "add", "v", src)
	var stable []string
	for g := 0; g < 3; g++ {
		for i := g; i < files; i += 3 {
			digests[i] = write(g+1, i)
		}
		name := fmt.Sprint("stable", g)
		e.snapshot("v", "--name", name)
		want[name] = digests
		stable = append(stable, name)
	}
	d := e.serve(filepath.Join(e.dir, "mnt"))
	pid := d.cmd.Process.Pid
	fds0, rss0 := openFiles(pid), rssKiB(pid)

	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	var reads sync.Map
	for r := 0; r < 16; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 3))
			n := 0
			for time.Now().Before(deadline) {
				snap := stable[rng.IntN(len(stable))]
				i := rng.IntN(files)
				b, err := os.ReadFile(filepath.Join(d.snapDir("v", snap), fmt.Sprint("f", i)))
				if err != nil || sum(b) != want[snap][i] {
					errs <- fmt.Errorf("reader %d: %s/f%d: %v (bytes wrong: %v)", r, snap, i, err, err == nil)
					return
				}
				n++
			}
			reads.Store(r, n)
		}(r)
	}
	// Page-cache drops make readers go through the daemon again and again.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	var made []string
	for g := 10; time.Now().Before(deadline); g++ {
		for i := g % 3; i < files; i += 3 {
			write(g, i)
		}
		name := fmt.Sprint("churn", g)
		e.snapshot("v", "--name", name)
		made = append(made, name)
		if len(made) > 2 {
			e.ok("snapshot", "delete", "v/"+made[0])
			made = made[1:]
		}
		if g%3 == 0 {
			e.ok("gc")
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	reads.Range(func(_, v any) bool { total += v.(int); return true })
	e.ok("check", "--read-data")
	fds1, rss1 := openFiles(pid), rssKiB(pid)
	t.Logf("%d verified reads; daemon open files %d → %d, RSS %d → %d KiB", total, fds0, fds1, rss0, rss1)
	if fds1 > fds0+32 {
		t.Errorf("the daemon's open files grew from %d to %d", fds0, fds1)
	}
	if rss1 > 2*rss0+200<<10 {
		t.Errorf("the daemon's RSS grew from %d to %d KiB", rss0, rss1)
	}
	d.stop()
	if strings.Contains(d.log.String(), "DATA RACE") {
		t.Errorf("the race detector reported a race in the daemon")
	}
}

func openFiles(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

func rssKiB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
