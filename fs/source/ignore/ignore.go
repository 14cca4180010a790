// Package ignore decides which paths of a volume's tree are left out of a
// snapshot, by gitignore-style exclude patterns matched against paths
// relative to the volume's root.
//
// The rules are git's (gitignore(5)), without reading any file:
//
//   - A blank pattern, or one starting with '#', is ignored; "\#" starts a
//     pattern with a literal '#', and "\!" one with a literal '!'.
//   - Trailing spaces are dropped unless escaped ("a\ " keeps one).
//   - A leading '!' negates: a path it matches is included again. Patterns
//     apply in order and the last one matching a path decides.
//   - A trailing '/' makes a pattern match directories only.
//   - A pattern with a '/' at its start or in its middle is anchored at the
//     tree's root and matched against the whole path; any other is matched
//     against the last name of the path, at any depth.
//   - '*' matches any bytes but '/', '?' one byte but '/', and "[...]" one
//     byte of a class: bytes, ranges ("a-z"), POSIX classes ("[:digit:]"),
//     complemented by a leading '!' or '^'. A backslash escapes any byte.
//   - "**" as a whole path component is special: a leading "**/" matches in
//     every directory, a trailing "/**" everything inside (but not the
//     directory itself), and "/**/" zero or more directories. Any other
//     run of stars is a single '*', as gitignore(5) says (git's code lets
//     "a**/b" match a/x/b; this package does not).
//
// Excluded answers for the one path it is given; it does not look at the
// path's parents. The walk does not enter an excluded directory, so, as in
// git, nothing below an excluded directory can be included again: with
// "build/" and "!build/keep", build/keep is still left out, because build
// itself is never read. To keep one file of a directory, exclude the
// directory's contents instead ("build/*" then "!build/keep").
//
// Names are matched as bytes, so they need not be UTF-8, and there is no
// case folding.
//
// Compile rejects, naming it, a pattern that cannot be parsed (an
// unterminated class, an unknown "[:name:]", a trailing backslash) and one
// that could never match any path ("/", "!", "a//b"), where git would
// silently ignore it: an exclude list is written once for a volume, and a
// typo there would otherwise go unnoticed until a restore lacks files or a
// snapshot holds unwanted ones.
//
// It is written here, not taken from a gitignore library, for those two
// last reasons: the libraries at hand match strings (Unicode, sometimes
// case-folded) rather than a file name's bytes, and accept what they
// cannot parse without a word. It is small, fuzzed (FuzzCompile), and
// its tests compare it on random patterns with a plain reference written
// from git's rules.
package ignore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Matcher decides which paths of a tree are excluded. It is immutable once
// compiled, so one Matcher may serve concurrent walks.
type Matcher struct {
	patterns []string
	rules    []rule
}

// rule is one compiled pattern. A pattern without a '/' compares only the
// last name of a path, which is both git's rule and much cheaper than a
// whole-path match; anchored ones keep one segment per path component.
type rule struct {
	negate  bool
	dirOnly bool
	// name is used when path is nil.
	name segment
	path []segment
	// minSegs and hasDoubleStar let Excluded reject a path by its depth
	// before matching any component.
	minSegs       int
	hasDoubleStar bool
}

type segKind uint8

const (
	segLiteral    segKind = iota // lit
	segAny                       // "*": any name
	segPrefix                    // "lit*"
	segSuffix                    // "*lit", the common "*.ext"
	segContains                  // "*lit*"
	segGlob                      // anything else: head and tail
	segDoubleStar                // "**": zero or more components
)

// segment matches one path component. The shapes most exclude lists use are
// recognised at compile time so that they cost a string comparison, not a
// glob match.
type segment struct {
	kind segKind
	lit  string
	// A segGlob is split at its last star: the tokens after it have a fixed
	// length and so must match the end of a name exactly, which rejects
	// most names ("[Tt]humbs.db", "*.sw[op]") before any backtracking.
	head    []token // up to and including the last star; nil if none
	tail    []token
	tailLen int
	minLen  int
}

type tokKind uint8

const (
	tokLiteral tokKind = iota
	tokAnyByte         // '?'
	tokStar            // a run of '*'
	tokClass           // "[...]"
)

type token struct {
	kind tokKind
	lit  string
	set  byteSet
}

// byteSet is a class resolved to its 256 members at compile time, so that
// matching a byte is one bit test whatever the class's syntax.
type byteSet [4]uint64

func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }

func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}

var (
	errUnterminatedClass = errors.New("unterminated character class")
	errTrailingBackslash = errors.New("trailing backslash")
	errMatchesNothing    = errors.New("matches nothing")
	errEmptyComponent    = errors.New("empty path component (\"//\") matches nothing")
)

