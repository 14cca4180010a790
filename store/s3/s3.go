// Package s3 reaches a bucket of an S3-compatible object store (AWS S3,
// Alibaba OSS, Ceph RGW, MinIO, SeaweedFS) through minio-go, configured
// as the ecosystem configures its tools: the endpoint from
// AWS_ENDPOINT_URL, credentials from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN or a profile of
// ~/.aws/credentials (AWS_PROFILE), the region from AWS_REGION, TLS with
// the system's certificate authorities.
//
// A Bucket reads objects whole or by range and writes them whole, or only
// if the object is as last seen (a conditional PUT), the one primitive
// on which a commit to object storage can be made atomic. Probe checks
// that an engine honours it.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Scheme begins a location in a bucket: s3://BUCKET[/KEY].
const Scheme = "s3://"

var (
	// ErrNotFound is an object, or a bucket, that is not there; errors.Is
	// takes it for fs.ErrNotExist too, as store.Objects asks.
	ErrNotFound error = notFound{}
	// ErrChanged is a conditional write refused: the object is not as
	// the writer last saw it (or exists where it was to be new). It is
	// store.ErrChanged, as store.Objects asks.
	ErrChanged = store.ErrChanged
	// ErrUnsupported is an engine that does not honour what chainfs
	// needs of it (Probe).
	ErrUnsupported = errors.New("unsupported by the object store")
	// ErrTimeout is a read the store did not answer within its bound. It
	// is no cancellation of the caller's (a FUSE read answers it with EIO,
	// not EINTR, which a reader would only retry).
	ErrTimeout = errors.New("no answer from the object store in time")
)

type notFound struct{}

func (notFound) Error() string        { return "not found" }
func (notFound) Is(target error) bool { return target == fs.ErrNotExist }

// Location is a bucket and a key in it (or a prefix of keys), as
// s3://BUCKET/KEY names them.
type Location struct {
	Bucket string
	Key    string
}

func (l Location) String() string { return strings.TrimSuffix(Scheme+l.Bucket+"/"+l.Key, "/") }

// IsURL reports whether s names a location in a bucket.
func IsURL(s string) bool { return strings.HasPrefix(s, Scheme) }

// ParseURL reads s3://BUCKET[/KEY]. The bucket name is checked as S3
// checks it (3 to 63 lower-case letters, digits, '.' and '-'); the key is
// kept as written, less a leading '/'.
func ParseURL(s string) (Location, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Location{}, fmt.Errorf("%q: not an %sBUCKET[/KEY] location", s, Scheme)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if !validBucket(bucket) {
		return Location{}, fmt.Errorf("%q: bucket %q: want 3 to 63 lower-case letters, digits, '.' and '-'", s, bucket)
	}
	for _, part := range strings.Split(strings.Trim(key, "/"), "/") {
		if part == "." || part == ".." {
			return Location{}, fmt.Errorf("%q: no part of the key may be %q", s, part)
		}
	}
	return Location{Bucket: bucket, Key: key}, nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '-') && i > 0 && i < len(b)-1:
		default:
			return false
		}
	}
	return true
}

// Config says how to reach an object store. ConfigFromEnv fills it as
// the ecosystem's tools do.
type Config struct {
	// Endpoint is http(s)://HOST[:PORT]; "" is AWS S3.
	Endpoint string
	// Region is the bucket's region; "" lets the client find it out.
	Region string
	// Profile is the profile of ~/.aws/credentials read when the
	// environment holds no keys ("" is "default").
	Profile string
	// ProfileOnly takes the keys from Profile even when the environment
	// holds some: those of another store (image copy to another endpoint).
	ProfileOnly bool
	// Timeout bounds each request's wait for a connection and for a
	// response's headers, and a ranged read whole (0: one minute). A
	// request is tried at most three times, so a dead or stalled
	// endpoint fails a read within about three times this.
	Timeout time.Duration
}

