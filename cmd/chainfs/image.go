package main

import (
	"fmt"
	"os"

	"github.com/chainfs/chainfs/store"
	"github.com/urfave/cli/v2"
)

func imageCommand() *cli.Command {
	return &cli.Command{
		Name:  "image",
		Usage: "make, list and remove images (named, self-contained copies of a snapshot's tree)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make an image from a snapshot, without copying data",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Required: true, Usage: "VOLUME/SNAPSHOT the image is made from"},
					&cli.StringFlag{Name: "description", Usage: "free text kept with the image"},
					jsonFlag,
				},
				Action: imageCreate,
			},
			{
				Name:      "list",
				Usage:     "list images",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag},
				Action:    repoAction(0, 0, imageList),
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

func imageCreate(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	volume, snap, _, err := parseSnapshotPath(c.String("from"), false)
	if err != nil {
		return err
	}
	return withRepo(c, func(r *store.Repo) error {
		img, err := r.CreateImage(c.Context, c.Args().First(), volume, snap,
			store.ImageMeta{Description: c.String("description"), Owner: uint32(os.Geteuid())})
		if err != nil {
			return err
		}
		return output(c, img, func() {
			fmt.Fprintf(c.App.Writer, "image %s created from %s/%s: %s, %s\n", img.Name, img.Origin.Volume, img.Origin.Snapshot,
				count(img.Snapshot.Stats.Files, "file"), size(img.Snapshot.Stats.LogicalBytes))
		})
	})
}

func imageList(c *cli.Context, r *store.Repo) error {
	images, err := r.Images(c.Context)
	if err != nil {
		return err
	}
	if images == nil {
		images = []store.Image{}
	}
	return output(c, images, func() {
		t := newTable(c, "NAME", "FROM", "CREATED", "FILES", "SIZE", "OWNER", "DESCRIPTION")
		for _, img := range images {
			t.row(img.Name, img.Origin.String(), formatTime(img.Created), fmt.Sprint(img.Snapshot.Stats.Files),
				size(img.Snapshot.Stats.LogicalBytes), fmt.Sprint(img.Owner), dash(img.Description))
		}
		t.flush()
	})
}

func imageRemove(c *cli.Context, r *store.Repo) error {
	if err := r.RemoveImage(c.Context, c.Args().First()); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed image %s\n", c.Args().First())
	return nil
}
