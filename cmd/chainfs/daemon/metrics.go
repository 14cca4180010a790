//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot outcomes, the values of the result label.
const (
	resultMade    = "made"
	resultFailed  = "failed"
	resultSkipped = "skipped"
)

// metrics are what serve --metrics exports. Counters that the store
// keeps are read when scraped; the rest are updated as things happen.
type metrics struct {
	repo     *store.Repo
	log      *slog.Logger
	registry *prometheus.Registry

	mu      sync.Mutex
	volumes map[string]bool // those with series

	snapshots       *prometheus.CounterVec
	snapshotSeconds *prometheus.HistogramVec
	readBytes       *prometheus.CounterVec
	storedBytes     *prometheus.CounterVec
	lastSuccess     *prometheus.GaugeVec

	mountReadBytes prometheus.Counter
	mountReads     *prometheus.CounterVec
	mountReadTime  prometheus.Histogram
}

func newMetrics(repo *store.Repo, catalog *imagefile.Catalog, version string, nextRuns func(context.Context) map[[2]string]time.Time, log *slog.Logger) *metrics {
	m := &metrics{
		repo:     repo,
		log:      log,
		volumes:  map[string]bool{},
		registry: prometheus.NewRegistry(),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chainfs_snapshots_total",
			Help: "Snapshots this daemon made, failed or skipped (a policy's run while the volume was busy), by volume.",
		}, []string{"volume", "result"}),
		snapshotSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chainfs_snapshot_duration_seconds",
			Help:    "Time taken by the snapshots this daemon made, by volume.",
			Buckets: []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600},
		}, []string{"volume"}),
		readBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chainfs_snapshot_read_bytes_total",
			Help: "Bytes read from volumes' sources by the snapshots this daemon made.",
		}, []string{"volume"}),
		storedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chainfs_snapshot_stored_bytes_total",
			Help: "Bytes of new blocks the snapshots this daemon made stored.",
		}, []string{"volume"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chainfs_snapshot_last_success_timestamp_seconds",
			Help: "When the newest snapshot of each volume began (Unix time): from the repository at start, then as snapshots commit.",
		}, []string{"volume"}),
		mountReadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chainfs_mount_read_bytes_total",
			Help: "Bytes of file data read through the mount.",
		}),
		mountReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chainfs_mount_reads_total",
			Help: "Read requests the mount answered, by result (ok or error).",
		}, []string{"result"}),
		mountReadTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chainfs_mount_read_duration_seconds",
			Help:    "Time to answer a read request through the mount.",
			Buckets: []float64{10e-6, 50e-6, 100e-6, 500e-6, 1e-3, 5e-3, 10e-3, 50e-3, 0.1, 0.5, 1, 5},
		}),
	}
	m.mountReads.WithLabelValues("ok")
	m.mountReads.WithLabelValues("error")
	verify := prometheus.NewDesc("chainfs_verify_failures_total",
		"Blocks and trees read that failed their BLAKE3 check, by where they were read from.", []string{"source"}, nil)
	size := prometheus.NewDesc("chainfs_repository_size_bytes", "Space the repository takes on disk.", nil, nil)
	next := prometheus.NewDesc("chainfs_policy_next_run_timestamp_seconds",
		"When each volume's snapshot policy runs next (Unix time).", []string{"volume", "policy"}, nil)
	build := prometheus.NewDesc("chainfs_build_info", "The running chainfs: always 1.",
		[]string{"version", "goversion", "format", "schema"}, nil)
	m.registry.MustRegister(m.snapshots, m.snapshotSeconds, m.readBytes, m.storedBytes, m.lastSuccess,
		m.mountReadBytes, m.mountReads, m.mountReadTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectorFunc{descs: []*prometheus.Desc{verify, size, next, build}, collect: func(ch chan<- prometheus.Metric) {
			ch <- prometheus.MustNewConstMetric(verify, prometheus.CounterValue, float64(repo.Index().VerifyFailures()), "repository")
			if catalog != nil {
				ch <- prometheus.MustNewConstMetric(verify, prometheus.CounterValue, float64(catalog.VerifyFailures()), "catalog")
			}
			// Without a figure the metric is left out, not the scrape.
			if used, err := repo.Index().SpaceUsed(); err == nil {
				ch <- prometheus.MustNewConstMetric(size, prometheus.GaugeValue, float64(used))
			} else {
				m.log.Warn("metrics: repository size", "err", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for vp, at := range nextRuns(ctx) {
				ch <- prometheus.MustNewConstMetric(next, prometheus.GaugeValue, float64(at.Unix()), vp[0], vp[1])
			}
			ch <- prometheus.MustNewConstMetric(build, prometheus.GaugeValue, 1, version, runtime.Version(),
				fmt.Sprint(store.FormatVersion), fmt.Sprint(store.SchemaVersion))
		}})
	return m
}

// perVolume are the vectors with a volume label.
func (m *metrics) perVolume() []interface {
	DeletePartialMatch(prometheus.Labels) int
} {
	return []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.snapshots, m.snapshotSeconds, m.readBytes, m.storedBytes, m.lastSuccess}
}

