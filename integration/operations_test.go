package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// newEnvWithSnapshot makes an env whose volume v has a snapshot s of one
// file f holding content, and an empty mount point.
func newEnvWithSnapshot(t *testing.T, content string) (*env, string) {
	t.Helper()
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte(content), 0o644)
	e.ok("volume", "add", "v", src)
	e.snapshot("v", "--name", "s")
	mnt := filepath.Join(e.dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	return e, mnt
}

// writeConfig writes a configuration file into the env and returns its path.
func (e *env) writeConfig(text string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// TestServeAsSystemdStartsIt starts chainfs serve the way the unit does:
// no flags, everything from the configuration file, a notify socket and a
// watchdog. READY=1 comes once the mount answers, WATCHDOG=1 while it
// does, STOPPING=1 on SIGTERM, and the mount is gone when it exits.
func TestServeAsSystemdStartsIt(t *testing.T) {
	e, mnt := newEnvWithSnapshot(t, "notified")
	cfg := e.writeConfig(fmt.Sprintf("repository = %q\n[serve]\nmount = %q\n", e.repo, mnt))

	sockPath := filepath.Join(e.dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	cmd := exec.Command(chainfsBin, "serve")
	cmd.Env = append(os.Environ(), "CHAINFS_CONFIG="+cfg, "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=600000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	log := &logBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})

	// next returns the next notification holding want.
	next := func(want string) string {
		t.Helper()
		buf := make([]byte, 4096)
		deadline := time.Now().Add(30 * time.Second)
		for {
			sock.SetReadDeadline(deadline)
			n, err := sock.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if msg := string(buf[:n]); strings.Contains(msg, want) {
				return msg
			}
		}
	}
	ready := next("READY=1")
	if !strings.Contains(ready, "STATUS=serving "+e.repo+" at "+mnt) {
		t.Errorf("ready notification %q: want a STATUS naming the repository and the mount", ready)
	}
	// Ready means ready: the mount answers at once.
	if b, err := os.ReadFile(filepath.Join(mnt, "volumes", "v", "s", "f")); err != nil || string(b) != "notified" {
		t.Fatalf("reading through the mount right after READY=1: %q, %v", b, err)
	}
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
	if mounted(mnt) {
		t.Error("still mounted after the daemon stopped")
	}
}

// TestConfigFile: settings come from the file unless a flag or the
// environment gives them; config show says where each comes from; a
// mistake names its line; commands find the daemon of the repository the
// file names.
func TestConfigFile(t *testing.T) {
	e := newEnv(t)
	mnt := filepath.Join(e.dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	cfg := e.writeConfig(fmt.Sprintf("repository = %q\nlog_level = \"info\"\n\n[serve]\nmount = %q\nmetrics = \"127.0.0.1:0\"\n\n[cache]\nmetadata = \"16MiB\"\n", e.repo, mnt))
	run := func(env []string, args ...string) result {
		t.Helper()
		cmd := exec.Command(chainfsBin, args...)
		cmd.Env = append(withoutRepoEnv(os.Environ()), env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{out.String(), errb.String(), code}
	}

	var show struct {
		File     string
		Loaded   bool
		Settings []struct{ Key, Value, Source string }
	}
	r := run([]string{"CHAINFS_CATALOG=" + e.dir}, "--config", cfg, "--log-level", "debug", "config", "show", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &show); err != nil || r.code != 0 {
		t.Fatalf("config show: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	want := map[string][2]string{
		"repository":     {e.repo, "config " + cfg + ":1"},
		"log_level":      {"debug", "flag --log-level"},
		"catalog":        {e.dir, "env CHAINFS_CATALOG"},
		"serve.mount":    {mnt, "config " + cfg + ":5"},
		"serve.metrics":  {"127.0.0.1:0", "config " + cfg + ":6"},
		"cache.metadata": {"16MiB", "config " + cfg + ":9"},
		"cache.trees":    {"50000", "default"},
	}
	for _, s := range show.Settings {
		if w, ok := want[s.Key]; ok && (s.Value != w[0] || s.Source != w[1]) {
			t.Errorf("config show %s = %q from %q; want %q from %q", s.Key, s.Value, s.Source, w[0], w[1])
		}
	}
	if !show.Loaded || show.File != cfg {
		t.Errorf("config show: file %q loaded %v", show.File, show.Loaded)
	}

	// The daemon takes its mount point and metrics address from the file,
	// and a CLI that names only the file reaches it.
	cmd := exec.Command(chainfsBin, "--config", cfg, "serve")
	cmd.Env = withoutRepoEnv(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	line := make([]byte, 256)
	n, _ := out.Read(line)
	if !strings.HasPrefix(string(line[:n]), "serving "+e.repo+" at "+mnt) {
		t.Fatalf("serve from the configuration: %q", line[:n])
	}
	e.ok("volume", "add", "mine", e.dir)
	if r := run(nil, "--config", cfg, "volume", "list"); r.code != 0 || !strings.Contains(r.stdout, "mine") {
		t.Errorf("volume list through the daemon of the configured repository: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	// Global flags after the command count when choosing the daemon: a
	// command for another repository is not run on the daemon's.
	other := newEnv(t)
	other.ok("volume", "add", "theirs", other.dir)
	if r := run([]string{"CHAINFS_REPO=" + e.repo}, "volume", "list", "--repo", other.repo); r.code != 0 ||
		!strings.Contains(r.stdout, "theirs") || strings.Contains(r.stdout, "mine") {
		t.Errorf("volume list --repo OTHER while a daemon serves $CHAINFS_REPO: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(e.dir, "bad.toml")
	os.WriteFile(bad, []byte("nonsense = 1\n"), 0o644)
	if r := run(nil, "--config", cfg, "volume", "list", "--config", bad); r.code != 2 || !strings.Contains(r.stderr, `unknown key "nonsense"`) {
		t.Errorf("a broken configuration file named after the command: exit %d: %s", r.code, r.stderr)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	// Mistakes name the file and the line; the exit status is 2.
	for text, msg := range map[string]string{
		"repository = \"/r\"\nlog_levle = \"info\"\n":        ":2: unknown key \"log_levle\"",
		"[serve]\nallow_other = \"yes\"\n":                   ":2: serve.allow_other: want true or false",
		"[serve]\nmetrics = \"localhost\"\n":                 ":2: serve.metrics: want HOST:PORT",
		"mount = \"/mnt\"\n":                                 ":1: unknown key \"mount\" (did you mean mount under [serve]?)",
		"[cache]\nmetadata = \"lots\"\n":                     ":2: cache.metadata: size \"lots\"",
		"log_level = \"loud\"\n":                             ":1: log_level: want debug, info, warn or error",
		"repository = \"relative/path\"\n":                   ":1: repository: want an absolute path",
		"[serve]\nmount = \"/m\"\n[serve]\nmount = \"/n\"\n": ":3: table serve already exists",
	} {
		bad := e.writeConfig(text)
		r := run(nil, "--config", bad, "volume", "list")
		if r.code != 2 || !strings.Contains(r.stderr, "config "+bad+msg) {
			t.Errorf("config %q: exit %d, %q; want exit 2 and %q", text, r.code, r.stderr, msg)
		}
	}
	if r := run(nil, "--config", filepath.Join(e.dir, "none.toml"), "volume", "list"); r.code == 0 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("a named configuration file that is missing: exit %d, %q", r.code, r.stderr)
	}
	// Without a mount point anywhere, serve says where to give one.
	empty := e.writeConfig("")
	if r := run(nil, "--config", empty, "--repo", e.repo, "serve"); r.code != 2 || !strings.Contains(r.stderr, "give --mount DIR, or set mount under [serve] in "+empty) {
		t.Errorf("serve without a mount point: exit %d, %q", r.code, r.stderr)
	}
}

func withoutRepoEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CHAINFS_REPO=") && !strings.HasPrefix(kv, "CHAINFS_CONFIG=") {
			out = append(out, kv)
		}
	}
	return out
}

// scrape fetches url and parses it with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// metric is the value of the series of family name whose labels include
// labels (name=value pairs), or NaN when there is none.
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return math.NaN()
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return math.NaN()
}

// TestMetrics scrapes serve --metrics and checks each figure against
// what the test did.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)
	data := randomData(7, 3<<20)
	os.WriteFile(filepath.Join(src, "big"), data, 0o644)
	os.WriteFile(filepath.Join(src, "victim"), randomData(8, 100<<10), 0o644)
	e.ok("volume", "add", "v", src)
	gone := filepath.Join(e.dir, "gone")
	os.MkdirAll(gone, 0o755)
	e.ok("volume", "add", "gone", gone)
	os.Remove(gone)
	e.ok("policy", "create", "nightly", "--at", "03:17", "--keep", "3")
	e.ok("policy", "apply", "nightly", "v")

	d := e.serve(filepath.Join(e.dir, "mnt"), "--metrics", "127.0.0.1:0")
	var url string
	for i := 0; i < 100 && url == ""; i++ {
		if m := regexp.MustCompile(`metrics at (http://\S+)`).FindStringSubmatch(d.out.String()); m != nil {
			url = m[1]
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if url == "" {
		t.Fatalf("serve --metrics printed no address:\n%s", d.out.String())
	}

	// Every volume has its series from the start, failures at 0, so that
	// the first failure is an increase.
	fams := scrape(t, url)
	for _, vol := range []string{"v", "gone"} {
		for _, res := range []string{"made", "failed", "skipped"} {
			if v := metric(fams, "chainfs_snapshots_total", "volume", vol, "result", res); v != 0 {
				t.Errorf("before any snapshot: chainfs_snapshots_total{volume=%s,result=%s} = %v, want 0", vol, res, v)
			}
		}
	}

	e.snapshot("v", "--name", "one")
	os.WriteFile(filepath.Join(src, "new"), []byte("more"), 0o644)
	e.snapshot("v", "--name", "two")
	if r := e.run("snapshot", "create", "gone"); r.code == 0 {
		t.Fatal("snapshot of a missing source succeeded")
	}
	got, err := os.ReadFile(filepath.Join(d.snapDir("v", "two"), "big"))
	if err != nil || len(got) != len(data) {
		t.Fatalf("read through the mount: %d bytes, %v", len(got), err)
	}

	fams = scrape(t, url)
	for _, c := range []struct {
		name   string
		labels []string
		want   func(float64) bool
		what   string
	}{
		{"chainfs_snapshots_total", []string{"volume", "v", "result", "made"}, eq(2), "2"},
		{"chainfs_snapshots_total", []string{"volume", "gone", "result", "failed"}, eq(1), "1"},
		{"chainfs_snapshot_duration_seconds", []string{"volume", "v"}, eq(2), "2 observations"},
		{"chainfs_snapshot_read_bytes_total", []string{"volume", "v"}, atLeast(float64(len(data))), "at least the big file"},
		{"chainfs_snapshot_stored_bytes_total", []string{"volume", "v"}, atLeast(float64(len(data))), "at least the big file"},
		{"chainfs_snapshot_last_success_timestamp_seconds", []string{"volume", "v"}, recent, "within the last minute"},
		{"chainfs_mount_read_bytes_total", nil, atLeast(float64(len(data))), "at least the big file"},
		{"chainfs_mount_reads_total", []string{"result", "ok"}, atLeast(1), "at least 1"},
		{"chainfs_mount_reads_total", []string{"result", "error"}, eq(0), "0"},
		{"chainfs_mount_read_duration_seconds", nil, atLeast(1), "at least 1 observation"},
		{"chainfs_verify_failures_total", []string{"source", "repository"}, eq(0), "0"},
		{"chainfs_repository_size_bytes", nil, atLeast(float64(len(data))), "at least the big file"},
		{"chainfs_build_info", []string{"format", "1"}, eq(1), "1"},
		{"process_resident_memory_bytes", nil, atLeast(1), "present"},
	} {
		if v := metric(fams, c.name, c.labels...); !c.want(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.what)
		}
	}
	// The policy's next run: the next 03:17, local time.
	next := time.Unix(int64(metric(fams, "chainfs_policy_next_run_timestamp_seconds", "volume", "v", "policy", "nightly")), 0).Local()
	if next.Hour() != 3 || next.Minute() != 17 || !next.After(time.Now()) || next.After(time.Now().Add(25*time.Hour)) {
		t.Errorf("policy next run %v: want the next 03:17", next)
	}

	// A damaged block: the read fails, and both the failed read and the
	// failed check are counted.
	packs, _ := filepath.Glob(filepath.Join(e.repo, "packs", "*.pack"))
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		if i := strings.Index(string(b), string(randomData(8, 100<<10)[:64])); i >= 0 {
			f, _ := os.OpenFile(p, os.O_RDWR, 0)
			f.WriteAt([]byte{b[i+10] ^ 0xff}, int64(i+10))
			f.Close()
		}
	}
	if _, err := os.ReadFile(filepath.Join(d.snapDir("v", "one"), "victim")); err == nil {
		t.Fatal("reading a damaged file succeeded")
	}
	fams = scrape(t, url)
	if v := metric(fams, "chainfs_verify_failures_total", "source", "repository"); v < 1 {
		t.Errorf("verify failures after a damaged read: %v", v)
	}
	if v := metric(fams, "chainfs_mount_reads_total", "result", "error"); v < 1 {
		t.Errorf("failed reads after a damaged read: %v", v)
	}
	// A removed volume's series go with it.
	e.ok("volume", "rm", "gone")
	if v := metric(scrape(t, url), "chainfs_snapshots_total", "volume", "gone"); !math.IsNaN(v) {
		t.Errorf("series of a removed volume still exported: %v", v)
	}
}

func eq(want float64) func(float64) bool      { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }
func recent(v float64) bool                   { return math.Abs(float64(time.Now().Unix())-v) < 60 }

// TestMountHelper mounts with mount(8) -t fuse.chainfs and from an fstab
// line, the way the system does at boot, and unmounts with umount(8).
func TestMountHelper(t *testing.T) {
	installMountHelper(t)
	e, mnt := newEnvWithSnapshot(t, "from fstab")
	t.Cleanup(func() {
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
		}
		waitUnlocked(t, e.repo)
	})

	check := func(how string) {
		t.Helper()
		if b, err := os.ReadFile(filepath.Join(mnt, "volumes", "v", "s", "f")); err != nil || string(b) != "from fstab" {
			t.Fatalf("%s: reading through the mount: %q, %v", how, b, err)
		}
		mi, _ := exec.Command("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", mnt).Output()
		if f := strings.Fields(string(mi)); len(f) < 3 || f[0] != e.repo || f[1] != "fuse.chainfs" || !strings.Contains(f[2], "allow_other") {
			t.Errorf("%s: findmnt: %q", how, mi)
		}
		sh(t, "umount "+mnt)
		waitUnlocked(t, e.repo)
		if mounted(mnt) {
			t.Fatalf("%s: still mounted after umount", how)
		}
	}

	env := append(withoutRepoEnv(os.Environ()), "CHAINFS_CONFIG="+os.DevNull)
	mount := func(args ...string) (string, error) {
		cmd := exec.Command("mount", args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := mount("-t", "fuse.chainfs", e.repo, mnt, "-o", "allow_other,log_level=info,nofail,x-systemd.device-timeout=5"); err != nil {
		t.Fatalf("mount -t fuse.chainfs: %v\n%s", err, out)
	}
	// The daemon keeps no directory of mount's busy.
	lock, _ := os.ReadFile(filepath.Join(e.repo, "lock"))
	if cwd, err := os.Readlink("/proc/" + strings.SplitN(string(lock), "\n", 2)[0] + "/cwd"); err != nil || cwd != "/" {
		t.Errorf("the daemon's working directory: %q, %v; want /", cwd, err)
	}
	check("mount -t fuse.chainfs")
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		// No journal here: the daemon logged to the repository, and
		// stopped at once when unmounted.
		log, err := os.ReadFile(filepath.Join(e.repo, "daemon.log"))
		if err != nil || !strings.Contains(string(log), "msg=serving") || !strings.Contains(string(log), "unmounted from outside; stopping") ||
			strings.Contains(string(log), "level=WARN") || strings.Contains(string(log), "chainfs:") {
			t.Errorf("daemon.log: %q, %v", log, err)
		}
	}

	fstab := filepath.Join(e.dir, "fstab")
	os.WriteFile(fstab, []byte(fmt.Sprintf("# a comment\n%s %s fuse.chainfs noauto,allow_other,read_ahead=4 0 0\n", e.repo, mnt)), 0o644)
	if out, err := mount("-T", fstab, mnt); err != nil {
		t.Fatalf("mount from an fstab line: %v\n%s", err, out)
	}
	check("fstab")

	// Mistakes fail the mount with the daemon's or the helper's words.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "fuse.chainfs", filepath.Join(e.dir, "nothing"), mnt}, "no repository here"},
		{[]string{"-t", "fuse.chainfs", e.repo, mnt, "-o", "turbo"}, `unknown option "turbo"`},
		{[]string{"-t", "fuse.chainfs", e.repo, mnt, "-o", "metrics"}, "option metrics needs a value"},
		{[]string{"-t", "fuse.chainfs", "relative", mnt}, "give the repository's absolute path"},
		{[]string{"-t", "fuse.chainfs", e.repo, filepath.Join(e.dir, "src")}, "not empty"},
	} {
		out, err := mount(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("mount %v: %v, %q; want failure with %q", c.args, err, out, c.want)
		}
		if mounted(mnt) {
			t.Fatalf("mount %v: mounted anyway", c.args)
		}
	}

	// A repository another user can change is refused before anything
	// in it is touched: its daemon.log is neither moved nor made.
	os.Remove(filepath.Join(e.repo, "daemon.log"))
	sh(t, fmt.Sprintf("chown -R %d:%d %s", user, user, e.repo))
	if out, err := mount("-t", "fuse.chainfs", e.repo, mnt); err == nil || !strings.Contains(out, "another user can change") || mounted(mnt) {
		t.Errorf("mount of uid %d's repository as root: %v, %q; want refused", user, err, out)
	}
	if _, err := os.Lstat(filepath.Join(e.repo, "daemon.log")); !os.IsNotExist(err) {
		t.Errorf("root made daemon.log in uid %d's repository (%v)", user, err)
	}
}

// installMountHelper makes the chainfs under test mount(8)'s helper for
// fuse.chainfs while t runs, or skips t when another one is installed.
func installMountHelper(t *testing.T) {
	const helper = "/sbin/mount.fuse.chainfs"
	if target, err := os.Readlink(helper); err == nil && target != chainfsBin {
		t.Skipf("%s is installed (-> %s); not replacing it", helper, target)
	} else if err != nil {
		if err := os.Symlink(chainfsBin, helper); err != nil {
			t.Skipf("cannot install %s: %v", helper, err)
		}
		t.Cleanup(func() { os.Remove(helper) })
	}
}

// waitUnlocked waits until no process holds the repository (a daemon
// exits a moment after its mount goes).
func waitUnlocked(t *testing.T, repo string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		f, err := os.Open(filepath.Join(repo, "lock"))
		if err != nil {
			return
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(repo, "lock"))
	if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	t.Errorf("repository still held 10 s later: %s", b)
}

// TestDoctor: doctor names what is missing and how to fix it, and fails
// while something is broken.
func TestDoctor(t *testing.T) {
	e := newEnv(t)
	doctor := func(repo string) result {
		t.Helper()
		return e.run("--repo", repo, "doctor")
	}
	r := doctor(filepath.Join(e.dir, "elsewhere"))
	if r.code != 1 || !regexp.MustCompile(`FAIL\s+repository\s+\S+elsewhere: not initialised`).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, "fix: chainfs --repo "+filepath.Join(e.dir, "elsewhere")+" init") {
		t.Errorf("doctor without a repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Other chainfs mounts on the machine may fail their own checks; the
	// findings about this repository are what count.
	r = doctor(e.repo)
	if !regexp.MustCompile(`ok\s+/dev/fuse`).MatchString(r.stdout) || !regexp.MustCompile(`ok\s+repository\s+`+regexp.QuoteMeta(e.repo)).MatchString(r.stdout) ||
		!regexp.MustCompile(`warn\s+daemon\s+not running`).MatchString(r.stdout) {
		t.Errorf("doctor with a repository and no daemon: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A daemon killed outright leaves a stale mount: doctor finds it.
	mnt := filepath.Join(e.dir, "mnt")
	d := e.serve(mnt)
	r = doctor(e.repo)
	if !strings.Contains(r.stdout, "serving "+e.repo+"; mounted at "+mnt) ||
		!strings.Contains(r.stdout, mnt+" (repository "+e.repo+") answers") {
		t.Errorf("doctor with the daemon running: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d.cmd.Process.Kill()
	<-d.done
	r = doctor(e.repo)
	if r.code != 1 || !strings.Contains(r.stdout, mnt+" (repository "+e.repo+"): stale") || !strings.Contains(r.stdout, "fix: umount -l "+mnt) {
		t.Errorf("doctor over a stale mount: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var findings []struct{ Check, Result, Detail, Fix string }
	if err := json.Unmarshal([]byte(e.run("--repo", e.repo, "doctor", "--json").stdout), &findings); err != nil || len(findings) < 5 {
		t.Errorf("doctor --json: %v %v", findings, err)
	}
}

// TestVersion: version names the formats this build reads.
func TestVersion(t *testing.T) {
	e := newEnv(t)
	var v struct {
		Version, Commit, Go string
		Format              int `json:"repository_format"`
		Schema              int `json:"metadata_schema"`
		ImageFormat         int `json:"image_format"`
	}
	if err := json.Unmarshal([]byte(e.ok("version", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version == "" || v.Commit == "" || !strings.HasPrefix(v.Go, "go") || v.Format != 1 || v.Schema != 3 || v.ImageFormat != 1 {
		t.Errorf("version: %+v", v)
	}
	if out := e.ok("--version"); !strings.Contains(out, v.Version) {
		t.Errorf("--version: %q", out)
	}
}

// TestCompletionAndManPage: the completion scripts complete in each
// shell from the binary's own commands and flags, the man page renders
// without warnings, and make install puts each where it is looked for.
func TestCompletionAndManPage(t *testing.T) {
	e := newEnv(t)
	binDir := t.TempDir()
	os.Symlink(chainfsBin, filepath.Join(binDir, "chainfs"))
	path := binDir + ":" + os.Getenv("PATH")
	shell := func(name, script string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, append([]string{"-c", script, name}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	commands := strings.Fields(e.ok("--generate-bash-completion"))
	for _, want := range []string{"snapshot", "serve", "doctor", "config", "completion", "man", "version"} {
		if !contains(commands, want) {
			t.Errorf("top-level completion %v lacks %s", commands, want)
		}
	}
	bash := func(line string) []string {
		t.Helper()
		return strings.Fields(shell("bash", `source <(chainfs completion bash)
read -ra COMP_WORDS <<<"$1"; [[ "$1" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _chainfs_complete; printf '%s\n' "${COMPREPLY[@]}"`, line))
	}
	for line, want := range map[string][]string{
		"chainfs snap":                {"snapshot"},
		"chainfs snapshot ":           {"create", "delete", "diff", "hold", "release", "list"},
		"chainfs serve --metr":        {"--metrics"},
		"chainfs --rep":               {"--repo"},
		"chainfs config ":             {"show"},
		"chainfs image export --form": {"--format"},
		"chainfs gc --":               {"--json", "--help"},
		"chainfs restore --":          {"--overwrite", "--delete", "--no-owners", "--json", "--help"},
	} {
		if got := bash(line); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("bash completion of %q: %v, want %v", line, got, want)
		}
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		got := shell("zsh", `compdef() {}; _describe() { print -l -- "${(@P)2}" }; _files() { print FILES }
source <(chainfs completion zsh)
words=(chainfs snapshot cr); CURRENT=3; _chainfs
words=(chainfs serve --allow); CURRENT=3; _chainfs
words=(chainfs gc --); CURRENT=3; _chainfs`)
		if strings.Fields(got)[0] != "create" || !strings.Contains(got, "--allow-other") || !strings.Contains(got, "--json\n--help") {
			t.Errorf("zsh completion: %q", got)
		}
	} else {
		t.Error("zsh is not installed (make deps installs it)")
	}
	if _, err := exec.LookPath("fish"); err == nil {
		got := shell("fish", `chainfs completion fish | source; complete -C "chainfs snap"; complete -C "chainfs serve --met"`)
		if !strings.Contains(got, "snapshot") || !strings.Contains(got, "--metrics") {
			t.Errorf("fish completion: %q", got)
		}
	} else {
		t.Error("fish is not installed (make deps installs it)")
	}

	page := filepath.Join(e.dir, "chainfs.1")
	os.WriteFile(page, []byte(e.ok("man")), 0o644)
	cmd := exec.Command("man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat")
	var out, warn strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &warn
	if err := cmd.Run(); err != nil || warn.Len() > 0 {
		t.Errorf("man -l: %v\n%s", err, warn.String())
	}
	for _, want := range []string{"NAME", "chainfs - incremental snapshots", "serve", "--metrics", "doctor", "/etc/chainfs/config.toml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the rendered man page lacks %q", want)
		}
	}

	// make install into a staging root.
	stage := t.TempDir()
	root, _ := filepath.Abs("..")
	mk := exec.Command("make", "--no-print-directory", "-C", root, "install", "DESTDIR="+stage)
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, b)
	}
	for _, f := range []string{"usr/local/bin/chainfs", "usr/local/lib/systemd/system/chainfs.service", "usr/local/share/man/man1/chainfs.1.gz",
		"usr/local/share/bash-completion/completions/chainfs", "usr/local/share/zsh/site-functions/_chainfs",
		"usr/local/share/fish/vendor_completions.d/chainfs.fish", "etc/chainfs/config.toml", "mnt/chainfs"} {
		if _, err := os.Stat(filepath.Join(stage, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	if target, _ := os.Readlink(filepath.Join(stage, "sbin/mount.fuse.chainfs")); target != "/usr/local/bin/chainfs" {
		t.Errorf("mount helper link -> %q", target)
	}
	r := e.run("--config", filepath.Join(stage, "etc/chainfs/config.toml"), "config", "show")
	if r.code != 0 || !strings.Contains(r.stdout, "/mnt/chainfs") {
		t.Errorf("the installed configuration file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	unit, _ := os.ReadFile(filepath.Join(stage, "usr/local/lib/systemd/system/chainfs.service"))
	if !strings.Contains(string(unit), "\nType=notify\n") || !strings.Contains(string(unit), "\nExecStart=/usr/local/bin/chainfs serve\n") {
		t.Errorf("unit:\n%s", unit)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// Verified as it would run here: the built binary in ExecStart.
		local := filepath.Join(e.dir, "chainfs.service")
		os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/chainfs", chainfsBin)), 0o644)
		if b, err := exec.Command("systemd-analyze", "--man=no", "verify", local).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, b)
		}
		// The sandboxing stays where it is (4.7 of 10; lower is safer).
		if b, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=50", local).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze security rates the unit above 5.0: %v\n%s", err, b)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