// ConfigFromEnv is the configuration that AWS_ENDPOINT_URL, AWS_REGION
// and AWS_PROFILE give, and CHAINFS_S3_TIMEOUT (a duration: "30s").
func ConfigFromEnv() Config {
	cfg := Config{Endpoint: os.Getenv("AWS_ENDPOINT_URL"), Region: os.Getenv("AWS_REGION"), Profile: os.Getenv("AWS_PROFILE")}
	if d, err := time.ParseDuration(os.Getenv("CHAINFS_S3_TIMEOUT")); err == nil && d > 0 {
		cfg.Timeout = d
	}
	return cfg
}

// ParseEndpoint reads an endpoint, http(s)://HOST[:PORT]: its host and
// whether it speaks TLS. "" is AWS S3.
func ParseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", false, fmt.Errorf("endpoint %q: want http(s)://HOST[:PORT]", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// Bucket is one bucket of an object store: a store.Objects.
type Bucket struct {
	client  *minio.Client
	name    string
	timeout time.Duration
}

// Open reaches bucket name with cfg. It sends no request: a wrong
// endpoint or key shows at the first.
func Open(name string, cfg Config) (*Bucket, error) {
	if !validBucket(name) {
		return nil, fmt.Errorf("bucket %q: want 3 to 63 lower-case letters, digits, '.' and '-'", name)
	}
	host, secure, err := ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.ResponseHeaderTimeout = timeout
	tr.DialContext = (&net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	providers := []credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{Profile: cfg.Profile}}
	if cfg.ProfileOnly {
		providers = providers[1:]
	}
	creds := credentials.NewChainCredentials(providers)
	client, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: cfg.Region, Transport: tr, MaxRetries: 3})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", host, err)
	}
	return &Bucket{client: client, name: name, timeout: timeout}, nil
}

var _ store.Objects = (*Bucket)(nil)

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Create makes the bucket if it is not there.
func (b *Bucket) Create(ctx context.Context, region string) error {
	ok, err := b.client.BucketExists(ctx, b.name)
	if err != nil {
		return b.wrap("bucket", err)
	}
	if ok {
		return nil
	}
	if err := b.client.MakeBucket(ctx, b.name, minio.MakeBucketOptions{Region: region}); err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return b.wrap("create bucket", err)
	}
	return nil
}

// Object is what a bucket tells of one object; its ETag names the
// content, for a conditional write.
type Object = store.Object

func objectOf(info minio.ObjectInfo) Object {
	return Object{Key: info.Key, Size: info.Size, ETag: info.ETag, Modified: info.LastModified}
}

// Stat tells of the object at key.
func (b *Bucket) Stat(ctx context.Context, key string) (Object, error) {
	// An answer with no body: its tries together are bounded as a read
	// that receives nothing is, so that a reader that must know a size
	// first does not wait longer on a stopped store.
	bounded, cancel := context.WithTimeout(ctx, 3*b.timeout)
	defer cancel()
	info, err := b.client.StatObject(bounded, b.name, key, minio.StatObjectOptions{})
	if err != nil && bounded.Err() != nil && ctx.Err() == nil {
		return Object{}, fmt.Errorf("%s/%s: no answer for %s: %w", b.name, key, 3*b.timeout, ErrTimeout)
	}
	if err != nil {
		return Object{}, b.wrap(key, err)
	}
	return objectOf(info), nil
}

// Get opens the object at key for reading, whole, as long as ctx lasts.
// The reader's caller bounds a body that stalls, by cancelling ctx.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	obj, err := b.client.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Object{}, b.wrap(key, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, Object{}, b.wrap(key, err)
	}
	return obj, objectOf(info), nil
}

// ReadAt reads len(p) bytes of the object at key from off: a ranged GET.
// It fails with ErrTimeout when no byte has come for three times the
// configured timeout: a body that stops coming holds a read no longer
// than a response that never does, and a slow one that keeps coming is
// read to its end.
func (b *Bucket) ReadAt(ctx context.Context, key string, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	g := b.guard(ctx)
	defer g.stop()
	err := b.readAt(g.ctx, key, p, off, g.progress)
	if err != nil && g.stalled(ctx) {
		return fmt.Errorf("%s/%s: %d bytes at %d, nothing came for %s: %w", b.name, key, len(p), off, g.bound, ErrTimeout)
	}
	return err
}

