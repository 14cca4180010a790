package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chainfs/chainfs/cmd/chainfs/daemon"
	"github.com/chainfs/chainfs/cmd/chainfs/redact"
	"github.com/chainfs/chainfs/fs/restore"
	"github.com/chainfs/chainfs/fs/source"
	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/s3"
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
					&cli.StringFlag{Name: "from", Required: true, Usage: "VOLUME/SNAPSHOT the image is made from, or VOLUME: a snapshot of it taken now"},
					description, owner, jsonFlag,
				},
				Action: request(parseImageCreate),
			},
			{
				Name:      "list",
				Usage:     "list images: the repository's and the catalog's public ones",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "type", Usage: "only images of this type: custom, shared, community, public or marketplace"},
					&cli.StringFlag{Name: "user", Usage: "only images USER sees under images/"},
					jsonFlag,
				},
				Action: request(parseImageList),
			},
			{
				Name:      "show",
				Usage:     "show one image",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &imageShow{Name: c.Args().First()}, wantArgs(c, 1, 1)
				}),
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
					&cli.BoolFlag{Name: "encrypt", Usage: "seal the file with a password of its own (asked twice at the terminal, or --image-password-file)"},
					imagePasswordFlag,
					jsonFlag,
				},
				Action: request(parseImageExport),
			},
			{
				Name:      "import",
				Usage:     "make an image from a native or tar stream: a file, an http(s) URL, s3://BUCKET/KEY or standard input (-)",
				ArgsUsage: "NAME FILE|URL|s3://BUCKET/KEY|-",
				Description: "The format is detected (gzip- and zstd-compressed streams too). Every block is\n" +
					"verified; blocks the repository holds are not stored again. Malformed or hostile input\n" +
					"is refused and leaves nothing behind. A raw disk image (a file, a block device, a URL,\n" +
					"maybe compressed) is imported with --format raw as the image of a disk. An object of a\n" +
					"bucket (s3://BUCKET/KEY) is read with the endpoint and credentials of the environment:\n" +
					"AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), AWS_REGION;\n" +
					"the daemon's, when a daemon serves the repository.",
				Flags: []cli.Flag{description, owner, jsonFlag, imagePasswordFlag,
					&cli.StringFlag{Name: "format", Value: "auto", Usage: "auto (native or tar, detected) or raw"}},
				Action: request(parseImageImport),
			},
			{
				Name:      "update",
				Usage:     "change an image's description or name",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "description", Usage: "the new description (\"\" clears it)"},
					&cli.StringFlag{Name: "rename", Usage: "the image's new name"},
					jsonFlag,
				},
				Action: request(parseImageUpdate),
			},
			{
				Name:      "share",
				Usage:     "let users see an image under images/ (type shared)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{users},
				Action:    request(parseImageShare(true)),
			},
			{
				Name:      "unshare",
				Usage:     "stop sharing an image with users",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{users},
				Action:    request(parseImageShare(false)),
			},
			{
				Name:      "publish",
				Usage:     "let every user of the machine see an image (type community)",
				ArgsUsage: "NAME",
				Action:    request(parseImagePublish(true)),
			},
			{
				Name:      "unpublish",
				Usage:     "make a published image custom or shared again",
				ArgsUsage: "NAME",
				Action:    request(parseImagePublish(false)),
			},
			{
				Name:      "copy",
				Usage:     "copy an image into another repository (another region), sending only blocks missing there",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "to-repo", Required: true, Usage: "the repository to copy into: a DIR or s3://BUCKET[/PREFIX]"},
					&cli.StringFlag{Name: "as", Usage: "name of the copy (default: the same)"},
					&cli.StringFlag{Name: "to-endpoint", Usage: "the object store of an s3:// --to-repo, when it is another than this repository's (another provider, another region)"},
					&cli.StringFlag{Name: "to-region", Usage: "the region of that store's buckets"},
					&cli.StringFlag{Name: "to-profile", Usage: "the profile of ~/.aws/credentials holding that store's keys (with --to-endpoint, the environment's keys are this store's)"},
					jsonFlag,
				},
				Action: request(parseImageCopy),
			},
			{
				Name:      "rm",
				Usage:     "remove an image",
				ArgsUsage: "NAME",
				Action: request(func(c *cli.Context) (operation, error) {
					return &imageRemove{Name: c.Args().First()}, wantArgs(c, 1, 1)
				}),
			},
		},
	}
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

