package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chainfs/chainfs/store"
	"github.com/chainfs/chainfs/store/imagefile"
	"github.com/chainfs/chainfs/store/images"
	"github.com/chainfs/chainfs/store/market"
	"github.com/urfave/cli/v2"
)

func marketCommand() *cli.Command {
	return &cli.Command{
		Name:  "market",
		Usage: "marketplace images: vendors' signed catalogs of native images, served over https",
		Description: "A vendor serves a catalog (JSON) at an https URL and its ed25519 signature at the same URL\n" +
			"with .sig added. 'market add' subscribes with the vendor's public key; the catalog's images\n" +
			"show in 'image list' with type marketplace, and 'market import' brings one into the\n" +
			"repository, where every user sees it, once its size and SHA-256 are the catalog's.",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "subscribe to a vendor's catalog, refused unless its signature verifies with the key",
				ArgsUsage: "NAME URL",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key", Usage: "the vendor's public key, ed25519:BASE64 (as 'market keygen' prints it)"},
					jsonFlag,
				},
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 2, 2); err != nil {
						return nil, err
					}
					if c.String("key") == "" {
						return nil, usagef("--key: give the vendor's public key, ed25519:BASE64")
					}
					if _, err := market.ParseKey(c.String("key")); err != nil {
						return nil, usageError{err}
					}
					return &marketAdd{Name: c.Args().Get(0), URL: c.Args().Get(1), Key: c.String("key")}, nil
				}),
			},
			{
				Name:      "list",
				Usage:     "list the subscriptions: vendor, URL, images, when fetched",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &marketList{}, wantArgs(c, 0, 0)
				}),
			},
			{
				Name:      "refresh",
				Usage:     "fetch catalogs again; one whose signature fails is refused and the one before kept",
				ArgsUsage: "[NAME]",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &marketRefresh{Name: c.Args().First()}, wantArgs(c, 0, 1)
				}),
			},
			{
				Name:      "rm",
				Usage:     "end a subscription (the images imported from it stay)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{jsonFlag},
				Action: request(func(c *cli.Context) (operation, error) {
					return &marketRemove{Name: c.Args().First()}, wantArgs(c, 1, 1)
				}),
			},
			{
				Name:      "import",
				Usage:     "import a marketplace image, checking the catalog's signature, the file's size and SHA-256, and every block",
				ArgsUsage: "NAME/IMAGE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "as", Usage: "the image's name here (default: IMAGE)"},
					jsonFlag,
				},
				Action: request(func(c *cli.Context) (operation, error) {
					if err := wantArgs(c, 1, 1); err != nil {
						return nil, err
					}
					sub, img, ok := strings.Cut(c.Args().First(), "/")
					if !ok || sub == "" || img == "" {
						return nil, usagef("%q: want MARKETPLACE/IMAGE", c.Args().First())
					}
					return &marketImport{Market: sub, Image: img, As: c.String("as")}, nil
				}),
			},
			{
				Name:      "keygen",
				Usage:     "for vendors: make a signing key in FILE (mode 0600) and print its public key",
				ArgsUsage: "FILE",
				Action:    marketKeygen,
			},
			{
				Name:      "sign",
				Usage:     "for vendors: check a catalog and write its signature to CATALOG.sig",
				ArgsUsage: "CATALOG",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key-file", Usage: "the signing key 'market keygen' made"},
					&cli.StringFlag{Name: "url", Usage: "where the catalog will be served, to check its relative image URLs (default: they are checked as if under https://catalog.invalid/)"},
				},
				Action: marketSign,
			},
		},
	}
}

// fetchCatalog downloads a catalog and its signature (URL + ".sig"), each
// within its bound, over https only.
func fetchCatalog(ctx context.Context, url string) (body, sig []byte, err error) {
	if !strings.HasPrefix(url, "https://") {
		return nil, nil, usagef("catalog URL %q: a catalog is fetched over https", url)
	}
	if body, err = fetchSmall(ctx, url, market.MaxCatalogSize); err != nil {
		return nil, nil, err
	}
	sigURL, err := market.SignatureURL(url)
	if err != nil {
		return nil, nil, err
	}
	if sig, err = fetchSmall(ctx, sigURL, market.MaxSignatureSize); err != nil {
		return nil, nil, err
	}
	return body, sig, nil
}

