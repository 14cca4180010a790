package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/cmd/chainfs/redact"
	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

func imageCommand() *cli.Command {
	users := &cli.StringFlag{Name: "with", Required: true, Usage: "USER[,USER...]: user names or uids"}
	owner := &cli.StringFlag{Name: "owner", Usage: "USER the image belongs to (default: you)"}
	description := &cli.StringFlag{Name: "description", Usage: "free text kept with the image"}
	return &cli.Command{
		Name:  "image",
		Usage: "make, export, import, share, publish and copy images (named, self-contained trees)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make an image from a snapshot, without copying data",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Required: true, Usage: "VOLUME/SNAPSHOT the image is made from"},
					description, owner, jsonFlag,
				},
				Action: repoAction(1, 1, imageCreate),
			},
			{
				Name:      "list",
				Usage:     "list images: the repository's and the catalog's public ones",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "type", Usage: "only images of this type: custom, shared, community or public"},
					&cli.StringFlag{Name: "user", Usage: "only images USER sees under images/"},
					jsonFlag,
				},
				Action: repoAction(0, 0, imageList),
			},
			{
				Name:      "show",
				Usage:     "show one image",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{jsonFlag},
				Action:    repoAction(1, 1, imageShow),
			},
			{
				Name:      "export",
				Usage:     "write an image to a file, or to standard output (-)",
				ArgsUsage: "NAME FILE|-",
				Description: "native (the default) is chainfs's own format: self-contained, deduplicated, every block\n" +
					"with its BLAKE3 hash (docs/image-format.md). tar is a POSIX pax archive that GNU tar\n" +
					"extracts exactly (tar --xattrs --xattrs-include='*' -xpf FILE). raw is for images of\n" +
					"disk volumes. A file is written under a temporary name and renamed when complete;\n" +
					"an existing file is not replaced without --overwrite.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "native", Usage: "native, tar or raw"},
					&cli.BoolFlag{Name: "overwrite", Usage: "replace FILE if it exists"},
					jsonFlag,
				},
				Action: repoAction(2, 2, imageExport),
			},
			{
				Name:      "import",
				Usage:     "make an image from a native or tar stream: a file, an http(s) URL or standard input (-)",
				ArgsUsage: "NAME FILE|URL|-",
				Description: "The format is detected (gzip- and zstd-compressed streams too). Every block is\n" +
					"verified; blocks the repository holds are not stored again. Malformed or hostile input\n" +
					"is refused and leaves nothing behind. A raw disk image (a file, a block device, a URL,\n" +
					"maybe compressed) is imported with --format raw as the image of a disk.",
				Flags: []cli.Flag{description, owner, jsonFlag,
					&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto (native or tar, detected) or raw"},
					// image copy into a repository its daemon holds says so.
					&cli.StringFlag{Name: "copied-from", Hidden: true}},
				Action: repoAction(2, 2, imageImport),
			},
			{
				Name:      "share",
				Usage:     "let users see an image under images/ (type shared)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{users},
				Action:    repoAction(1, 1, imageShare),
			},
			{
				Name:      "unshare",
				Usage:     "stop sharing an image with users",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{users},
				Action:    repoAction(1, 1, imageShare),
			},
			{
				Name:      "publish",
				Usage:     "let every user of the machine see an image (type community)",
				ArgsUsage: "NAME",
				Action:    repoAction(1, 1, imagePublish),
			},
			{
				Name:      "unpublish",
				Usage:     "make a published image custom or shared again",
				ArgsUsage: "NAME",
				Action:    repoAction(1, 1, imagePublish),
			},
			{
				Name:      "copy",
				Usage:     "copy an image into another repository (another region), sending only blocks missing there",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "to-repo", Required: true, Usage: "DIR of the repository to copy into"},
					&cli.StringFlag{Name: "as", Usage: "name of the copy (default: the same)"},
					jsonFlag,
				},
				Action: repoAction(1, 1, imageCopy),
			},
			{
				Name:      "rm",
				Usage:     "remove an image",
				ArgsUsage: "NAME",
				Action:    repoAction(1, 1, imageRemove),
			},
		},
	}
}