// readChunk is how much a ranged read takes at a time, between which it
// counts as progress.
const readChunk = 256 << 10

func (b *Bucket) readAt(ctx context.Context, key string, p []byte, off int64, progress func()) error {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return err
	}
	rd, err := b.client.GetObject(ctx, b.name, key, opts)
	if err != nil {
		return b.wrap(key, err)
	}
	defer rd.Close()
	for got := 0; got < len(p); {
		n, err := io.ReadFull(rd, p[got:min(got+readChunk, len(p))])
		got += n
		if n > 0 {
			progress()
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("%s/%s: %d bytes at %d: the object is shorter", b.name, key, len(p), off)
			}
			return b.wrap(key, err)
		}
	}
	return nil
}

// Put writes the object at key whole, replacing any.
// It fails with ErrTimeout once the store has taken nothing of it for
// three times the configured timeout: a store that stops reading holds
// the upload's writes, and no answer's timeout runs before the body is
// sent.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (Object, error) {
	g := b.guard(ctx)
	defer g.stop()
	info, err := b.client.PutObject(g.ctx, b.name, key, uploadBody(r, g.progress), size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil && g.stalled(ctx) {
		return Object{}, fmt.Errorf("%s/%s: the store took nothing of it for %s: %w", b.name, key, g.bound, ErrTimeout)
	}
	if err != nil {
		return Object{}, b.wrap(key, err)
	}
	return Object{Key: key, Size: info.Size, ETag: info.ETag, Modified: info.LastModified}, nil
}

// stallGuard ends a request whose transfer stops: its ctx is cancelled
// once no progress was told for bound, three times the timeout.
type stallGuard struct {
	ctx    context.Context
	bound  time.Duration
	timer  *time.Timer
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (b *Bucket) guard(ctx context.Context) *stallGuard {
	g := &stallGuard{bound: 3 * b.timeout}
	g.ctx, g.cancel = context.WithCancel(ctx)
	g.timer = time.AfterFunc(g.bound, func() { g.fired.Store(true); g.cancel() })
	return g
}

// progress tells that bytes moved: the bound starts again.
func (g *stallGuard) progress() { g.timer.Reset(g.bound) }

// stalled reports whether the request ended for its stall, not for the
// caller's ctx.
func (g *stallGuard) stalled(ctx context.Context) bool { return g.fired.Load() && ctx.Err() == nil }

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel()
}

// progressReader tells progress of every read that returns bytes.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// uploadBody is r telling progress of every read, and keeping what minio-go
// looks for in a body: a ReaderAt, from which it sends parts in parallel,
// and a Seeker, without which it sends a single PUT once and never again
// after a failure.
func uploadBody(r io.Reader, progress func()) io.Reader {
	body := progressReader{r: r, progress: progress}
	ra, isReaderAt := r.(io.ReaderAt)
	if !isReaderAt {
		return body
	}
	withAt := progressReaderAt{progressReader: body, ra: ra}
	if s, ok := r.(io.Seeker); ok {
		return progressSeeker{progressReaderAt: withAt, s: s}
	}
	return withAt
}

// progressReaderAt is a progressReader whose ReadAt tells progress too.
type progressReaderAt struct {
	progressReader
	ra io.ReaderAt
}

// progressSeeker is a progressReaderAt that can be rewound.
type progressSeeker struct {
	progressReaderAt
	s io.Seeker
}

func (p progressSeeker) Seek(off int64, whence int) (int64, error) { return p.s.Seek(off, whence) }