// fetchSmall downloads what url holds, refusing more than limit bytes.
func fetchSmall(ctx context.Context, url string, limit int64) ([]byte, error) {
	r, _, shown, err := download(ctx, url)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("download %s: more than %d bytes", shown, limit)
	}
	return b, nil
}

// subscribe fetches a subscription's catalog and returns it ready to
// keep; whether it verifies is market.Add's and market.Replace's to say.
func subscribe(ctx context.Context, name, url, key string) (*market.Subscription, error) {
	body, sigFile, err := fetchCatalog(ctx, url)
	if err != nil {
		return nil, err
	}
	sig, err := market.ParseSignature(sigFile)
	if err != nil {
		return nil, fmt.Errorf("catalog %s (%s): %w", name, url, err)
	}
	return &market.Subscription{Name: name, URL: url, Key: key, Body: body, Signature: sig, Fetched: time.Now().UTC()}, nil
}

// marketRow is a subscription as market list and add show it.
type marketRow struct {
	Name    string    `json:"name"`
	URL     string    `json:"url"`
	Key     string    `json:"key"`
	Vendor  string    `json:"vendor"`
	Images  []string  `json:"images"`
	Fetched time.Time `json:"fetched"`
}

func rowOf(s *market.Subscription, c *market.Catalog) marketRow {
	row := marketRow{Name: s.Name, URL: s.URL, Key: s.Key, Vendor: c.Vendor, Images: []string{}, Fetched: s.Fetched}
	for _, e := range c.Images {
		row.Images = append(row.Images, e.Name)
	}
	return row
}

// marketAdd subscribes to a catalog.
type marketAdd struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Key  string `json:"key"`
}

func (o *marketAdd) run(ctx context.Context, e *env) error {
	if _, err := market.Get(ctx, e.repo, o.Name); err == nil {
		return fmt.Errorf("marketplace %s exists (chainfs market refresh %s fetches its catalog again)", o.Name, o.Name)
	}
	s, err := subscribe(ctx, o.Name, o.URL, o.Key)
	if err != nil {
		return err
	}
	c, err := market.Add(ctx, e.repo, s)
	if err != nil {
		return err
	}
	row := rowOf(s, c)
	return e.output(row, func() {
		fmt.Fprintf(e.stdout, "subscribed to %s (%s): %s; chainfs image list --type marketplace shows them\n",
			o.Name, dash(c.Vendor), count(uint64(len(c.Images)), "image"))
	})
}

// marketList lists the subscriptions.
type marketList struct{}

func (o *marketList) run(ctx context.Context, e *env) error {
	subs, err := market.List(ctx, e.repo)
	if err != nil {
		return err
	}
	rows := []marketRow{}
	var bad []error
	for i := range subs {
		c, err := subs[i].Open()
		if err != nil {
			bad = append(bad, err)
			continue
		}
		rows = append(rows, rowOf(&subs[i], c))
	}
	if err := e.output(rows, func() {
		t := newTable(e.stdout, "NAME", "VENDOR", "IMAGES", "FETCHED", "URL")
		for _, r := range rows {
			t.row(r.Name, dash(r.Vendor), fmt.Sprint(len(r.Images)), formatTime(r.Fetched), r.URL)
		}
		t.flush()
	}); err != nil {
		return err
	}
	return errors.Join(bad...)
}

// marketRefresh fetches catalogs again.
type marketRefresh struct {
	Name string `json:"name,omitempty"`
}

func (o *marketRefresh) run(ctx context.Context, e *env) error {
	subs, err := market.List(ctx, e.repo)
	if err != nil {
		return err
	}
	if o.Name != "" {
		s, err := market.Get(ctx, e.repo, o.Name)
		if err != nil {
			return err
		}
		subs = []market.Subscription{*s}
	}
	rows := []marketRow{}
	var errs []error
	for _, old := range subs {
		s, err := subscribe(ctx, old.Name, old.URL, old.Key)
		var c *market.Catalog
		if err == nil {
			c, err = market.Replace(ctx, e.repo, s)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w; the catalog fetched %s is kept", err, formatTime(old.Fetched)))
			continue
		}
		rows = append(rows, rowOf(s, c))
	}
	if err := e.output(rows, func() {
		for _, r := range rows {
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Name, count(uint64(len(r.Images)), "image"))
		}
	}); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// marketRemove ends a subscription.
type marketRemove struct {
	Name string `json:"name"`
}