// Compile parses patterns; an invalid pattern is an error naming it (e.g.
// `pattern "a[": unterminated character class`). Compile all of a volume's
// patterns once and share the Matcher: Excluded does no parsing.
func Compile(patterns []string) (*Matcher, error) {
	m := &Matcher{patterns: slices.Clone(patterns)}
	for _, p := range patterns {
		r, ok, err := parseRule(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if ok {
			m.rules = append(m.rules, r)
		}
	}
	return m, nil
}

// Patterns returns the patterns as given, comments and blanks included, so
// that a volume's configuration round-trips unchanged. The result is a copy.
func (m *Matcher) Patterns() []string {
	if m == nil {
		return nil
	}
	return slices.Clone(m.patterns)
}

// Excluded reports whether rel (slash-separated, relative to the tree root,
// no leading slash, never "." or empty) is excluded. isDir says whether rel
// is a directory. Only rel itself is judged: the caller is expected not to
// descend into an excluded directory (see the package comment).
//
// It is called once per entry of trees with millions of files, so it does
// not allocate, and it tries the patterns from last to first so that the
// first match found is the one that decides.
func (m *Matcher) Excluded(rel string, isDir bool) bool {
	if m == nil {
		return false
	}
	name := rel[strings.LastIndexByte(rel, '/')+1:]
	depth := 0 // components of rel, counted only if an anchored rule needs it
	for i := len(m.rules) - 1; i >= 0; i-- {
		r := &m.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		var ok bool
		if r.path == nil {
			ok = r.name.match(name)
		} else {
			if depth == 0 {
				depth = strings.Count(rel, "/") + 1
			}
			if depth < r.minSegs || (!r.hasDoubleStar && depth != r.minSegs) {
				continue
			}
			ok = matchPath(r.path, rel)
		}
		if ok {
			return !r.negate
		}
	}
	return false
}

// parseRule compiles one pattern; ok is false for blanks and comments. The
// order of the steps is git's, which is what gives "\#", "\!", "\ " and
// "!#x" their meaning.
func parseRule(p string) (r rule, ok bool, err error) {
	if p == "" || p[0] == '#' {
		return r, false, nil
	}
	p = trimTrailingSpaces(p)
	if p == "" {
		return r, false, nil
	}
	if p[0] == '!' {
		r.negate = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = p[:len(p)-1]
	}
	// Like git, any '/' left anchors, even an escaped one or one in a class.
	anchored := strings.IndexByte(p, '/') >= 0
	if strings.HasPrefix(p, "/") {
		p = p[1:]
	}
	if p == "" {
		return r, false, errMatchesNothing
	}
	segs, err := parseSegments(p)
	if err != nil {
		return r, false, err
	}
	switch {
	case !anchored:
		r.name = segs[0]
		if r.name.kind == segDoubleStar {
			// Within one name "**" is just '*'.
			r.name.kind = segAny
		}
	case len(segs) == 2 && segs[0].kind == segDoubleStar && segs[1].kind != segDoubleStar:
		// "**/x" is "x" at any depth: take the cheaper name match.
		r.name = segs[1]
	default:
		if segs[len(segs)-1].kind == segDoubleStar {
			// A trailing "**" needs at least one component ("a/**" does not
			// match a itself): spell it "*/**", which matchPath then handles
			// like any other "**".
			segs = append(segs[:len(segs)-1], segment{kind: segAny}, segment{kind: segDoubleStar})
		}
		r.path = segs
		for _, s := range segs {
			if s.kind == segDoubleStar {
				r.hasDoubleStar = true
			} else {
				r.minSegs++
			}
		}
	}
	return r, true, nil
}

// trimTrailingSpaces drops trailing spaces that are not escaped; the
// escaping backslash stays and the glob parser reads it as an escape.
func trimTrailingSpaces(p string) string {
	end := -1 // start of the run of trailing spaces, if any
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ' ':
			if end < 0 {
				end = i
			}
		case '\\':
			i++
			if i == len(p) {
				return p
			}
			end = -1
		default:
			end = -1
		}
	}
	if end >= 0 {
		return p[:end]
	}
	return p
}

