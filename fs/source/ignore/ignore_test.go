package ignore

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type excludedCase struct {
	patterns []string
	path     string
	isDir    bool
	want     bool
}

var excludedCases = []excludedCase{
	// No patterns, comments and blanks exclude nothing.
	{nil, "a", false, false},
	{[]string{}, "a/b", true, false},
	{[]string{"", "   ", "#a", "# a"}, "a", false, false},
	{[]string{"#a"}, "#a", false, false},
	{[]string{`\#a`}, "#a", false, true},
	{[]string{`\#a`}, `\#a`, false, false},
	{[]string{" #a"}, " #a", false, true}, // only a '#' first is a comment

	// Trailing spaces.
	{[]string{"a  "}, "a", false, true},
	{[]string{"a  "}, "a  ", false, false},
	{[]string{`a\ `}, "a ", false, true},
	{[]string{`a\ `}, "a", false, false},
	{[]string{`a\  `}, "a ", false, true},
	{[]string{`a\  `}, "a  ", false, false},
	{[]string{`a \ `}, "a  ", false, true},
	{[]string{`a\\ `}, `a\`, false, true},
	{[]string{" a"}, " a", false, true}, // leading spaces are kept
	{[]string{" a"}, "a", false, false},
	{[]string{"a\t"}, "a\t", false, true}, // only spaces are trimmed

	// Literal names match at any depth, whole names only.
	{[]string{"foo"}, "foo", false, true},
	{[]string{"foo"}, "foo", true, true},
	{[]string{"foo"}, "a/b/foo", false, true},
	{[]string{"foo"}, "a/foo/b", false, false}, // the walk never gets here
	{[]string{"foo"}, "foobar", false, false},
	{[]string{"foo"}, "xfoo", false, false},

	// Anchoring: a leading or middle '/'.
	{[]string{"/foo"}, "foo", false, true},
	{[]string{"/foo"}, "a/foo", false, false},
	{[]string{"a/b"}, "a/b", false, true},
	{[]string{"a/b"}, "x/a/b", false, false},
	{[]string{"a/b"}, "a/b/c", false, false},
	{[]string{"/a/b"}, "a/b", true, true},
	{[]string{"a/*"}, "a/x", false, true},
	{[]string{"a/*"}, "a/x/y", false, false},
	{[]string{"a/*"}, "b/a/x", false, false},
	{[]string{"*/b"}, "a/b", false, true},
	{[]string{"*/b"}, "a/x/b", false, false},
	{[]string{"/*"}, "a", false, true},
	{[]string{"/*"}, "a/b", false, false},
	{[]string{"*"}, "a/b/c", false, true},
	{[]string{"a/b*/c"}, "a/bxx/c", false, true},
	{[]string{"a/b*/c"}, "a/b/x/c", false, false},

	// Directory-only patterns.
	{[]string{"dir/"}, "dir", true, true},
	{[]string{"dir/"}, "dir", false, false},
	{[]string{"dir/"}, "x/y/dir", true, true},
	{[]string{"dir/"}, "x/y/dir", false, false},
	{[]string{"/dir/"}, "dir", true, true},
	{[]string{"/dir/"}, "x/dir", true, false},
	{[]string{"a/dir/"}, "a/dir", true, true},
	{[]string{"a/dir/"}, "a/dir", false, false},
	{[]string{"*.d/"}, "x/y.d", true, true},
	{[]string{"*.d/"}, "x/y.d", false, false},

	// Leading "**/".
	{[]string{"**/foo"}, "foo", false, true},
	{[]string{"**/foo"}, "a/b/foo", false, true},
	{[]string{"**/foo"}, "a/foox", false, false},
	{[]string{"**/foo/bar"}, "foo/bar", false, true},
	{[]string{"**/foo/bar"}, "a/b/foo/bar", false, true},
	{[]string{"**/foo/bar"}, "a/foo/x/bar", false, false},
	{[]string{"**/foo/"}, "a/foo", true, true},
	{[]string{"**/foo/"}, "a/foo", false, false},
	{[]string{"/**/foo"}, "a/foo", false, true},

	// Trailing "/**": everything inside, not the directory itself.
	{[]string{"foo/**"}, "foo", true, false},
	{[]string{"foo/**"}, "foo/a", false, true},
	{[]string{"foo/**"}, "foo/a/b/c", true, true},
	{[]string{"foo/**"}, "x/foo/a", false, false},
	{[]string{"foo/**/"}, "foo/a", false, false},
	{[]string{"foo/**/"}, "foo/a", true, true},
	{[]string{"/**"}, "a", false, true},
	{[]string{"/**"}, "a/b/c", false, true},
	{[]string{"**"}, "a/b/c", false, true},
	{[]string{"**/**"}, "a", false, true},
	{[]string{"a/**/**"}, "a", true, false},
	{[]string{"a/**/**"}, "a/b", false, true},

	// Middle "/**/": zero or more directories.
	{[]string{"a/**/b"}, "a/b", false, true},
	{[]string{"a/**/b"}, "a/x/b", false, true},
	{[]string{"a/**/b"}, "a/x/y/z/b", false, true},
	{[]string{"a/**/b"}, "a/x/y/c", false, false},
	{[]string{"a/**/b"}, "x/a/b", false, false},
	{[]string{"a/**/b"}, "a/xb", false, false},
	{[]string{"a/**/b"}, "a/b/c", false, false},
	{[]string{"a/**/b/**/c"}, "a/b/c", false, true},
	{[]string{"a/**/b/**/c"}, "a/1/b/2/3/c", false, true},
	{[]string{"a/**/b/**/c"}, "a/1/c/2/3/b", false, false},
	{[]string{"a/**/**/b"}, "a/b", false, true},
	{[]string{"a/**/*.go"}, "a/x/y/z.go", false, true},
	{[]string{"a/**/x*"}, "a/b/b/xb", false, true},

	// Stars that are not a whole component are single stars.
	{[]string{"a**"}, "abc", false, true},
	{[]string{"a**"}, "x/abc", false, true},
	{[]string{"a/b**"}, "a/bc", false, true},
	{[]string{"a/b**"}, "a/bc/d", false, false},
	{[]string{"a/**b"}, "a/xb", false, true},
	{[]string{"a/**b"}, "a/x/b", false, false},
	{[]string{"a***/b"}, "ax/b", false, true},
	// git's code, unlike its documentation, lets a "**" right after a
	// pattern's literal prefix cross directories: this follows the
	// documentation.
	{[]string{"a***/b"}, "a/x/b", false, false},
	{[]string{"x/a**/b"}, "x/a/q/b", false, false},
	{[]string{"x/a**/b"}, "x/aq/b", false, true},
	{[]string{"***/b"}, "x/y/b", false, true},

	// Negation and ordering: the last match wins.
	{[]string{"*.log", "!keep.log"}, "keep.log", false, false},
	{[]string{"*.log", "!keep.log"}, "a/keep.log", false, false},
	{[]string{"*.log", "!keep.log"}, "other.log", false, true},
	{[]string{"!keep.log", "*.log"}, "keep.log", false, true},
	{[]string{"*.log", "!keep.log", "keep.log"}, "keep.log", false, true},
	{[]string{"!a"}, "a", false, false},
	{[]string{"a", "!a", "b"}, "a", false, false},
	{[]string{"build/*", "!build/keep"}, "build/keep", false, false},
	{[]string{"build/*", "!build/keep"}, "build/other", false, true},
	{[]string{"build/*", "!build/keep"}, "build", true, false},
	{[]string{"x", "!x/"}, "x", true, false},
	{[]string{"x", "!x/"}, "x", false, true},
	{[]string{`\!a`}, "!a", false, true},
	{[]string{`\!a`}, "a", false, false},
	{[]string{"!!a"}, "!a", false, false},
	{[]string{"*", "!!a"}, "!a", false, false},
	{[]string{"*", "!!a"}, "a", false, true},
	{[]string{"!#a", "*"}, "#a", false, true},
	{[]string{"*", "!#a"}, "#a", false, false},

	// '?'.
	{[]string{"f?o"}, "fxo", false, true},
	{[]string{"f?o"}, "fo", false, false},
	{[]string{"f?o"}, "fxxo", false, false},
	{[]string{"a?b"}, "a/b", false, false},
	{[]string{"???"}, "a/b/xyz", false, true},

	// Classes.
	{[]string{"[a-c]x"}, "bx", false, true},
	{[]string{"[a-c]x"}, "dx", false, false},
	{[]string{"[!a-c]x"}, "dx", false, true},
	{[]string{"[!a-c]x"}, "ax", false, false},
	{[]string{"[^a-c]x"}, "dx", false, true},
	{[]string{"[^a-c]x"}, "ax", false, false},
	{[]string{"[abc]"}, "c", false, true},
	{[]string{"[abc]"}, "d", false, false},
	{[]string{"[]]"}, "]", false, true},
	{[]string{"[]a]"}, "a", false, true},
	{[]string{"[!]]"}, "]", false, false},
	{[]string{"[!]]"}, "x", false, true},
	{[]string{"[a-]"}, "-", false, true},
	{[]string{"[-a]"}, "-", false, true},
	{[]string{"[a-c-e]"}, "-", false, true},
	{[]string{"[a-c-e]"}, "d", false, false},
	{[]string{"[c-a]"}, "b", false, false},
	{[]string{`[\]]`}, "]", false, true},
	{[]string{`[\-]`}, "-", false, true},
	{[]string{`[a\-c]`}, "b", false, false},
	{[]string{`[!\!]`}, "!", false, false},
	{[]string{"[[:digit:]]x"}, "7x", false, true},
	{[]string{"[[:digit:]]x"}, "ax", false, false},
	{[]string{"[[:alpha:][:digit:]_]"}, "_", false, true},
	{[]string{"[![:alnum:]]"}, "-", false, true},
	{[]string{"[![:alnum:]]"}, "Q", false, false},
	{[]string{"[[:upper:]]"}, "q", false, false},
	{[]string{"[[:space:]]"}, "\t", false, true},
	{[]string{"[[:xdigit:]]"}, "F", false, true},
	{[]string{"[[:punct:]]"}, "~", false, true},
	{[]string{"[[:x]"}, ":", false, true}, // "[:" without ":]" is a '['
	{[]string{"[[:x]"}, "[", false, true},
	{[]string{"[[a]"}, "[", false, true},
	{[]string{"a[/]b"}, "a/b", false, false}, // a class never matches '/'
	{[]string{"a[!x]b"}, "a/b", false, false},
	{[]string{"a[!x]b"}, "z/ayb", false, true},
	{[]string{"a[!/]b"}, "ayb", false, true},
	{[]string{"a[!/]b"}, "z/ayb", false, false}, // the '/' in the class anchors
	{[]string{"a[!/]b"}, "a/b", false, false},
	{[]string{"*.[oa]"}, "x/lib.a", false, true},
	{[]string{"[Tt]humbs.db"}, "thumbs.db", false, true},

	// Escapes.
	{[]string{`\*lit`}, "*lit", false, true},
	{[]string{`\*lit`}, "xlit", false, false},
	{[]string{`a\?`}, "a?", false, true},
	{[]string{`a\?`}, "ab", false, false},
	{[]string{`\[a]`}, "[a]", false, true},
	{[]string{`\[a]`}, "a", false, false},
	{[]string{`\a\b`}, "ab", false, true},
	{[]string{`\\`}, `\`, false, true},
	{[]string{`\*\*/x`}, "**/x", false, true},
	{[]string{`\*\*/x`}, "a/x", false, false},
	{[]string{`a\/b`}, "a/b", false, true},
	{[]string{`a\/b`}, "x/a/b", false, false},

	// Globs.
	{[]string{"*.tmp"}, "x.tmp", false, true},
	{[]string{"*.tmp"}, "a/b/x.tmp", false, true},
	{[]string{"*.tmp"}, "a/x.tmpl", false, false},
	{[]string{"*.tmp"}, ".tmp", false, true},
	{[]string{"tmp*"}, "a/tmpfile", false, true},
	{[]string{"*cache*"}, "a/xcachex", false, true},
	{[]string{"*cache*"}, "a/cach", false, false},
	{[]string{"a*b*c"}, "aXXbYYc", false, true},
	{[]string{"a*b*c"}, "abc", false, true},
	{[]string{"a*b*c"}, "aXXbYY", false, false},
	{[]string{"*a*a*a"}, "aaaaaaaaaab", false, false},
	{[]string{"*a?[bc]*"}, "xxaxcyy", false, true},

	// Names need not be UTF-8.
	{[]string{"\xe9*"}, "dir/\xe9t\xff", false, true},
	{[]string{"\xe9*"}, "dir/e\xff", false, false},
	{[]string{"?"}, "\xff", false, true},
	{[]string{"??"}, "é", false, true}, // two bytes, one rune
	{[]string{"[\x80-\xff]x"}, "\xc3x", false, true},
	{[]string{"[\x80-\xff]x"}, "cx", false, false},
	{[]string{"/\xff/**"}, "\xff/\xfe", false, true},
}

func TestExcluded(t *testing.T) {
	for _, c := range excludedCases {
		m, err := Compile(c.patterns)
		if err != nil {
			t.Errorf("Compile(%q): %v", c.patterns, err)
			continue
		}
		if got := m.Excluded(c.path, c.isDir); got != c.want {
			t.Errorf("patterns %q, path %q (dir %v): excluded %v, want %v", c.patterns, c.path, c.isDir, got, c.want)
		}
	}
}

// TestExcludedMatchesGit checks the table against refExcluded, so that the
// table and the reference keep each other honest.
func TestExcludedMatchesGit(t *testing.T) {
	for _, c := range excludedCases {
		if got := refExcluded(c.patterns, c.path, c.isDir); got != c.want {
			t.Errorf("reference: patterns %q, path %q (dir %v): excluded %v, want %v", c.patterns, c.path, c.isDir, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ pattern, want string }{
		{"a[", `pattern "a[": unterminated character class`},
		{"[", "unterminated character class"},
		{"[]", "unterminated character class"},
		{"[!]", "unterminated character class"},
		{"[a-", "unterminated character class"},
		{`[a\`, "unterminated character class"},
		{"[[:alpha:]", "unterminated character class"},
		{"[[:a", "unterminated character class"},
		{"a/[b", "unterminated character class"},
		{"[[:word:]]", `unknown character class "[:word:]"`},
		{"[[::]]", `unknown character class "[::]"`},
		{`tail\`, "trailing backslash"},
		{`!tail\`, "trailing backslash"},
		{`a\/`, "trailing backslash"},
		{"/", "matches nothing"},
		{"!", "matches nothing"},
		{"!/", "matches nothing"},
		{"! ", "matches nothing"},
		{"//", "matches nothing"},
		{"a//b", "empty path component"},
		{"//a", "empty path component"},
		{"a//", "empty path component"},
		{`\/a`, "empty path component"},
	}
	for _, c := range cases {
		m, err := Compile([]string{"ok", c.pattern, "ok/too"})
		if err == nil {
			t.Errorf("Compile(%q) succeeded, want an error", c.pattern)
			continue
		}
		if m != nil {
			t.Errorf("Compile(%q) returned a Matcher with its error", c.pattern)
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "pattern "+strconv.Quote(c.pattern)+": ") {
			t.Errorf("Compile(%q): %v, want %q naming the pattern", c.pattern, err, c.want)
		}
	}
}

func TestNoPatterns(t *testing.T) {
	var nilM *Matcher
	empty, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	comments, err := Compile([]string{"# nothing", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Matcher{nilM, empty, comments} {
		for _, p := range []string{"a", "a/b", "#", "# nothing"} {
			if m.Excluded(p, false) || m.Excluded(p, true) {
				t.Errorf("%v excludes %q", m.Patterns(), p)
			}
		}
	}
	if nilM.Patterns() != nil {
		t.Error("nil Matcher has patterns")
	}
}

func TestPatterns(t *testing.T) {
	in := []string{"# c", "", "a  ", "!b/", `\#x`}
	m, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Patterns()
	if !slices.Equal(got, in) {
		t.Fatalf("Patterns() = %q, want %q", got, in)
	}
	in[0], got[1] = "changed", "changed"
	if again := m.Patterns(); again[0] != "# c" || again[1] != "" {
		t.Errorf("Patterns() shares storage with the caller: %q", again)
	}
}

func TestExcludedDoesNotAllocate(t *testing.T) {
	m := benchMatcher(t)
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range benchPaths {
			m.Excluded(p, false)
			m.Excluded(p, true)
		}
	})
	if allocs != 0 {
		t.Errorf("Excluded allocates %v times per run", allocs)
	}
}