// library is every image the command may name: the repository's and the
// catalog's (the daemon's, or --catalog).
func library(c *cli.Context, r *store.Repo) *imagefile.Library {
	lib := &imagefile.Library{Repo: r}
	if cat, _ := c.App.Metadata[metaCatalog].(*imagefile.Catalog); cat != nil {
		lib.Catalog = cat
	} else if dir := c.String("catalog"); dir != "" {
		// Kept for the rest of the command: a catalog indexes its files
		// once, and warns of a bad one once.
		lib.Catalog = imagefile.OpenCatalog(dir, logger(c))
		c.App.Metadata[metaCatalog] = lib.Catalog
	}
	return lib
}

// lookupUser reads a user name or uid.
func lookupUser(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, usagef("user %q: no such user", s)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// lookupUsers reads a comma-separated list of users.
func lookupUsers(s string) ([]uint32, error) {
	var uids []uint32
	for _, name := range strings.Split(s, ",") {
		if strings.TrimSpace(name) == "" {
			continue
		}
		uid, err := lookupUser(name)
		if err != nil {
			return nil, err
		}
		uids = append(uids, uid)
	}
	if len(uids) == 0 {
		return nil, usagef("--with: name at least one user")
	}
	return uids, nil
}

// userName is a uid's user name, or the number when it has none.
func userName(uid uint32) string {
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		return u.Username
	}
	return fmt.Sprint(uid)
}

func userNames(uids []uint32) string {
	names := make([]string, len(uids))
	for i, u := range uids {
		names[i] = userName(u)
	}
	return strings.Join(names, ",")
}

// ownerOf is --owner, else the caller.
func ownerOf(c *cli.Context) (uint32, error) {
	if s := c.String("owner"); s != "" {
		return lookupUser(s)
	}
	return caller(c).UID, nil
}

func imageCreate(c *cli.Context, r *store.Repo) error {
	volume, snap, _, err := parseSnapshotPath(c.String("from"), false)
	if err != nil {
		return err
	}
	owner, err := ownerOf(c)
	if err != nil {
		return err
	}
	img, err := images.Create(c.Context, r, c.Args().First(), volume, snap, images.Meta{Description: c.String("description"), Owner: owner})
	if err != nil {
		return err
	}
	return output(c, img, func() {
		fmt.Fprintf(c.App.Writer, "image %s created from %s: %s, %s\n", img.Name, img.Origin, count(img.Snapshot.Stats.Files, "file"),
			size(img.Snapshot.Stats.LogicalBytes))
	})
}

func imageList(c *cli.Context, r *store.Repo) error {
	all, err := library(c, r).Images(c.Context)
	if err != nil {
		return err
	}
	var typ images.Type
	if s := c.String("type"); s != "" {
		if typ, err = images.ParseType(s); err != nil {
			return usageError{err}
		}
	}
	var viewer *uint32
	if s := c.String("user"); s != "" {
		uid, err := lookupUser(s)
		if err != nil {
			return err
		}
		viewer = &uid
	}
	shown := []images.Image{}
	for _, img := range all {
		if (typ == "" || img.Type == typ) && (viewer == nil || img.VisibleTo(*viewer)) {
			shown = append(shown, img)
		}
	}
	return output(c, shown, func() {
		t := newTable(c, "NAME", "TYPE", "OWNER", "CREATED", "FILES", "SIZE", "FROM", "DESCRIPTION")
		for _, img := range shown {
			owner := userName(img.Owner)
			if img.Type == images.Public {
				owner = "-"
			}
			t.row(img.Name, string(img.Type), owner, formatTime(img.Created), fmt.Sprint(img.Snapshot.Stats.Files),
				size(img.Snapshot.Stats.LogicalBytes), img.Origin.String(), dash(img.Description))
		}
		t.flush()
	})
}