func (p progressReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.ra.ReadAt(b, off)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// PutIf writes data at key only if the object is as last seen: with the
// ETag etag, or, when etag is "", not there at all. Otherwise it fails
// with ErrChanged and writes nothing: of two writers that saw the same
// object, one wins.
func (b *Bucket) PutIf(ctx context.Context, key string, data []byte, etag string) (Object, error) {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if etag == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(etag)
	}
	info, err := b.client.PutObject(ctx, b.name, key, strings.NewReader(string(data)), int64(len(data)), opts)
	if err != nil {
		return Object{}, b.wrap(key, err)
	}
	return Object{Key: key, Size: info.Size, ETag: info.ETag, Modified: info.LastModified}, nil
}

// Remove deletes the object at key; one that is not there is no error.
func (b *Bucket) Remove(ctx context.Context, key string) error {
	return b.wrap(key, b.client.RemoveObject(ctx, b.name, key, minio.RemoveObjectOptions{}))
}

// List yields the objects whose keys begin with prefix, in key order.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the listing's goroutine when the caller stops early
		for info := range b.client.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if info.Err != nil {
				yield(Object{}, b.wrap(prefix, info.Err))
				return
			}
			if !yield(objectOf(info), nil) {
				return
			}
		}
	}
}

// probeKey is where Probe writes: under a name of its own, removed after.
const probeKey = ".chainfs-probe"

// Probe checks, under a key of its own below prefix, that the engine
// honours what a commit to it rests on: an object written is read back
// at once (read-after-write), a write that must not replace an existing
// object is refused, and so is one with an ETag that is no longer the
// object's. An engine that fails one fails with ErrUnsupported, saying
// which.
func (b *Bucket) Probe(ctx context.Context, prefix string) error {
	key := path.Join(prefix, probeKey)
	defer b.Remove(context.WithoutCancel(ctx), key)
	if err := b.Remove(ctx, key); err != nil {
		return err
	}
	first, err := b.PutIf(ctx, key, []byte("1"), "")
	if err != nil {
		return fmt.Errorf("%s: probe write: %w", b.name, err)
	}
	var got [1]byte
	if err := b.ReadAt(ctx, key, got[:], 0); err != nil || got[0] != '1' {
		return fmt.Errorf("%s: an object written is not read back at once (%v): %w", b.name, err, ErrUnsupported)
	}
	if _, err := b.PutIf(ctx, key, []byte("2"), ""); !errors.Is(err, ErrChanged) {
		return fmt.Errorf("%s: a write that must not replace an object replaced it (If-None-Match ignored; %v): %w", b.name, err, ErrUnsupported)
	}
	if _, err := b.PutIf(ctx, key, []byte("3"), first.ETag); err != nil {
		return fmt.Errorf("%s: a write conditional on the current ETag failed: %w", b.name, err)
	}
	if _, err := b.PutIf(ctx, key, []byte("4"), first.ETag); !errors.Is(err, ErrChanged) {
		return fmt.Errorf("%s: a write conditional on a stale ETag replaced the object (If-Match ignored; %v): %w", b.name, err, ErrUnsupported)
	}
	if err := b.ReadAt(ctx, key, got[:], 0); err != nil || got[0] != '3' {
		return fmt.Errorf("%s: after conditional writes the object holds %q, not the one that won (%v): %w", b.name, got[:], err, ErrUnsupported)
	}
	return nil
}

// wrap gives err the bucket's words: ErrNotFound, ErrChanged, or the
// engine's own message with what was asked.
func (b *Bucket) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	var dial *net.OpError
	switch {
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("%s/%s: the bucket %s does not exist: %w", b.name, what, b.name, ErrNotFound)
	case errors.As(err, &dial) && dial.Op == "dial", strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s/%s: cannot reach the object store at %s (check --s3-endpoint or AWS_ENDPOINT_URL; nothing was changed): %w", b.name, what, b.client.EndpointURL(), err)
	case resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s/%s: %w", b.name, what, ErrNotFound)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("%s/%s: %w", b.name, what, ErrChanged)
	case resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch":
		return fmt.Errorf("%s/%s: %s (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)", b.name, what, resp.Message)
	}
	return fmt.Errorf("%s/%s: %w", b.name, what, err)
}