// TestRandomAgainstGit compares Excluded with refExcluded on patterns and
// paths built from the bytes that matter to the syntax, which reaches
// combinations no hand-written table does.
func TestRandomAgainstGit(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 20000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	patPieces := []string{"a", "b", "/", "*", "**", "?", "[", "]", "!", "^", "-", `\`, " ", "#", "[:alpha:]", "[:digit:]", "/**/", "**/", "/**", "\xff"}
	nameBytes := []string{"a", "b", "ab", "ba", "aa", "-", "]", "!", "#", " ", "*", "[", "\\", "\xff", "7"}
	compared := 0
	for range n {
		pats := make([]string, 1+rng.IntN(3))
		for i := range pats {
			var sb strings.Builder
			for range 1 + rng.IntN(7) {
				sb.WriteString(patPieces[rng.IntN(len(patPieces))])
			}
			pats[i] = sb.String()
		}
		comps := make([]string, 1+rng.IntN(4))
		for i := range comps {
			var sb strings.Builder
			for range 1 + rng.IntN(2) {
				sb.WriteString(nameBytes[rng.IntN(len(nameBytes))])
			}
			comps[i] = sb.String()
		}
		path := strings.Join(comps, "/")
		isDir := rng.IntN(2) == 0
		if compareWithGit(t, pats, path, isDir) {
			compared++
		}
	}
	if compared < n/10 {
		t.Errorf("only %d of %d random cases compiled", compared, n)
	}
}

// compareWithGit reports whether the patterns compiled and, if they did,
// fails t when Excluded and refExcluded disagree on a well-formed path.
func compareWithGit(t *testing.T, pats []string, path string, isDir bool) bool {
	t.Helper()
	m, err := Compile(pats)
	if err != nil {
		return false
	}
	got := m.Excluded(path, isDir)
	if !comparable(pats, path) {
		return false
	}
	if want := refExcluded(pats, path, isDir); got != want {
		t.Errorf("patterns %q, path %q (dir %v): excluded %v, git says %v", pats, path, isDir, got, want)
	}
	return true
}

// comparable reports whether the reference can judge the case: it reads
// NUL as the end of a string, as git does, and git does not treat "**\/"
// like "**/" (a quirk this package does not copy); paths must be as the
// walk produces them.
func comparable(pats []string, path string) bool {
	for _, p := range pats {
		if strings.Contains(p, "\x00") || strings.Contains(p, `\/`) {
			return false
		}
	}
	return path != "" && path != "." && !strings.Contains(path, "\x00") &&
		!strings.HasPrefix(path, "/") && !strings.HasSuffix(path, "/") && !strings.Contains(path, "//")
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"*.tmp", "a/**/b", "**/foo", "foo/**", "/a", "dir/", "[a-z]?", "[!]]x", "[[:alpha:]]",
		"!x", `\#y`, `\!z`, `a\ `, "a  ", "a**b", "/**", "#c", "\xff*", "a[",
	} {
		f.Add(s, "", "a/b/c.tmp", false)
		f.Add(s, "!"+s, "foo/x", true)
	}
	f.Fuzz(func(t *testing.T, p1, p2, path string, isDir bool) {
		pats := []string{p1, p2}
		m, err := Compile(pats)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "pattern ") {
				t.Errorf("Compile(%q): error %q does not name the pattern", pats, err)
			}
			return
		}
		m.Excluded(path, isDir)
		compareWithGit(t, pats, path, isDir)
	})
}

