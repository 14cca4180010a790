package ignore

import (
	"strings"
	"testing"
)

func TestExcluded(t *testing.T) {
	cases := []struct {
		patterns []string
		path     string
		isDir    bool
		want     bool
	}{
		{nil, "a", false, false},
		{[]string{"*.tmp"}, "x.tmp", false, true},
		{[]string{"*.tmp"}, "a/b/x.tmp", false, true},
		{[]string{"*.tmp"}, "a/x.tmpl", false, false},
		{[]string{"foo"}, "a/foo", true, true},
		{[]string{"foo"}, "a/foo", false, true},
		{[]string{"foo"}, "a/foobar", false, false},
		{[]string{"/foo"}, "foo", false, true},
		{[]string{"/foo"}, "a/foo", false, false},
		{[]string{"a/b"}, "a/b", false, true},
		{[]string{"a/b"}, "x/a/b", false, false},
		{[]string{"dir/"}, "dir", true, true},
		{[]string{"dir/"}, "dir", false, false},
		{[]string{"dir/"}, "x/dir", true, true},
		{[]string{"**/foo"}, "foo", false, true},
		{[]string{"**/foo"}, "a/b/foo", false, true},
		{[]string{"**/foo/bar"}, "a/foo/bar", false, true},
		{[]string{"foo/**"}, "foo", true, false},
		{[]string{"foo/**"}, "foo/a", false, true},
		{[]string{"foo/**"}, "foo/a/b", false, true},
		{[]string{"a/**/b"}, "a/b", false, true},
		{[]string{"a/**/b"}, "a/x/b", false, true},
		{[]string{"a/**/b"}, "a/x/y/b", false, true},
		{[]string{"a/**/b"}, "a/x/y/c", false, false},
		{[]string{"**"}, "anything/at/all", false, true},
		{[]string{"*.log", "!keep.log"}, "keep.log", false, false},
		{[]string{"*.log", "!keep.log"}, "other.log", false, true},
		{[]string{"!keep.log", "*.log"}, "keep.log", false, true},
		{[]string{"#comment"}, "#comment", false, false},
		{[]string{`\#hash`}, "#hash", false, true},
		{[]string{`\!bang`}, "!bang", false, true},
		{[]string{"trail   "}, "trail", false, true},
		{[]string{`space\ `}, "space ", false, true},
		{[]string{""}, "x", false, false},
		{[]string{"f?o"}, "fxo", false, true},
		{[]string{"f?o"}, "fo", false, false},
		{[]string{"[a-c]x"}, "bx", false, true},
		{[]string{"[a-c]x"}, "dx", false, false},
		{[]string{"[!a-c]x"}, "dx", false, true},
		{[]string{"[^a-c]x"}, "ax", false, false},
		{[]string{"[]]x"}, "]x", false, true},
		{[]string{`\*lit`}, "*lit", false, true},
		{[]string{`\*lit`}, "xlit", false, false},
		{[]string{"a*b*c"}, "aXXbYYc", false, true},
		{[]string{"a*b*c"}, "aXXbYY", false, false},
		{[]string{"*"}, "a/b", false, true},
		{[]string{"/*"}, "a/b", false, false},
		{[]string{"/*"}, "a", true, true},
		{[]string{"\xe9*"}, "dir/\xe9t\xff", false, true},
		{[]string{"a//b"}, "a/b", false, true},
	}
	for _, c := range cases {
		m, err := Compile(c.patterns)
		if err != nil {
			t.Fatalf("%q: %v", c.patterns, err)
		}
		if got := m.Excluded(c.path, c.isDir); got != c.want {
			t.Errorf("patterns %q, path %q (dir %v): excluded %v, want %v", c.patterns, c.path, c.isDir, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []string{"a[", "[!", `tail\`, "/"} {
		if _, err := Compile([]string{"ok", p}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Compile(%q): %v, want an error naming it", p, err)
		}
	}
}

func TestNilMatcher(t *testing.T) {
	var m *Matcher
	if m.Excluded("a", false) || m.Patterns() != nil {
		t.Error("nil matcher excludes or has patterns")
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"*.tmp", "a/**/b", "[a-z]?", "!x", `\#y`, "dir/", "[]]"} {
		f.Add(s, "a/b/c.tmp")
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		m, err := Compile([]string{pattern})
		if err != nil {
			return
		}
		m.Excluded(path, false)
		m.Excluded(path, true)
	})
}

func BenchmarkExcluded(b *testing.B) {
	m, _ := Compile([]string{"*.tmp", "*.o", "/build", "node_modules/", "**/.cache", "a/**/b", "[Tt]humbs.db",
		".git/", "*.swp", "*~", "/vendor/**", "!keep.tmp", "*.pyc", "__pycache__/", ".DS_Store", "*.log", "/dist",
		"coverage/", "*.class", "target/"})
	path := "src/github.com/project/internal/pkg/sub/module/file.go"
	for i := 0; i < b.N; i++ {
		m.Excluded(path, false)
	}
}