// syncVolumes gives every volume its series before a scrape: each result
// at 0 from the start (so that the first failure is an increase), and the
// newest snapshot's time; a removed volume's series go.
func (m *metrics) syncVolumes(ctx context.Context) {
	vols, err := m.repo.Volumes(ctx)
	if err != nil {
		m.log.Warn("metrics: volumes", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	present := map[string]bool{}
	for _, v := range vols {
		present[v.Name] = true
		if m.volumes[v.Name] {
			continue
		}
		for _, r := range []string{resultMade, resultFailed, resultSkipped} {
			m.snapshots.WithLabelValues(v.Name, r)
		}
		if snaps, err := m.repo.Snapshots(ctx, v.Name); err == nil && len(snaps) > 0 {
			m.lastSuccess.WithLabelValues(v.Name).Set(float64(snaps[len(snaps)-1].Time.Unix()))
		}
		m.volumes[v.Name] = true
	}
	for name := range m.volumes {
		if !present[name] {
			for _, vec := range m.perVolume() {
				vec.DeletePartialMatch(prometheus.Labels{"volume": name})
			}
			delete(m.volumes, name)
		}
	}
}

// snapshotEnded counts a snapshot that had begun (store.Watcher.SnapshotEnded).
func (m *metrics) snapshotEnded(e store.SnapshotEnd) {
	if e.Snapshot == nil {
		m.snapshots.WithLabelValues(e.Volume, resultFailed).Inc()
		return
	}
	m.snapshots.WithLabelValues(e.Volume, resultMade).Inc()
	m.snapshotSeconds.WithLabelValues(e.Volume).Observe(e.Took.Seconds())
	m.readBytes.WithLabelValues(e.Volume).Add(float64(e.Snapshot.Stats.ReadBytes))
	m.storedBytes.WithLabelValues(e.Volume).Add(float64(e.Snapshot.Stats.StoredBytes))
	m.lastSuccess.WithLabelValues(e.Volume).Set(float64(e.Snapshot.Time.Unix()))
}

// skipped counts a policy's run that did not start.
func (m *metrics) skipped(volume string) {
	m.snapshots.WithLabelValues(volume, resultSkipped).Inc()
}

// Read counts a read through the mount (chainfs.Observer).
func (m *metrics) Read(n int, took time.Duration, failed bool) {
	m.mountReadBytes.Add(float64(n))
	m.mountReadTime.Observe(took.Seconds())
	if failed {
		m.mountReads.WithLabelValues("error").Inc()
	} else {
		m.mountReads.WithLabelValues("ok").Inc()
	}
}

// serve answers GET /metrics on addr until ctx is done. It returns once
// it listens, with the address it listens on (addr may ask for port 0).
func (m *metrics) serve(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	metricsHandler := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		m.syncVolumes(r.Context())
		metricsHandler.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// collectorFunc is a collector of metrics made when scraped.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// slogPrinter logs promhttp's errors.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics: " + fmt.Sprint(v...)) }