func imageShow(c *cli.Context, r *store.Repo) error {
	img, _, err := library(c, r).Image(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	return output(c, img, func() {
		w := c.App.Writer
		st := img.Snapshot.Stats
		fmt.Fprintf(w, "name:        %s\n", img.Name)
		fmt.Fprintf(w, "type:        %s\n", img.Type)
		if img.Type == images.Public {
			fmt.Fprintf(w, "catalog:     %s\n", img.Catalog)
		} else {
			fmt.Fprintf(w, "owner:       %s\n", userName(img.Owner))
		}
		if len(img.SharedWith) > 0 {
			fmt.Fprintf(w, "shared with: %s\n", userNames(img.SharedWith))
		}
		fmt.Fprintf(w, "region:      %s (first made in %s)\n", img.Region, dash(img.Origin.Region))
		fmt.Fprintf(w, "from:        %s\n", img.Origin)
		fmt.Fprintf(w, "created:     %s\n", formatTime(img.Created))
		fmt.Fprintf(w, "content:     %s, %s, %s, %d other; %s\n", count(st.Files, "file"), count(st.Dirs, "directory"),
			count(st.Symlinks, "symlink"), st.Others, size(st.LogicalBytes))
		if img.Description != "" {
			fmt.Fprintf(w, "description: %s\n", img.Description)
		}
	})
}

func imageRemove(c *cli.Context, r *store.Repo) error {
	name := c.Args().First()
	if _, err := library(c, r).Own(c.Context, name); err != nil {
		return err
	}
	if err := images.Remove(c.Context, r, name); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed image %s\n", name)
	return nil
}

// imageShare is share and unshare.
func imageShare(c *cli.Context, r *store.Repo) error {
	name := c.Args().First()
	uids, err := lookupUsers(c.String("with"))
	if err != nil {
		return err
	}
	if _, err := library(c, r).Own(c.Context, name); err != nil {
		return err
	}
	share := c.Command.Name == "share"
	img, err := images.Update(c.Context, r, name, func(m *images.Meta) error {
		if share {
			m.Share(uids...)
		} else {
			m.Unshare(uids...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return reportVisibility(c, img)
}

// imagePublish is publish and unpublish.
func imagePublish(c *cli.Context, r *store.Repo) error {
	name := c.Args().First()
	if _, err := library(c, r).Own(c.Context, name); err != nil {
		return err
	}
	publish := c.Command.Name == "publish"
	img, err := images.Update(c.Context, r, name, func(m *images.Meta) error {
		m.Community = publish
		return nil
	})
	if err != nil {
		return err
	}
	return reportVisibility(c, img)
}

func reportVisibility(c *cli.Context, img *images.Image) error {
	var who string
	switch img.Type {
	case images.Community:
		who = "every user"
	case images.Shared:
		who = userName(img.Owner) + " and " + userNames(img.SharedWith)
	default:
		who = userName(img.Owner) + " only"
	}
	fmt.Fprintf(c.App.Writer, "image %s is %s: seen by %s\n", img.Name, img.Type, who)
	return nil
}

// exportResult is what image export reports.
type exportResult struct {
	Image  string                 `json:"image"`
	Format imagefile.Format       `json:"format"`
	File   string                 `json:"file"`
	Stats  *imagefile.ExportStats `json:"stats"`
}

func imageExport(c *cli.Context, r *store.Repo) error {
	name, dest := c.Args().Get(0), c.Args().Get(1)
	format, err := imagefile.ParseFormat(c.String("format"))
	if err != nil {
		return usageError{err}
	}
	img, rd, err := library(c, r).Image(c.Context, name)
	if err != nil {
		return err
	}
	prog := new(imagefile.Progress)
	bar := startProgress(c, "export "+name, func() (uint64, uint64) { return prog.Bytes.Load(), prog.Total.Load() })
	var st *imagefile.ExportStats
	report := c.App.Writer
	if dest == "-" {
		out := caller(c).Stdout
		if out == nil || term.IsTerminal(int(out.Fd())) {
			bar.finish()
			return fmt.Errorf("will not write an image to a terminal: redirect standard output or give a file")
		}
		// The data goes to standard output, so the report goes to stderr.
		report = c.App.ErrWriter
		st, err = imagefile.Export(c.Context, rd, img, out, format, prog)
	} else if dest, err = absPath(c, dest); err == nil {
		var dir *os.File
		if dir, err = restore.OpenDir(filepath.Dir(dest)); err == nil {
			st, err = imagefile.ExportFile(c.Context, rd, img, dir, filepath.Base(dest), format, c.Bool("overwrite"), prog)
			dir.Close()
		}
	}
	bar.finish()
	if err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	for _, w := range st.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	c.App.Writer = report
	return output(c, exportResult{Image: name, Format: format, File: dest, Stats: st}, func() {
		fmt.Fprintf(report, "exported image %s (%s) to %s: %s, %s of data; %s written\n", name, format, dest,
			count(img.Snapshot.Stats.Files, "file"), size(st.BlockBytes), size(st.StreamBytes))
	})
}

// importResult is what image import reports.
type importResult struct {
	Image *images.Image          `json:"image"`
	Stats *imagefile.ImportStats `json:"stats"`
}

// openImageSource opens what image import reads: standard input, a URL,
// or a file (or, for a raw disk, a block device). size is its length when
// known (0 otherwise).
func openImageSource(c *cli.Context, src string, raw bool) (r io.ReadCloser, size uint64, label string, err error) {
	switch {
	case src == "-":
		in := caller(c).Stdin
		if in == nil || term.IsTerminal(int(in.Fd())) {
			return nil, 0, "", fmt.Errorf("will not read an image from a terminal: pipe it into standard input or give a file")
		}
		return io.NopCloser(in), 0, "standard input", nil
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		return download(c.Context, src)
	}
	path, err := absPath(c, src)
	if err != nil {
		return nil, 0, "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, "", fmt.Errorf("import from %s: %w", src, unwrapPathError(err))
	}
	st, err := f.Stat()
	if err == nil && raw && isBlockDevice(st) {
		size, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_END)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, 0, "", fmt.Errorf("import from %s: %w", src, err)
		}
		return f, uint64(size), path, nil
	}
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, "", fmt.Errorf("import from %s: not a regular file", src)
	}
	return f, uint64(st.Size()), path, nil
}

// rawFile is the file a raw disk image becomes: named after its source
// (less a compression suffix), else after the image.
func rawFile(name, src string, mtime time.Time) *store.Entry {
	base := path.Base(strings.TrimRight(src, "/"))
	for _, ext := range []string{".gz", ".zst"} {
		base = strings.TrimSuffix(base, ext)
	}
	if src == "-" || !store.ValidName(base) {
		base = name + ".img"
	}
	t := store.Timespec{Sec: mtime.Unix(), Nsec: uint32(mtime.Nanosecond())}
	return &store.Entry{Name: base, Mode: 0o644, Atime: t, Mtime: t, Ctime: t}
}

// download opens an http(s) URL for reading. When the server gives a
// length, a body that ends short is an error, not a shorter image.
func download(ctx context.Context, url string) (io.ReadCloser, uint64, string, error) {
	// What names the URL (the label that becomes the image's origin,
	// errors) never shows a password it carries.
	shown := redact.Arg(url)
	// A server that stops sending would hold the import forever: the
	// request ends after stallTimeout without a byte.
	ctx, cancel := context.WithCancelCause(ctx)
	stalled := fmt.Errorf("download %s: nothing received for %s: %w", shown, stallTimeout, imagefile.ErrMalformed)
	stall := time.AfterFunc(stallTimeout, func() { cancel(stalled) })
	fail := func(err error) (io.ReadCloser, uint64, string, error) {
		stall.Stop()
		cancel(nil)
		return nil, 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(usagef("URL %q: %s", shown, redact.Arg(err.Error())))
	}
	req.Header.Set("User-Agent", "chainfs")
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute,
		TLSHandshakeTimeout: 30 * time.Second}}
	resp, err := client.Do(req)
	if err != nil {
		// The stall, or the caller's interrupt, says more than the
		// transport's "context canceled". The transport's error quotes
		// the URL with only a password hidden, not a token: its cause
		// alone is shown after ours.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail(fmt.Errorf("download %s: %w", shown, cmp.Or(context.Cause(ctx), err)))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fail(fmt.Errorf("download %s: %s", shown, resp.Status))
	}
	var size uint64
	if resp.ContentLength > 0 {
		size = uint64(resp.ContentLength)
	}
	return &lengthChecked{r: resp.Body, want: resp.ContentLength, ctx: ctx, cancel: cancel, stall: stall}, size, shown, nil
}