func (o *marketRemove) run(ctx context.Context, e *env) error {
	if err := market.Remove(ctx, e.repo, o.Name); err != nil {
		return err
	}
	return e.output(map[string]string{"removed": o.Name}, func() {
		fmt.Fprintf(e.stdout, "unsubscribed from %s; images imported from it stay\n", o.Name)
	})
}

// marketImport imports one image of a catalog.
type marketImport struct {
	Market string `json:"market"`
	Image  string `json:"image"`
	As     string `json:"as,omitempty"`
}

func (o *marketImport) run(ctx context.Context, e *env) error {
	name := cmp.Or(o.As, o.Image)
	if err := store.CheckImageName(name); err != nil {
		return usageError{err}
	}
	s, err := market.Get(ctx, e.repo, o.Market)
	if err != nil {
		return err
	}
	// The catalog kept is verified again: what is imported rests on the
	// vendor's signature, not on the record.
	c, err := s.Open()
	if err != nil {
		return err
	}
	entry, ok := c.Image(o.Image)
	if !ok {
		return fmt.Errorf("marketplace %s has no image %s (chainfs image list --type marketplace)", o.Market, o.Image)
	}
	in, _, _, err := download(ctx, entry.URL)
	if err != nil {
		return err
	}
	defer in.Close()
	checked := market.NewChecked(in, entry)
	counted := &readCounter{r: checked}
	bar := e.progress("import "+name, func() (uint64, uint64) { return counted.n.Load(), entry.Size })
	opts := imagefile.ImportOptions{
		Meta:       images.Meta{Owner: e.caller.UID, Description: entry.Description, Marketplace: o.Market},
		Origin:     images.Origin{Kind: "marketplace", Source: o.Market + "/" + o.Image},
		NativeOnly: true,
		Verify:     checked.Finish,
	}
	img, st, err := imagefile.Import(ctx, e.repo, name, counted, opts)
	bar.finish()
	if err != nil {
		return err
	}
	return e.output(importResult{Image: img, Stats: st}, func() {
		fmt.Fprintf(e.stdout, "imported marketplace image %s/%s as %s: %s, %s; its signature, size, SHA-256 and every block checked; stored %s new\n",
			o.Market, o.Image, img.Name, count(img.Snapshot.Stats.Files, "file"), size(img.Snapshot.Stats.LogicalBytes), size(st.StoredBytes))
	})
}

// marketplaceOffers are the images of the subscriptions' catalogs that
// the repository does not hold, as image list shows them: type
// marketplace, no content yet.
func marketplaceOffers(ctx context.Context, e *env, held []images.Image) ([]images.Image, error) {
	subs, err := market.List(ctx, e.repo)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	for i := range subs {
		c, err := subs[i].Open()
		if err != nil {
			e.log.Warn("image list: a marketplace's catalog", "err", err)
			continue
		}
		for _, en := range c.Images {
			imported := false
			for _, h := range held {
				if h.Marketplace == subs[i].Name && h.Origin.Source == subs[i].Name+"/"+en.Name {
					imported = true
				}
			}
			if !imported {
				out = append(out, images.Image{Name: subs[i].Name + "/" + en.Name, Type: images.Marketplace, Offered: true,
					Meta: images.Meta{Description: en.Description, Marketplace: subs[i].Name,
						Origin: images.Origin{Kind: "marketplace", Source: subs[i].URL}}})
			}
		}
	}
	return out, nil
}

// marketKeygen makes a vendor's signing key.
func marketKeygen(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(c.Args().First(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("signing key: %w", unwrapPathError(err))
	}
	if _, err := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv.Seed())); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s\n", market.FormatKey(pub))
	return nil
}

// marketSign signs a catalog.
func marketSign(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	if c.String("key-file") == "" {
		return usagef("--key-file: give the signing key 'market keygen' made")
	}
	keyText, err := os.ReadFile(c.String("key-file"))
	if err != nil {
		return fmt.Errorf("signing key: %w", unwrapPathError(err))
	}
	seed, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(keyText)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return fmt.Errorf("signing key %s: not a key 'market keygen' made", c.String("key-file"))
	}
	path := c.Args().First()
	body, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("catalog: %w", unwrapPathError(err))
	}
	sig, err := market.Sign(body, ed25519.NewKeyFromSeed(seed), cmp.Or(c.String("url"), "https://catalog.invalid/"))
	if err != nil {
		return fmt.Errorf("catalog %s: %w", path, err)
	}
	if err := os.WriteFile(path+".sig", sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wrote %s.sig\n", path)
	return nil
}