// parseOwner reads --owner; nil when it is not given, for the caller.
func parseOwner(c *cli.Context) (*uint32, error) {
	s := c.String("owner")
	if s == "" {
		return nil, nil
	}
	uid, err := lookupUser(s)
	return &uid, err
}

// ownerOr is the owner an operation names, else the caller.
func ownerOr(owner *uint32, e *env) uint32 {
	if owner != nil {
		return *owner
	}
	return e.caller.UID
}

// imageCreate makes an image from a snapshot, without copying data.
type imageCreate struct {
	Name string `json:"name"`
	// From is the snapshot; with no snapshot named, the volume is
	// snapshotted first, as the cloud makes an image from an instance.
	From        snapshotRef `json:"from"`
	Description string      `json:"description,omitempty"`
	Owner       *uint32     `json:"owner,omitempty"` // nil: the caller
}

func parseImageCreate(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	from := snapshotRef{Volume: c.String("from")}
	if strings.Contains(from.Volume, "/") {
		var err error
		if from, err = parseSnapshotRef(c.String("from")); err != nil {
			return nil, err
		}
	}
	owner, err := parseOwner(c)
	return &imageCreate{Name: c.Args().First(), From: from, Description: c.String("description"), Owner: owner}, err
}

func (o *imageCreate) run(ctx context.Context, e *env) error {
	if o.From.Volume == "" {
		return usagef("--from: want VOLUME/SNAPSHOT or VOLUME")
	}
	var warnings []source.Warning
	if o.From.Snapshot == "" {
		// Nothing is snapshotted for an image that cannot be made.
		if _, err := images.Get(ctx, e.repo, o.Name); err == nil {
			return fmt.Errorf("image %s: %w", o.Name, store.ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var skip []string
		if e.mount != "" {
			skip = append(skip, e.mount)
		}
		res, err := source.Snapshot(ctx, e.repo, o.From.Volume, store.SnapshotOptions{Description: "taken for image " + o.Name},
			source.Options{Skip: skip, Logger: e.log})
		if err != nil {
			return err
		}
		o.From.Snapshot, warnings = res.Snapshot.Name, res.Warnings
	}
	img, err := images.Create(ctx, e.repo, o.Name, o.From.Volume, o.From.Snapshot,
		images.Meta{Description: o.Description, Owner: ownerOr(o.Owner, e)})
	if err != nil {
		return err
	}
	err = e.output(img, func() {
		for _, w := range warnings {
			fmt.Fprintln(e.stderr, "warning:", w)
		}
		fmt.Fprintf(e.stdout, "image %s created from %s: %s, %s\n", img.Name, img.Origin, count(img.Snapshot.Stats.Files, "file"),
			size(img.Snapshot.Stats.LogicalBytes))
	})
	if err == nil && len(warnings) > 0 {
		err = partialError{n: len(warnings)}
	}
	return err
}

// imageUpdate changes an image's description (when Description is set)
// and name (Rename).
type imageUpdate struct {
	Name        string  `json:"name"`
	Description *string `json:"description,omitempty"`
	Rename      string  `json:"rename,omitempty"`
}

func parseImageUpdate(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	o := &imageUpdate{Name: c.Args().First(), Rename: c.String("rename")}
	if c.IsSet("description") {
		d := c.String("description")
		o.Description = &d
	}
	if o.Description == nil && o.Rename == "" {
		return nil, usagef("say what changes: --description TEXT, --rename NEW")
	}
	return o, nil
}

func (o *imageUpdate) run(ctx context.Context, e *env) error {
	if _, err := e.library().Own(ctx, o.Name); err != nil {
		return err
	}
	// The rename first: a name refused changes nothing.
	name := o.Name
	if o.Rename != "" {
		if _, err := images.Rename(ctx, e.repo, o.Name, o.Rename); err != nil {
			return err
		}
		name = o.Rename
	}
	img, err := images.Get(ctx, e.repo, name)
	if err != nil {
		return err
	}
	if o.Description != nil {
		if img, err = images.Update(ctx, e.repo, name, func(m *images.Meta) error { m.Description = *o.Description; return nil }); err != nil {
			return err
		}
	}
	return e.output(img, func() {
		fmt.Fprintf(e.stdout, "image %s updated", img.Name)
		if o.Rename != "" {
			fmt.Fprintf(e.stdout, " (was %s)", o.Name)
		}
		fmt.Fprintf(e.stdout, ": %s\n", dash(img.Description))
	})
}

// imageList lists images: the repository's and the catalog's public
// ones, of one type, or those one user sees.
type imageList struct {
	Type string  `json:"type,omitempty"`
	User *uint32 `json:"user,omitempty"`
}

func parseImageList(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 0, 0); err != nil {
		return nil, err
	}
	o := &imageList{Type: c.String("type")}
	if s := c.String("user"); s != "" {
		uid, err := lookupUser(s)
		if err != nil {
			return nil, err
		}
		o.User = &uid
	}
	return o, nil
}

func (o *imageList) run(ctx context.Context, e *env) error {
	var typ images.Type
	if o.Type != "" {
		var err error
		if typ, err = images.ParseType(o.Type); err != nil {
			return usageError{err}
		}
	}
	all, err := e.library().Images(ctx)
	if err != nil {
		return err
	}
	offers, err := marketplaceOffers(ctx, e, all)
	if err != nil {
		return err
	}
	shown := []images.Image{}
	for _, img := range append(all, offers...) {
		if (typ == "" || img.Type == typ) && (o.User == nil || img.VisibleTo(*o.User)) {
			shown = append(shown, img)
		}
	}
	return e.output(shown, func() {
		t := newTable(e.stdout, "NAME", "TYPE", "OWNER", "CREATED", "FILES", "SIZE", "FROM", "DESCRIPTION")
		for _, img := range shown {
			if img.Offered {
				t.row(img.Name, string(img.Type), "-", "-", "-", "-", "not imported (chainfs market import "+img.Name+")", dash(img.Description))
				continue
			}
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

// imageShow shows one image.
type imageShow struct {
	Name string `json:"name"`
}

func (o *imageShow) run(ctx context.Context, e *env) error {
	img, _, err := e.library().Image(ctx, o.Name)
	if err != nil {
		return err
	}
	return e.output(img, func() {
		w := e.stdout
		st := img.Snapshot.Stats
		fmt.Fprintf(w, "name:        %s\n", img.Name)
		fmt.Fprintf(w, "type:        %s\n", img.Type)
		if img.Type == images.Public {
			fmt.Fprintf(w, "catalog:     %s\n", img.Catalog)
		} else {
			if img.Marketplace != "" {
				fmt.Fprintf(w, "marketplace: %s\n", img.Marketplace)
			}
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

// imageRemove removes an image.
type imageRemove struct {
	Name string `json:"name"`
}

func (o *imageRemove) run(ctx context.Context, e *env) error {
	if _, err := e.library().Own(ctx, o.Name); err != nil {
		return err
	}
	if err := images.Remove(ctx, e.repo, o.Name); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "removed image %s\n", o.Name)
	return nil
}

// imageShare lets users see an image under images/, or, with Share
// false, stops sharing it with them.
type imageShare struct {
	Name  string   `json:"name"`
	Users []uint32 `json:"users"`
	Share bool     `json:"share"`
}

func parseImageShare(share bool) func(c *cli.Context) (operation, error) {
	return func(c *cli.Context) (operation, error) {
		if err := wantArgs(c, 1, 1); err != nil {
			return nil, err
		}
		uids, err := lookupUsers(c.String("with"))
		return &imageShare{Name: c.Args().First(), Users: uids, Share: share}, err
	}
}

func (o *imageShare) run(ctx context.Context, e *env) error {
	if len(o.Users) == 0 {
		return usagef("--with: name at least one user")
	}
	if err := ownNotMarketplace(ctx, e, o.Name); err != nil {
		return err
	}
	img, err := images.Update(ctx, e.repo, o.Name, func(m *images.Meta) error {
		if o.Share {
			m.Share(o.Users...)
		} else {
			m.Unshare(o.Users...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return reportVisibility(e, img)
}

// imagePublish lets every user of the machine see an image, or, with
// Publish false, makes it custom or shared again.
type imagePublish struct {
	Name    string `json:"name"`
	Publish bool   `json:"publish"`
}

func parseImagePublish(publish bool) func(c *cli.Context) (operation, error) {
	return func(c *cli.Context) (operation, error) {
		return &imagePublish{Name: c.Args().First(), Publish: publish}, wantArgs(c, 1, 1)
	}
}

func (o *imagePublish) run(ctx context.Context, e *env) error {
	if err := ownNotMarketplace(ctx, e, o.Name); err != nil {
		return err
	}
	img, err := images.Update(ctx, e.repo, o.Name, func(m *images.Meta) error {
		m.Community = o.Publish
		return nil
	})
	if err != nil {
		return err
	}
	return reportVisibility(e, img)
}

// ownNotMarketplace refuses to share or publish what is not the
// repository's, and a marketplace image, which every user sees already.
func ownNotMarketplace(ctx context.Context, e *env, name string) error {
	img, err := e.library().Own(ctx, name)
	if err != nil {
		return err
	}
	if img.Type == images.Marketplace {
		return fmt.Errorf("image %s comes from marketplace %s: every user sees it already", name, img.Marketplace)
	}
	return nil
}

func reportVisibility(e *env, img *images.Image) error {
	var who string
	switch img.Type {
	case images.Community:
		who = "every user"
	case images.Shared:
		who = userName(img.Owner) + " and " + userNames(img.SharedWith)
	default:
		who = userName(img.Owner) + " only"
	}
	fmt.Fprintf(e.stdout, "image %s is %s: seen by %s\n", img.Name, img.Type, who)
	if img.Type != images.Custom {
		// The kernel keeps other users out of a mount without it.
		switch {
		case e.mount != "" && !e.allowOther:
			fmt.Fprintf(e.stderr, "note: the daemon serves %s without --allow-other: other users see nothing there until it is served with it\n", e.mount)
		case e.mount == "":
			fmt.Fprintln(e.stderr, "note: no daemon serves this repository: other users see the image under images/ once one serves it with --allow-other")
		}
	}
	return nil
}

// exportResult is what image export reports.
type exportResult struct {
	Image  string                 `json:"image"`
	Format imagefile.Format       `json:"format"`
	File   string                 `json:"file"`
	Stats  *imagefile.ExportStats `json:"stats"`
}

// imageExport writes an image to File, or to the caller's standard
// output when File is "-".
type imageExport struct {
	Name      string `json:"name"`
	File      string `json:"file"`
	Format    string `json:"format"`
	Overwrite bool   `json:"overwrite,omitempty"`
	// Password, when set, seals the file with it (--encrypt); it travels
	// as the request's secret.
	Password []byte `json:"-"`
}

func (o *imageExport) secret() []byte     { return o.Password }
func (o *imageExport) setSecret(b []byte) { o.Password = b }

// imagePasswordFlag gives the password of a sealed image file.
var imagePasswordFlag = &cli.StringFlag{Name: "image-password-file", Usage: "file that holds the password of an image file sealed with export --encrypt"}

func parseImageExport(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 2, 2); err != nil {
		return nil, err
	}
	o := &imageExport{Name: c.Args().Get(0), File: c.Args().Get(1), Format: c.String("format"), Overwrite: c.Bool("overwrite")}
	if c.Bool("encrypt") {
		pw, err := imagePasswords(c).get(c.Context, "password of the image file: ", true)
		if err != nil {
			return nil, err
		}
		o.Password = pw
	} else if c.IsSet("image-password-file") {
		return nil, usagef("--image-password-file seals the file only with --encrypt")
	}
	if o.File != "-" {
		var err error
		if o.File, err = filepath.Abs(o.File); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *imageExport) run(ctx context.Context, e *env) error {
	format, err := imagefile.ParseFormat(o.Format)
	if err != nil {
		return usageError{err}
	}
	if o.File != "-" {
		if err := needAbsolute("file", o.File); err != nil {
			return err
		}
	}
	img, rd, err := e.library().Image(ctx, o.Name)
	if err != nil {
		return err
	}
	prog := new(imagefile.Progress)
	bar := e.progress("export "+o.Name, func() (uint64, uint64) { return prog.Bytes.Load(), prog.Total.Load() })
	var st *imagefile.ExportStats
	report := e.stdout
	if o.File == "-" {
		out := e.caller.Stdout
		if out == nil || term.IsTerminal(int(out.Fd())) {
			bar.finish()
			return fmt.Errorf("will not write an image to a terminal: redirect standard output or give a file")
		}
		// The data goes to standard output, so the report goes to stderr.
		report = e.stderr
		st, err = imagefile.ExportSealed(ctx, rd, img, out, format, o.Password, prog)
	} else {
		var dir *os.File
		if dir, err = restore.OpenDir(filepath.Dir(o.File)); err == nil {
			st, err = imagefile.ExportFile(ctx, rd, img, dir, filepath.Base(o.File), format, o.Overwrite, o.Password, prog)
			dir.Close()
		}
	}
	bar.finish()
	if err != nil {
		return fmt.Errorf("export %s: %w", o.Name, err)
	}
	for _, w := range st.Warnings {
		fmt.Fprintln(e.stderr, "warning:", w)
	}
	reported := *e
	reported.stdout = report
	return reported.output(exportResult{Image: o.Name, Format: format, File: o.File, Stats: st}, func() {
		fmt.Fprintf(report, "exported image %s (%s) to %s: %s, %s of data; %s written\n", o.Name, format, o.File,
			count(img.Snapshot.Stats.Files, "file"), size(st.BlockBytes), size(st.StreamBytes))
	})
}

// importResult is what image import reports.
type importResult struct {
	Image *images.Image          `json:"image"`
	Stats *imagefile.ImportStats `json:"stats"`
}

// openImageSource opens what image import reads: standard input, an
// http(s) URL, an object of a bucket, or a file (or, for a raw disk, a block device). size is its length when
// known (0 otherwise).
func openImageSource(ctx context.Context, e *env, src string, raw bool) (r io.ReadCloser, size uint64, label string, err error) {
	switch {
	case src == "-":
		in := e.caller.Stdin
		if in == nil || term.IsTerminal(int(in.Fd())) {
			return nil, 0, "", fmt.Errorf("will not read an image from a terminal: pipe it into standard input or give a file")
		}
		return io.NopCloser(in), 0, "standard input", nil
	case s3.IsURL(src):
		return fetchObject(ctx, src)
	case isHTTP(src):
		return download(ctx, src)
	}
	if err := needAbsolute("source", src); err != nil {
		return nil, 0, "", err
	}
	f, err := os.Open(src)
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
		return f, uint64(size), src, nil
	}
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, "", fmt.Errorf("import from %s: not a regular file", src)
	}
	return f, uint64(st.Size()), src, nil
}

// isHTTP reports whether an image source is an http(s) URL.
func isHTTP(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
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

// download opens an http(s) URL for reading (fetch).
func download(ctx context.Context, url string) (io.ReadCloser, uint64, string, error) {
	// What names the URL (the label that becomes the image's origin,
	// errors) never shows a password it carries.
	shown := redact.Arg(url)
	r, size, err := fetch(ctx, shown, func(ctx context.Context) (io.ReadCloser, int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, 0, usagef("URL %q: %s", shown, redact.Arg(err.Error()))
		}
		req.Header.Set("User-Agent", "chainfs")
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute,
			TLSHandshakeTimeout: 30 * time.Second}, CheckRedirect: noDowngrade}
		resp, err := client.Do(req)
		if err != nil {
			// The stall, or the caller's interrupt, says more than the
			// transport's "context canceled". The transport's error
			// quotes the URL with only a password hidden, not a token:
			// its cause alone is shown after ours.
			var ue *neturl.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, 0, fmt.Errorf("download %s: %w", shown, cmp.Or(context.Cause(ctx), err))
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("download %s: %s", shown, resp.Status)
		}
		return resp.Body, resp.ContentLength, nil
	})
	return r, size, shown, err
}

// noDowngrade follows at most 10 redirects, and none from https to
// anything else: what was asked over https (a marketplace's catalog or
// image) is not then fetched in the clear.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing a redirect from https to %s", req.URL.Scheme)
	}
	return nil
}

// fetchObject opens an object of a bucket, s3://BUCKET/KEY, for reading
// (fetch), with the endpoint and credentials of this process's
// environment (the daemon's, when it runs the import).
func fetchObject(ctx context.Context, src string) (io.ReadCloser, uint64, string, error) {
	loc, err := s3.ParseURL(src)
	if err == nil && (loc.Key == "" || strings.HasSuffix(loc.Key, "/")) {
		err = fmt.Errorf("%q names no object: want %sBUCKET/KEY", src, s3.Scheme)
	}
	if err != nil {
		return nil, 0, "", usageError{err}
	}
	b, err := s3.Open(loc.Bucket, s3.ConfigFromEnv())
	if err != nil {
		return nil, 0, "", usageError{err}
	}
	r, size, err := fetch(ctx, loc.String(), func(ctx context.Context) (io.ReadCloser, int64, error) {
		rd, obj, err := b.Get(ctx, loc.Key)
		if err != nil {
			return nil, 0, fmt.Errorf("import from %s: %w", loc, cmp.Or(context.Cause(ctx), err))
		}
		return rd, obj.Size, nil
	})
	return r, size, loc.String(), err
}

// fetch opens a remote stream with open, under a context that a stall
// cancels: a server that stops sending would hold the import forever, so
// the stream ends after stallTimeout without a byte. When open gives a
// length (not -1), a body that ends short is an error, not a shorter
// image.
func fetch(ctx context.Context, shown string, open func(context.Context) (io.ReadCloser, int64, error)) (io.ReadCloser, uint64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	stalled := fmt.Errorf("download %s: nothing received for %s: %w", shown, stallTimeout, imagefile.ErrMalformed)
	stall := time.AfterFunc(stallTimeout, func() { cancel(stalled) })
	r, length, err := open(ctx)
	if err != nil {
		stall.Stop()
		cancel(nil)
		return nil, 0, err
	}
	var size uint64
	if length > 0 {
		size = uint64(length)
	}
	return &lengthChecked{r: r, want: length, ctx: ctx, cancel: cancel, stall: stall}, size, nil
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

// imageImport makes an image from a native or tar stream, or a raw disk
// image: a file, an http(s) URL, an object of a bucket (s3://BUCKET/KEY),
// or the caller's standard input ("-").
type imageImport struct {
	Name        string  `json:"name"`
	Source      string  `json:"source"`
	Format      string  `json:"format"` // auto or raw
	Description string  `json:"description,omitempty"`
	Owner       *uint32 `json:"owner,omitempty"` // nil: the caller
	// CopiedFrom, when set, names the repository an image copy comes
	// from, recorded as its origin instead of the import: image copy into
	// a repository its daemon holds imports a stream it writes.
	CopiedFrom string `json:"copied_from,omitempty"`
	// Password opens a stream sealed with one (export --encrypt); it
	// travels as the request's secret.
	Password []byte `json:"-"`
}

func (o *imageImport) secret() []byte     { return o.Password }
func (o *imageImport) setSecret(b []byte) { o.Password = b }

func parseImageImport(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 2, 2); err != nil {
		return nil, err
	}
	owner, err := parseOwner(c)
	if err != nil {
		return nil, err
	}
	o := &imageImport{Name: c.Args().Get(0), Source: c.Args().Get(1), Format: c.String("format"),
		Description: c.String("description"), Owner: owner}
	if o.Source != "-" && !isHTTP(o.Source) && !s3.IsURL(o.Source) {
		if o.Source, err = filepath.Abs(o.Source); err != nil {
			return nil, err
		}
	}
	// A sealed file's password: from the flag, else asked at the
	// terminal when the file is one this command can look at.
	if p := c.String("image-password-file"); p != "" || sealedFile(o.Source) {
		if o.Password, err = imagePasswords(c).get(c.Context, "password of the image file: ", false); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// imagePasswords is where a sealed image file's password comes from.
func imagePasswords(c *cli.Context) passwordSource {
	return passwordSource{file: c.String("image-password-file"), fileFlag: "--image-password-file",
		none: errors.New("the image file is sealed with a password: give it with --image-password-file FILE, or at a terminal")}
}

// sealedFile reports whether path is a regular file sealed with a
// password, as far as the caller may read it. Nothing else is opened: a
// fifo or a pipe would lose what is read.
func sealedFile(path string) bool {
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return false
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 16)
	n, _ := io.ReadFull(f, head)
	return store.IsSealedFile(head[:n])
}

func (o *imageImport) run(ctx context.Context, e *env) error {
	if err := store.CheckImageName(o.Name); err != nil {
		return usageError{err}
	}
	raw := false
	switch o.Format {
	case "auto":
	case "raw":
		raw = true
	default:
		return usagef("--format %q: want auto or raw (native and tar are detected)", o.Format)
	}
	in, total, label, err := openImageSource(ctx, e, o.Source, raw)
	if err != nil {
		return err
	}
	defer in.Close()
	opts := imagefile.ImportOptions{Meta: images.Meta{Owner: ownerOr(o.Owner, e), Description: o.Description},
		Origin: images.Origin{Kind: "import", Source: label}}
	if o.CopiedFrom != "" {
		opts.Origin = images.Origin{Kind: "copy", Source: o.CopiedFrom}
	}
	if raw {
		mtime := time.Now()
		if f, ok := in.(*os.File); ok {
			if st, err := f.Stat(); err == nil && !isBlockDevice(st) {
				mtime = st.ModTime()
			}
		}
		opts.Raw = rawFile(o.Name, o.Source, mtime)
	}
	if o.Password != nil {
		opts.Password = func(context.Context) ([]byte, error) { return o.Password, nil }
	}
	counted := &readCounter{r: in}
	bar := e.progress("import "+o.Name, func() (uint64, uint64) { return counted.n.Load(), total })
	img, st, err := imagefile.Import(ctx, e.repo, o.Name, counted, opts)
	bar.finish()
	if err != nil {
		return err
	}
	return e.output(importResult{Image: img, Stats: st}, func() {
		format := string(st.Format)
		if st.Compression != "" {
			format += ", " + st.Compression
		}
		fmt.Fprintf(e.stdout, "imported image %s from %s (%s): %s, %s; stored %s new, the rest was in the repository\n",
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
	// AlreadyThere says the same image was there under that name:
	// nothing was sent.
	AlreadyThere bool `json:"already_there,omitempty"`
}

// imageCopy copies an image into the repository at ToRepo (another
// region), as As, sending only the blocks missing there.
type imageCopy struct {
	Name   string `json:"name"`
	ToRepo string `json:"to_repo"`
	As     string `json:"as,omitempty"` // "": Name
	// ToEndpoint, ToRegion and ToProfile reach an s3:// ToRepo in
	// another store than the environment names ("": the environment's).
	ToEndpoint string `json:"to_endpoint,omitempty"`
	ToRegion   string `json:"to_region,omitempty"`
	ToProfile  string `json:"to_profile,omitempty"`
}

// targetStore is the store settings of an s3:// ToRepo: the
// environment's, with what the copy names in place of them.
func (o *imageCopy) targetStore() s3.Config {
	cfg := s3.ConfigFromEnv()
	if o.ToEndpoint != "" {
		// Another store: not the environment's region or keys.
		cfg.Endpoint, cfg.Region, cfg.Profile, cfg.ProfileOnly = o.ToEndpoint, "", "", true
	}
	if o.ToRegion != "" {
		cfg.Region = o.ToRegion
	}
	if o.ToProfile != "" {
		cfg.Profile, cfg.ProfileOnly = o.ToProfile, true
	}
	return cfg
}

func parseImageCopy(c *cli.Context) (operation, error) {
	if err := wantArgs(c, 1, 1); err != nil {
		return nil, err
	}
	to := c.String("to-repo")
	if s3.IsURL(to) {
		if _, err := s3.ParseURL(to); err != nil {
			return nil, usagef("--to-repo: %v", err)
		}
		if e := c.String("to-endpoint"); e != "" {
			if _, _, err := s3.ParseEndpoint(e); err != nil {
				return nil, usagef("--to-endpoint: %v", err)
			}
		}
		return &imageCopy{Name: c.Args().First(), ToRepo: to, As: c.String("as"),
			ToEndpoint: c.String("to-endpoint"), ToRegion: c.String("to-region"), ToProfile: c.String("to-profile")}, nil
	}
	for _, f := range []string{"to-endpoint", "to-region", "to-profile"} {
		if c.IsSet(f) {
			return nil, usagef("--%s: only with an s3:// --to-repo", f)
		}
	}
	dir, err := filepath.Abs(to)
	return &imageCopy{Name: c.Args().First(), ToRepo: dir, As: c.String("as")}, err
}

func (o *imageCopy) run(ctx context.Context, e *env) error {
	if !s3.IsURL(o.ToRepo) {
		if err := needAbsolute("--to-repo", o.ToRepo); err != nil {
			return err
		}
	}
	img, rd, err := e.library().Image(ctx, o.Name)
	if err != nil {
		return err
	}
	// A repository in a bucket is this process's replica of it, under
	// its own cache directory, where that repository's daemon listens.
	opts, err := repoOptionsWith(o.ToRepo, e.cache, o.targetStore())
	if err != nil {
		return err
	}
	dir, r := opts.Dir, e.repo
	if sameDir(dir, r.Info().Dir) {
		return usagef("--to-repo %s is this repository", o.ToRepo)
	}
	as := cmp.Or(o.As, o.Name)
	from := fmt.Sprintf("%s (region %s)", cmp.Or(e.repoName, r.Info().Dir), r.Info().Region)
	if img.Type == images.Public {
		from = img.Catalog
	}
	res := copyResult{Image: o.Name, To: o.ToRepo, As: as}
	opts.Logger, opts.Purpose = e.log, "chainfs image copy "+o.Name
	// An encrypted target opens with the password of the process that
	// copies (the daemon's, when one runs the command).
	opts.Password = passwordsFromEnv().forRepo(o.ToRepo).read
	dst, err := store.Open(ctx, opts)
	// The repository's daemon may hold it: the copy then goes through it.
	viaDaemon := errors.Is(err, store.ErrInUse)
	var there *images.Image
	encrypted := r.Info().Encryption != "" // on either side: names differ
	switch {
	case viaDaemon:
		if info, err := store.ReadInfo(dir); err == nil {
			res.Region = info.Region
			encrypted = encrypted || info.Encryption != ""
		}
		there, err = imageThere(ctx, dir, as)
	case err == nil:
		defer dst.Close()
		res.Region = dst.Info().Region
		encrypted = encrypted || dst.Info().Encryption != ""
		if there, err = images.Get(ctx, dst, as); errors.Is(err, store.ErrNotFound) {
			there, err = nil, nil
		}
	}
	if err != nil {
		return err
	}
	if there != nil {
		// A copy made before: the same tree is nothing to send.
		if there.Snapshot.Root != img.Snapshot.Root || !reflect.DeepEqual(there.Snapshot.RootDir, img.Snapshot.RootDir) {
			if encrypted {
				// Its tree is named under another key: telling whether it
				// is the same would take reading all of both.
				return fmt.Errorf("an image %s is already in %s; with an encrypted repository on either side it cannot be told from %s without reading both: copy under another name with --as NEWNAME", as, o.ToRepo, o.Name)
			}
			return fmt.Errorf("an image %s is already in %s and differs from %s: copy under another name with --as NEWNAME", as, o.ToRepo, o.Name)
		}
		res.AlreadyThere = true
		return e.output(res, func() {
			fmt.Fprintf(e.stdout, "image %s is already in %s (region %s) as %s, the same: nothing sent\n", o.Name, o.ToRepo, dash(res.Region), as)
		})
	}
	if viaDaemon {
		if err := copyThroughDaemon(ctx, dir, as, from, img, rd); err != nil {
			return err
		}
	} else if _, res.Stats, err = imagefile.Copy(ctx, rd, img, dst, as, from); err != nil {
		return fmt.Errorf("copy %s to %s: %w", o.Name, o.ToRepo, err)
	}
	return e.output(res, func() {
		fmt.Fprintf(e.stdout, "copied image %s to %s (region %s) as %s", o.Name, o.ToRepo, dash(res.Region), as)
		if st := res.Stats; st != nil {
			fmt.Fprintf(e.stdout, ": sent %s in %d blocks, %d blocks were there already", size(st.BlockBytes), st.Blocks, st.LinkedBlocks)
		}
		fmt.Fprintln(e.stdout)
	})
}

// imageThere asks the daemon serving the repository at dir for its image
// name: nil when it has none.
func imageThere(ctx context.Context, dir, name string) (*images.Image, error) {
	req, err := newRequest(&imageShow{Name: name})
	if err != nil {
		return nil, err
	}
	req.JSON = true
	var out, errs strings.Builder
	code, served, err := daemon.Send(ctx, dir, req, daemon.Streams{Stdout: &out, Stderr: &errs})
	switch {
	case err != nil:
		return nil, fmt.Errorf("image %s in %s: %w", name, dir, err)
	case !served:
		return nil, fmt.Errorf("%s: the repository is in use by another process: %w", dir, store.ErrInUse)
	case code != 0 && strings.Contains(errs.String(), store.ErrNotFound.Error()):
		return nil, nil
	case code != 0:
		return nil, fmt.Errorf("image %s in %s: %s", name, dir, strings.TrimPrefix(strings.TrimSpace(errs.String()), "chainfs: "))
	}
	var img images.Image
	if err := json.Unmarshal([]byte(out.String()), &img); err != nil {
		return nil, fmt.Errorf("image %s in %s: the daemon's answer: %w", name, dir, err)
	}
	return &img, nil
}

// copyThroughDaemon copies an image into a repository its daemon holds:
// the daemon imports a native stream written into a pipe it is handed.
func copyThroughDaemon(ctx context.Context, dir, as, from string, img *images.Image, rd store.Reader) error {
	req, err := newRequest(&imageImport{Name: as, Source: "-", Format: "auto", Owner: &img.Owner, Description: img.Description,
		CopiedFrom: from})
	if err != nil {
		return err
	}
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
		_, err := imagefile.WriteNative(ctx, rd, img.Snapshot.RootDir, pw, imagefile.ExportOptions{Header: imagefile.HeaderOf(img)})
		pw.Close()
		done <- err
	}()
	var out, errs strings.Builder
	code, served, ferr := daemon.Send(ctx, dir, req, daemon.Streams{In: pr, Out: devnull, Stdout: &out, Stderr: &errs})
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