// stallTimeout is how long a download may send nothing before it is given
// up. A variable for tests.
var stallTimeout = 2 * time.Minute

// lengthChecked fails a read that ends before the promised length, and
// one that waited stallTimeout for a byte.
type lengthChecked struct {
	r    io.ReadCloser
	want int64 // -1: unknown
	got  int64
	// ctx is the download's: an io.Reader's Read takes none, and Read
	// returns why the download was cancelled (a stall, an interrupt).
	ctx    context.Context
	cancel context.CancelCauseFunc
	stall  *time.Timer
}

func (l *lengthChecked) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.got += int64(n)
	if n > 0 {
		l.stall.Reset(stallTimeout)
	}
	if cause := context.Cause(l.ctx); err != nil && cause != nil {
		return n, cause
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) && (l.want < 0 || l.got == l.want):
	case l.want >= 0:
		// Not io.ErrUnexpectedEOF: the reader above would take it for a
		// truncated image and say less.
		err = fmt.Errorf("download broke off after %d of %d bytes (%v): %w", l.got, l.want, err, imagefile.ErrMalformed)
	default:
		err = fmt.Errorf("download broke off after %d bytes (%v): %w", l.got, err, imagefile.ErrMalformed)
	}
	return n, err
}

func (l *lengthChecked) Close() error {
	l.stall.Stop()
	l.cancel(nil)
	return l.r.Close()
}