// parseSegments splits a pattern (leading and trailing '/' already removed)
// into one segment per path component, tokenising each. Classes are parsed
// before splitting, since "[a/b]" is one class, not two components.
func parseSegments(p string) ([]segment, error) {
	var (
		segs  []segment
		toks  []token
		lit   []byte
		stars int
	)
	flush := func() {
		if len(lit) > 0 {
			toks = append(toks, token{kind: tokLiteral, lit: string(lit)})
			lit = lit[:0]
		}
		if stars > 0 {
			// Stars are only special as a whole component, so a run is
			// kept as one token and judged when the component ends.
			toks = append(toks, token{kind: tokStar, lit: strings.Repeat("*", stars)})
			stars = 0
		}
	}
	endSegment := func() error {
		flush()
		s, err := makeSegment(toks)
		if err != nil {
			return err
		}
		segs = append(segs, s)
		toks = nil
		return nil
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '*' && stars > 0 || c == '*' && len(lit) > 0 {
			// Keep the tokens in pattern order.
			flush()
		}
		switch c {
		case '\\':
			i++
			if i == len(p) {
				return nil, errTrailingBackslash
			}
			if p[i] == '/' {
				// Git compares "\/" with '/', and '/' only ever meets a
				// separator.
				if err := endSegment(); err != nil {
					return nil, err
				}
				continue
			}
			lit = append(lit, p[i])
		case '/':
			if err := endSegment(); err != nil {
				return nil, err
			}
		case '*':
			stars++
		case '?':
			flush()
			toks = append(toks, token{kind: tokAnyByte})
		case '[':
			flush()
			set, next, err := parseClass(p, i+1)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokClass, set: set})
			i = next - 1
		default:
			lit = append(lit, c)
		}
	}
	if err := endSegment(); err != nil {
		return nil, err
	}
	return segs, nil
}

// makeSegment classifies a component's tokens into the cheapest matcher that
// is exact for them.
func makeSegment(toks []token) (segment, error) {
	kinds := make([]tokKind, len(toks))
	for i, t := range toks {
		kinds[i] = t.kind
	}
	switch {
	case len(toks) == 0:
		return segment{}, errEmptyComponent
	case len(toks) == 1 && kinds[0] == tokStar && len(toks[0].lit) >= 2:
		return segment{kind: segDoubleStar}, nil
	case slices.Equal(kinds, []tokKind{tokLiteral}):
		return segment{kind: segLiteral, lit: toks[0].lit}, nil
	case slices.Equal(kinds, []tokKind{tokStar}):
		return segment{kind: segAny}, nil
	case slices.Equal(kinds, []tokKind{tokLiteral, tokStar}):
		return segment{kind: segPrefix, lit: toks[0].lit}, nil
	case slices.Equal(kinds, []tokKind{tokStar, tokLiteral}):
		return segment{kind: segSuffix, lit: toks[1].lit}, nil
	case slices.Equal(kinds, []tokKind{tokStar, tokLiteral, tokStar}):
		return segment{kind: segContains, lit: toks[1].lit}, nil
	}
	s := segment{kind: segGlob}
	split := 0
	for i, t := range toks {
		switch t.kind {
		case tokStar:
			split = i + 1
			continue
		case tokLiteral:
			s.minLen += len(t.lit)
		default:
			s.minLen++
		}
	}
	if split > 0 {
		s.head = toks[:split]
	}
	s.tail = toks[split:]
	for _, t := range s.tail {
		if t.kind == tokLiteral {
			s.tailLen += len(t.lit)
		} else {
			s.tailLen++
		}
	}
	return s, nil
}

// parseClass parses a class whose '[' is just before p[i], returning its
// members and the index after its ']'. It follows git's wildmatch exactly:
// a ']' first is a member, '-' first or last is a member, a range ends with
// a reversed or empty one matching nothing, and "[:" without ":]" is a '['.
func parseClass(p string, i int) (byteSet, int, error) {
	var set byteSet
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	prev := -1 // last single member, which a following '-' makes a range start
	for first := true; ; first = false {
		if i >= len(p) {
			return set, 0, errUnterminatedClass
		}
		c := p[i]
		switch {
		case c == ']' && !first:
			if negate {
				for k := range set {
					set[k] = ^set[k]
				}
			}
			// Never '/': a class is within one component.
			set[0] &^= 1 << '/'
			return set, i + 1, nil
		case c == '\\':
			i++
			if i == len(p) {
				return set, 0, errUnterminatedClass
			}
			set.add(p[i])
			prev = int(p[i])
		case c == '-' && prev >= 0 && i+1 < len(p) && p[i+1] != ']':
			i++
			hi := p[i]
			if hi == '\\' {
				i++
				if i == len(p) {
					return set, 0, errUnterminatedClass
				}
				hi = p[i]
			}
			if byte(prev) <= hi {
				set.addRange(byte(prev), hi)
			}
			prev = -1
		case c == '[' && i+1 < len(p) && p[i+1] == ':':
			end := strings.IndexByte(p[i+2:], ']')
			if end < 0 {
				return set, 0, errUnterminatedClass
			}
			end += i + 2
			if end-(i+2) < 1 || p[end-1] != ':' {
				set.add('[')
				prev = '['
				break
			}
			name := p[i+2 : end-1]
			pred := posixClass(name)
			if pred == nil {
				return set, 0, fmt.Errorf("unknown character class %q", "[:"+name+":]")
			}
			for b := range 256 {
				if pred(byte(b)) {
					set.add(byte(b))
				}
			}
			i = end
			prev = -1
		default:
			set.add(c)
			prev = int(c)
		}
		i++
	}
}

