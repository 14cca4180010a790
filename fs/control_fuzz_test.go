//go:build linux

package fs

import (
	"strings"
	"testing"
)

// FuzzParseCommand: any write to any control file parses or is refused,
// never panics, and what is accepted is well formed.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"home\n", "home name\n", "v/s\n", "v/s img", "a b c", "\x00", strings.Repeat("x", 5000), "v/s/t", "v/s img /tmp/x.img", "v/s img rel.img"} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
		f.Add(uint8(2), []byte(s))
	}
	files := []string{"snapshot", "delete", "export", "status"}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		file := files[int(which)%len(files)]
		c, err := parseCommand(file, data)
		if err != nil {
			return
		}
		if file == "status" {
			t.Fatal("status accepted a command")
		}
		if c.file != "" && (file != "export" || !strings.HasPrefix(c.file, "/")) {
			t.Fatalf("%s %q: file %q", file, data, c.file)
		}
		for _, s := range []string{c.volume, c.snapshot, c.image, c.file} {
			if strings.ContainsAny(s, " \t\n\x00") {
				t.Fatalf("%s %q: field %q", file, data, s)
			}
		}
		if c.volume == "" || (file != "snapshot" && (c.snapshot == "" || strings.Contains(c.snapshot, "/"))) || (file == "export" && c.image == "") {
			t.Fatalf("%s %q accepted as %+v", file, data, c)
		}
	})
}