func imageImport(c *cli.Context, r *store.Repo) error {
	name, src := c.Args().Get(0), c.Args().Get(1)
	if err := store.CheckImageName(name); err != nil {
		return usageError{err}
	}
	owner, err := ownerOf(c)
	if err != nil {
		return err
	}
	raw := false
	switch c.String("format") {
	case "auto":
	case "raw":
		raw = true
	default:
		return usagef("--format %q: want auto or raw (native and tar are detected)", c.String("format"))
	}
	in, total, label, err := openImageSource(c, src, raw)
	if err != nil {
		return err
	}
	defer in.Close()
	opts := imagefile.ImportOptions{Meta: images.Meta{Owner: owner, Description: c.String("description")},
		Origin: images.Origin{Kind: "import", Source: label}}
	if from := c.String("copied-from"); from != "" {
		opts.Origin = images.Origin{Kind: "copy", Source: from}
	}
	if raw {
		mtime := time.Now()
		if f, ok := in.(*os.File); ok {
			if st, err := f.Stat(); err == nil && !isBlockDevice(st) {
				mtime = st.ModTime()
			}
		}
		opts.Raw = rawFile(name, src, mtime)
	}
	counted := &readCounter{r: in}
	bar := startProgress(c, "import "+name, func() (uint64, uint64) { return counted.n.Load(), total })
	img, st, err := imagefile.Import(c.Context, r, name, counted, opts)
	bar.finish()
	if err != nil {
		return err
	}
	return output(c, importResult{Image: img, Stats: st}, func() {
		format := string(st.Format)
		if st.Compression != "" {
			format += ", " + st.Compression
		}
		fmt.Fprintf(c.App.Writer, "imported image %s from %s (%s): %s, %s; stored %s new, the rest was in the repository\n",
			img.Name, label, format, count(img.Snapshot.Stats.Files, "file"), size(img.Snapshot.Stats.LogicalBytes), size(st.StoredBytes))
	})
}

// copyResult is what image copy reports.
type copyResult struct {
	Image  string                 `json:"image"`
	To     string                 `json:"to"`
	Region string                 `json:"region"`
	As     string                 `json:"as"`
	Stats  *imagefile.ImportStats `json:"stats,omitempty"`
}

