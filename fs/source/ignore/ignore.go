// Package ignore matches paths against gitignore-style exclude patterns.
//
// The rules are git's: blank lines and lines starting with '#' are ignored
// ("\#" and "\!" escape them); trailing spaces are dropped unless escaped;
// '!' re-includes; the last matching pattern wins; a trailing '/' matches
// directories only; a pattern with a '/' at its start or in its middle is
// anchored at the tree's root, any other matches a name at any depth;
// '*' matches anything but '/', '?' one byte but '/', "[a-z]" a class
// ("[!...]" or "[^...]" its complement); a leading "**/" matches in every
// directory, a trailing "/**" everything inside, and "/**/" zero or more
// directories.
//
// As in git, the walk does not enter an excluded directory, so nothing
// below it can be re-included by a later '!' pattern. Names are matched as
// bytes; they need not be UTF-8.
package ignore

import (
	"fmt"
	"strings"
)

// Matcher decides which paths of a tree are excluded.
type Matcher struct {
	patterns []string
	rules    []rule
}

type rule struct {
	negate   bool
	dirOnly  bool
	anchored bool
	segs     []segment // anchored: one per path component
}

// segment matches one path component; doubleStar matches any number.
type segment struct {
	doubleStar bool
	literal    bool // glob has no wildcard: compare bytes
	glob       string
}

// Compile parses patterns; an invalid pattern is an error naming it.
func Compile(patterns []string) (*Matcher, error) {
	m := &Matcher{patterns: append([]string(nil), patterns...)}
	for _, p := range patterns {
		r, ok, err := parse(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if ok {
			m.rules = append(m.rules, r)
		}
	}
	return m, nil
}

// Patterns returns the patterns as given.
func (m *Matcher) Patterns() []string {
	if m == nil {
		return nil
	}
	return m.patterns
}

func parse(p string) (rule, bool, error) {
	var r rule
	p = trimTrailingSpaces(p)
	if p == "" || p[0] == '#' {
		return r, false, nil
	}
	if p[0] == '!' {
		r.negate = true
		p = p[1:]
	} else if strings.HasPrefix(p, `\!`) || strings.HasPrefix(p, `\#`) {
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(p, `\/`) {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if strings.HasPrefix(p, "/") {
		r.anchored = true
		p = strings.TrimLeft(p, "/")
	} else if strings.Contains(p, "/") {
		r.anchored = true
	}
	if p == "" {
		return r, false, fmt.Errorf("matches nothing")
	}
	parts := strings.Split(p, "/")
	for _, part := range parts {
		if part == "" {
			continue // "a//b" is "a/b"
		}
		if part == "**" {
			if n := len(r.segs); n > 0 && r.segs[n-1].doubleStar {
				continue
			}
			r.segs = append(r.segs, segment{doubleStar: true})
			continue
		}
		if err := checkGlob(part); err != nil {
			return r, false, err
		}
		r.segs = append(r.segs, segment{glob: part, literal: !strings.ContainsAny(part, `*?[\`)})
	}
	if !r.anchored && len(r.segs) == 1 && r.segs[0].doubleStar {
		// "**" alone matches everything.
		r.anchored = true
	}
	return r, true, nil
}

// trimTrailingSpaces drops trailing spaces not escaped with a backslash.
func trimTrailingSpaces(p string) string {
	end := len(p)
	for end > 0 && p[end-1] == ' ' {
		if end >= 2 && p[end-2] == '\\' {
			// "\ " keeps the space; drop the escape.
			return p[:end-2] + " "
		}
		end--
	}
	return p[:end]
}

func checkGlob(g string) error {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '\\':
			if i+1 == len(g) {
				return fmt.Errorf("trailing backslash")
			}
			i++
		case '[':
			end := classEnd(g, i)
			if end < 0 {
				return fmt.Errorf("unterminated character class")
			}
			i = end
		}
	}
	return nil
}

// classEnd returns the index of the ']' closing the class opened at i, or -1.
func classEnd(g string, i int) int {
	j := i + 1
	if j < len(g) && (g[j] == '!' || g[j] == '^') {
		j++
	}
	if j < len(g) && g[j] == ']' {
		j++ // a ']' first is literal
	}
	for ; j < len(g); j++ {
		switch g[j] {
		case '\\':
			j++
		case ']':
			return j
		}
	}
	return -1
}

// Excluded reports whether rel (slash-separated, relative to the tree's
// root) is excluded. isDir says whether it is a directory.
func (m *Matcher) Excluded(rel string, isDir bool) bool {
	if m == nil {
		return false
	}
	base := rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		base = rel[i+1:]
	}
	for i := len(m.rules) - 1; i >= 0; i-- {
		r := &m.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		var ok bool
		if r.anchored {
			ok = matchSegs(r.segs, rel)
		} else {
			ok = r.segs[0].match(base)
		}
		if ok {
			return !r.negate
		}
	}
	return false
}

func (s *segment) match(name string) bool {
	if s.literal {
		return s.glob == name
	}
	return globMatch(s.glob, name)
}

// matchSegs matches path components against segments, "**" taking any
// number of components (at least one when it ends the pattern, as in git:
// "foo/**" matches what is inside foo, not foo).
func matchSegs(segs []segment, path string) bool {
	if len(segs) == 0 {
		return path == ""
	}
	if path == "" {
		return false
	}
	comp, rest, more := strings.Cut(path, "/")
	if segs[0].doubleStar {
		if len(segs) == 1 {
			return true
		}
		// Zero components, or one more and try again.
		if matchSegs(segs[1:], path) {
			return true
		}
		return more && matchSegs(segs, rest)
	}
	if !segs[0].match(comp) {
		return false
	}
	if !more {
		return len(segs) == 1
	}
	return matchSegs(segs[1:], rest)
}

// globMatch matches one component against a glob: '*', '?', classes and
// backslash escapes, bytewise.
func globMatch(g, name string) bool {
	gi, ni := 0, 0
	starG, starN := -1, 0
	for ni < len(name) {
		if gi < len(g) {
			switch c := g[gi]; c {
			case '*':
				starG, starN = gi, ni
				gi++
				continue
			case '?':
				gi++
				ni++
				continue
			case '[':
				end := classEnd(g, gi)
				if classMatch(g[gi+1:end], name[ni]) {
					gi = end + 1
					ni++
					continue
				}
			case '\\':
				if g[gi+1] == name[ni] {
					gi += 2
					ni++
					continue
				}
			default:
				if c == name[ni] {
					gi++
					ni++
					continue
				}
			}
		}
		if starG < 0 {
			return false
		}
		// Let the last '*' take one more byte.
		starN++
		gi, ni = starG+1, starN
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}

// classMatch matches a byte against a class body (between '[' and ']').
func classMatch(class string, c byte) bool {
	negate := false
	if class != "" && (class[0] == '!' || class[0] == '^') {
		negate = true
		class = class[1:]
	}
	matched := false
	for i := 0; i < len(class); i++ {
		lo := class[i]
		if lo == '\\' && i+1 < len(class) {
			i++
			lo = class[i]
		}
		hi := lo
		if i+2 < len(class) && class[i+1] == '-' {
			hi = class[i+2]
			if hi == '\\' && i+3 < len(class) {
				hi = class[i+3]
				i++
			}
			i += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return matched != negate
}
