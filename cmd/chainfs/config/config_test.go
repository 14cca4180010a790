package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var schema = []Setting{
	{Key: "repository", Type: String, Check: func(s string) error {
		if !strings.HasPrefix(s, "/") {
			return fmt.Errorf("want an absolute path, not %q", s)
		}
		return nil
	}},
	{Key: "log_level", Type: String},
	{Key: "serve.mount", Type: String},
	{Key: "serve.allow_other", Type: Bool},
	{Key: "cache.metadata", Type: String | Integer},
}

func TestParse(t *testing.T) {
	doc := `# chainfs
repository = "/srv/repo"

[serve]
mount = "/mnt/chainfs"   # browse here
allow_other = true

[cache]
metadata = 67108864
`
	f, err := Parse("c.toml", []byte(doc), schema)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]Value{
		"repository":        {"/srv/repo", 2},
		"serve.mount":       {"/mnt/chainfs", 5},
		"serve.allow_other": {"true", 6},
		"cache.metadata":    {"67108864", 9},
	} {
		if got, ok := f.Get(key); !ok || got != want {
			t.Errorf("%s = %+v, %v; want %+v", key, got, ok, want)
		}
	}
	if _, ok := f.Get("log_level"); ok {
		t.Error("log_level set")
	}
	var none *File
	if _, ok := none.Get("repository"); ok {
		t.Error("nil file has a value")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"repository = \"/r\"\nlog_levle = \"info\"\n", `c.toml:2: unknown key "log_levle"`},
		{"\n[serve]\nmount = \"/m\"\nmoutn = \"/m\"\n", `c.toml:4: unknown key "serve.moutn"`},
		{"mount = \"/m\"\n", `c.toml:1: unknown key "mount" (did you mean mount under [serve]?)`},
		{"[serve]\nrepository = \"/r\"\n", `c.toml:2: unknown key "serve.repository" (did you mean repository, before any [table]?)`},
		{"[sevre]\nmount = \"/m\"\n", `c.toml:1: unknown key "sevre"`},
		{"serve = 1\n", `c.toml:1: serve is a table: write [serve] and its keys below it`},
		{"[serve]\nallow_other = \"yes\"\n", `c.toml:2: serve.allow_other: want true or false, not the string "yes"`},
		{"repository = 3\n", `c.toml:1: repository: want a string, not the integer 3`},
		{"[cache]\nmetadata = 1.5\n", `c.toml:2: cache.metadata: want a string or an integer, not the number 1.5`},
		{"repository = \"relative\"\n", `c.toml:1: repository: want an absolute path, not "relative"`},
		{"\nrepository = \n", `c.toml:2: `},
		{"repository = \"/a\"\nrepository = \"/b\"\n", `c.toml:2: `},
		{"[serve]\n[serve]\n", `c.toml:2: `},
	} {
		_, err := Parse("c.toml", []byte(c.doc), schema)
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "config "+c.want) {
			t.Errorf("%q: got %v; want prefix %q", c.doc, err, "config "+c.want)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"), schema)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}