func imageCopy(c *cli.Context, r *store.Repo) error {
	name := c.Args().First()
	img, rd, err := library(c, r).Image(c.Context, name)
	if err != nil {
		return err
	}
	dir, err := absPath(c, c.String("to-repo"))
	if err != nil {
		return err
	}
	if a, b := statOf(dir), statOf(r.Info().Dir); a != nil && b != nil && os.SameFile(a, b) {
		return usagef("--to-repo %s is this repository", dir)
	}
	as := c.String("as")
	if as == "" {
		as = name
	}
	hdr := imagefile.HeaderOf(img)
	from := fmt.Sprintf("%s (region %s)", r.Info().Dir, r.Info().Region)
	if img.Type == images.Public {
		from = img.Catalog
	}
	res := copyResult{Image: name, To: dir, As: as}
	dst, err := store.Open(c.Context, store.Options{Dir: dir, Logger: logger(c), Purpose: "chainfs image copy " + name})
	if errors.Is(err, store.ErrInUse) {
		// The repository's daemon holds it: the copy goes through it.
		if err := copyThroughDaemon(c, dir, as, from, img, rd, hdr); err != nil {
			return err
		}
		if info, err := store.ReadInfo(dir); err == nil {
			res.Region = info.Region
		}
	} else if err != nil {
		return err
	} else {
		defer dst.Close()
		res.Region = dst.Info().Region
		if _, res.Stats, err = imagefile.Copy(c.Context, rd, img, dst, as, from); err != nil {
			return fmt.Errorf("copy %s to %s: %w", name, dir, err)
		}
	}
	return output(c, res, func() {
		fmt.Fprintf(c.App.Writer, "copied image %s to %s (region %s) as %s", name, dir, dash(res.Region), as)
		if st := res.Stats; st != nil {
			fmt.Fprintf(c.App.Writer, ": sent %s in %d blocks, %d blocks were there already", size(st.BlockBytes), st.Blocks, st.LinkedBlocks)
		}
		fmt.Fprintln(c.App.Writer)
	})
}

func statOf(path string) os.FileInfo {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return st
}

// copyThroughDaemon copies an image into a repository its daemon holds:
// the daemon imports a native stream written into a pipe it is handed.
func copyThroughDaemon(c *cli.Context, dir, as, from string, img *images.Image, rd store.Reader, hdr imagefile.Header) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	done := make(chan error, 1)
	go func() {
		_, err := imagefile.WriteNative(c.Context, rd, img.Snapshot.RootDir, pw, imagefile.ExportOptions{Header: hdr})
		pw.Close()
		done <- err
	}()
	args := []string{"--repo", dir, "image", "import", as, "-", "--owner", fmt.Sprint(img.Owner), "--copied-from", from}
	if img.Description != "" {
		args = append(args, "--description", img.Description)
	}
	var out, errs strings.Builder
	code, served, ferr := daemon.Forward(c.Context, dir, args, daemon.Streams{In: pr, Out: devnull, Stdout: &out, Stderr: &errs})
	pr.Close() // the daemon's copy is its own; a writer left waiting now fails
	werr := <-done
	switch {
	case ferr != nil:
		return fmt.Errorf("copy %s to %s: %w", img.Name, dir, ferr)
	case !served:
		return fmt.Errorf("copy %s to %s: the repository is in use by another process: %w", img.Name, dir, store.ErrInUse)
	case code != 0:
		return fmt.Errorf("copy %s to %s: %s", img.Name, dir, strings.TrimPrefix(strings.TrimSpace(errs.String()), "chainfs: "))
	case werr != nil:
		return fmt.Errorf("copy %s to %s: %w", img.Name, dir, werr)
	}
	return nil
}

// readCounter counts the bytes read through it, for progress bars.
type readCounter struct {
	r io.Reader
	n atomic.Uint64
}

func (rc *readCounter) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	rc.n.Add(uint64(n))
	return n, err
}