// posixClass returns the C-locale predicate for a POSIX class name: names
// are bytes of any encoding, so only ASCII bytes belong to a class.
func posixClass(name string) func(byte) bool {
	isUpper := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	isLower := func(c byte) bool { return 'a' <= c && c <= 'z' }
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	isAlpha := func(c byte) bool { return isUpper(c) || isLower(c) }
	isGraph := func(c byte) bool { return '!' <= c && c <= '~' }
	switch name {
	case "alnum":
		return func(c byte) bool { return isAlpha(c) || isDigit(c) }
	case "alpha":
		return isAlpha
	case "blank":
		return func(c byte) bool { return c == ' ' || c == '\t' }
	case "cntrl":
		return func(c byte) bool { return c < ' ' || c == 0x7f }
	case "digit":
		return isDigit
	case "graph":
		return isGraph
	case "lower":
		return isLower
	case "print":
		return func(c byte) bool { return ' ' <= c && c <= '~' }
	case "punct":
		return func(c byte) bool { return isGraph(c) && !isAlpha(c) && !isDigit(c) }
	case "space":
		return func(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }
	case "upper":
		return isUpper
	case "xdigit":
		return func(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	}
	return nil
}

// match reports whether one path component matches the segment. A
// segDoubleStar never gets here: matchPath handles it.
func (s *segment) match(name string) bool {
	switch s.kind {
	case segLiteral:
		return name == s.lit
	case segAny:
		return true
	case segPrefix:
		return strings.HasPrefix(name, s.lit)
	case segSuffix:
		return strings.HasSuffix(name, s.lit)
	case segContains:
		return strings.Contains(name, s.lit)
	case segGlob:
		if len(name) < s.minLen {
			return false
		}
		cut := len(name) - s.tailLen
		if !matchFixed(s.tail, name[cut:]) {
			return false
		}
		if s.head == nil {
			return cut == 0
		}
		return matchGlob(s.head, name[:cut])
	}
	return false
}

// matchPath matches a whole path, component by component, against anchored
// segments. "**" is to components what '*' is to bytes, so this is the
// classic wildcard match with backtracking to the last star only: a later
// star can take over anything an earlier one would, which keeps it linear
// in practice and free of recursion and allocation.
func matchPath(segs []segment, path string) bool {
	si, pi := 0, 0 // next segment; start of next component (len+1 at the end)
	starSi, starPi := -1, 0
	for {
		if pi > len(path) {
			for si < len(segs) && segs[si].kind == segDoubleStar {
				si++
			}
			return si == len(segs)
		}
		end := strings.IndexByte(path[pi:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += pi
		}
		if si < len(segs) {
			s := &segs[si]
			if s.kind == segDoubleStar {
				starSi, starPi = si, pi
				si++
				continue
			}
			if s.match(path[pi:end]) {
				si++
				pi = end + 1
				continue
			}
		}
		if starSi < 0 {
			return false
		}
		// Let the last "**" take one more component.
		if e := strings.IndexByte(path[starPi:], '/'); e >= 0 {
			starPi += e + 1
		} else {
			starPi = len(path) + 1
		}
		si, pi = starSi+1, starPi
	}
}

// matchFixed matches star-free tokens against a name of their length.
func matchFixed(toks []token, name string) bool {
	i := 0
	for k := range toks {
		t := &toks[k]
		switch t.kind {
		case tokLiteral:
			if name[i:i+len(t.lit)] != t.lit {
				return false
			}
			i += len(t.lit)
			continue
		case tokClass:
			if !t.set.has(name[i]) {
				return false
			}
		}
		i++
	}
	return true
}

// matchGlob matches one component against glob tokens, with the same
// last-star backtracking as matchPath, here over bytes.
func matchGlob(toks []token, name string) bool {
	ti, ni := 0, 0
	starTi, starNi := -1, 0
	for {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tokStar:
				if ti == len(toks)-1 {
					return true
				}
				starTi, starNi = ti, ni
				ti++
				continue
			case tokLiteral:
				if strings.HasPrefix(name[ni:], t.lit) {
					ti++
					ni += len(t.lit)
					continue
				}
			case tokAnyByte:
				if ni < len(name) {
					ti++
					ni++
					continue
				}
			case tokClass:
				if ni < len(name) && t.set.has(name[ni]) {
					ti++
					ni++
					continue
				}
			}
		} else if ni == len(name) {
			return true
		}
		if starTi < 0 || starNi >= len(name) {
			return false
		}
		starNi++
		ti, ni = starTi+1, starNi
	}
}