var benchPaths = []string{
	"src/github.com/project/internal/pkg/sub/module/file.go",
	"src/github.com/project/internal/pkg/sub/module/file_test.go",
	"home/user/projects/web/node_modules/lodash/fp/placeholder.js",
	"home/user/projects/web/node_modules",
	"home/user/.cache/go-build/ab/abcdef0123456789-d",
	"var/lib/app/data/2024/06/30/segment-000123.log",
	"a/x/y/z/w/b",
	"usr/share/doc/\xe9l\xe8ve/README",
	"build/out/obj/deep/path/to/object.o",
	"photos/2023/summer/IMG_0001.JPG",
}

func benchMatcher(tb testing.TB) *Matcher {
	m, err := Compile([]string{
		"# build output", "*.tmp", "*.o", "/build", "node_modules/", "**/.cache", "a/**/b",
		"[Tt]humbs.db", ".git/", "*.sw[op]", "*~", "/vendor/**", "!keep.tmp", "*.pyc",
		"__pycache__/", ".DS_Store", "*.log", "!important/**/*.log", "/dist", "coverage/",
		"*.class", "target/", "src/**/testdata/", "*cache*",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func BenchmarkExcluded(b *testing.B) {
	m := benchMatcher(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range benchPaths {
			m.Excluded(p, false)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(benchPaths)), "ns/path")
}

// refExcluded is an independent reference: git's dir.c rules over a direct
// transcription of git's wildmatch.c, without this package's compilation,
// splitting into components or shortcuts. It has git's quirks of treating
// NUL as the end of a string and aborting on malformed patterns instead of
// rejecting them, so callers only consult it where those cannot matter.
func refExcluded(patterns []string, rel string, isDir bool) bool {
	excluded := false
	name := rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		name = rel[i+1:]
	}
	for _, p := range patterns {
		if p == "" || p[0] == '#' {
			continue
		}
		// git's trim_trailing_spaces.
		last := -1
	scan:
		for i := 0; i < len(p); i++ {
			switch p[i] {
			case ' ':
				if last < 0 {
					last = i
				}
			case '\\':
				i++
				if i == len(p) {
					last = -1
					break scan
				}
				last = -1
			default:
				last = -1
			}
		}
		if last >= 0 {
			p = p[:last]
		}
		negate := strings.HasPrefix(p, "!")
		if negate {
			p = p[1:]
		}
		if strings.HasSuffix(p, "/") {
			if !isDir {
				continue
			}
			p = p[:len(p)-1]
		}
		var ok bool
		if !strings.Contains(p, "/") {
			ok = p != "" && wildmatch(p, name, false) == wmMatch
		} else {
			ok = wildmatch(strings.TrimPrefix(p, "/"), rel, true) == wmMatch
		}
		if ok {
			excluded = !negate
		}
	}
	return excluded
}

const (
	wmMatch           = 0
	wmNoMatch         = 1
	wmAbortAll        = -1
	wmAbortToStarStar = -2
)

// at reads s like a NUL-terminated C string.
func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// wildmatch is git's dowild, line for line; pathname is WM_PATHNAME.
func wildmatch(p, text string, pathname bool) int {
	pi, ti := 0, 0
	for ; at(p, pi) != 0; pi, ti = pi+1, ti+1 {
		pch := p[pi]
		tch := at(text, ti)
		if tch == 0 && pch != '*' {
			return wmAbortAll
		}
		switch pch {
		case '\\':
			pi++
			if tch != at(p, pi) {
				return wmNoMatch
			}
		default:
			if tch != pch {
				return wmNoMatch
			}
		case '?':
			if pathname && tch == '/' {
				return wmNoMatch
			}
		case '*':
			var matchSlash bool
			pi++
			if at(p, pi) == '*' {
				prev := pi - 2
				for pi++; at(p, pi) == '*'; pi++ {
				}
				if !pathname {
					matchSlash = true
				} else if (prev < 0 || p[prev] == '/') &&
					(at(p, pi) == 0 || at(p, pi) == '/' || (at(p, pi) == '\\' && at(p, pi+1) == '/')) {
					if at(p, pi) == '/' && wildmatch(p[pi+1:], text[ti:], pathname) == wmMatch {
						return wmMatch
					}
					matchSlash = true
				} else {
					matchSlash = false
				}
			} else {
				matchSlash = !pathname
			}
			if at(p, pi) == 0 {
				if !matchSlash && strings.IndexByte(text[ti:], '/') >= 0 {
					return wmNoMatch
				}
				return wmMatch
			} else if !matchSlash && at(p, pi) == '/' {
				slash := strings.IndexByte(text[ti:], '/')
				if slash < 0 {
					return wmNoMatch
				}
				ti += slash
				continue // the loop's increment steps over both slashes
			}
			for {
				if tch == 0 {
					break
				}
				if c := at(p, pi); !strings.ContainsRune(`*?[\`, rune(c)) {
					for {
						tch = at(text, ti)
						if tch == 0 || (!matchSlash && tch == '/') || tch == c {
							break
						}
						ti++
					}
					if tch != c {
						return wmNoMatch
					}
				}
				if matched := wildmatch(p[pi:], text[ti:], pathname); matched != wmNoMatch {
					if !matchSlash || matched != wmAbortToStarStar {
						return matched
					}
				} else if !matchSlash && tch == '/' {
					return wmAbortToStarStar
				}
				ti++
				tch = at(text, ti)
			}
			return wmAbortAll
		case '[':
			pi++
			pch = at(p, pi)
			if pch == '^' {
				pch = '!'
			}
			negated := pch == '!'
			if negated {
				pi++
				pch = at(p, pi)
			}
			var prev byte
			matched := false
			for {
				if pch == 0 {
					return wmAbortAll
				}
				switch {
				case pch == '\\':
					pi++
					pch = at(p, pi)
					if pch == 0 {
						return wmAbortAll
					}
					if tch == pch {
						matched = true
					}
				case pch == '-' && prev != 0 && at(p, pi+1) != 0 && at(p, pi+1) != ']':
					pi++
					pch = p[pi]
					if pch == '\\' {
						pi++
						pch = at(p, pi)
						if pch == 0 {
							return wmAbortAll
						}
					}
					if tch <= pch && tch >= prev {
						matched = true
					}
					pch = 0
				case pch == '[' && at(p, pi+1) == ':':
					pi += 2
					s := pi
					for at(p, pi) != 0 && p[pi] != ']' {
						pi++
					}
					if at(p, pi) == 0 {
						return wmAbortAll
					}
					if n := pi - s - 1; n < 0 || p[pi-1] != ':' {
						pi = s - 2
						pch = '['
						if tch == pch {
							matched = true
						}
					} else {
						in, known := refClass(p[s:s+n], tch)
						if !known {
							return wmAbortAll
						}
						if in {
							matched = true
						}
						pch = 0
					}
				default:
					if tch == pch {
						matched = true
					}
				}
				prev = pch
				pi++
				pch = at(p, pi)
				if pch == ']' {
					break
				}
			}
			if matched == negated || (pathname && tch == '/') {
				return wmNoMatch
			}
		}
	}
	if at(text, ti) != 0 {
		return wmNoMatch
	}
	return wmMatch
}

// refClass is the C locale's <ctype.h>, spelled out separately from
// posixClass.
func refClass(name string, c byte) (in, known bool) {
	const (
		upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		lower  = "abcdefghijklmnopqrstuvwxyz"
		digit  = "0123456789"
		punct  = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
		space  = " \t\n\v\f\r"
		xdigit = digit + "abcdefABCDEF"
	)
	has := func(set string) bool { return strings.IndexByte(set, c) >= 0 }
	switch name {
	case "alnum":
		return has(upper + lower + digit), true
	case "alpha":
		return has(upper + lower), true
	case "blank":
		return has(" \t"), true
	case "cntrl":
		return c <= 0x1f || c == 0x7f, true
	case "digit":
		return has(digit), true
	case "graph":
		return has(upper + lower + digit + punct), true
	case "lower":
		return has(lower), true
	case "print":
		return has(upper + lower + digit + punct + " "), true
	case "punct":
		return has(punct), true
	case "space":
		return has(space), true
	case "upper":
		return has(upper), true
	case "xdigit":
		return has(xdigit), true
	}
	return false, false
}
