// Package config reads chainfs's configuration file: TOML, checked
// against a schema of settings, each error naming its file and line.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Type is the TOML types a setting accepts, or-ed together.
type Type int

// TOML types of a setting's value.
const (
	String Type = 1 << iota
	Bool
	Integer
)

func (t Type) String() string {
	var names []string
	for _, n := range []struct {
		t    Type
		name string
	}{{String, "a string"}, {Bool, "true or false"}, {Integer, "an integer"}} {
		if t&n.t != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, " or ")
}

// Setting is a key the file may hold.
type Setting struct {
	// Key is the dotted path: "repository", "serve.mount".
	Key  string
	Type Type
	// Check, if set, vets the value as text (integers in decimal, booleans
	// as true or false) and says what is wrong with it.
	Check func(string) error
}

// Value is one setting as the file gives it.
type Value struct {
	// Text is the value as a command-line flag would take it.
	Text string
	// Line is where the file sets it.
	Line int
}

// File is a configuration file, read and checked.
type File struct {
	Path   string
	values map[string]Value
}

// Get returns the value the file gives key, if any. A nil File has none.
func (f *File) Get(key string) (Value, bool) {
	if f == nil {
		return Value{}, false
	}
	v, ok := f.values[key]
	return v, ok
}

// Error is a mistake in a configuration file.
type Error struct {
	Path string
	Line int // 0 when the mistake is not on one line
	Msg  string
	err  error // the cause, when reading failed
}

// Unwrap is the cause: fs.ErrNotExist for a missing file, say.
func (e *Error) Unwrap() error { return e.err }

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config %s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("config %s: %s", e.Path, e.Msg)
}

// Load reads and checks the file at path. A missing file is an error
// that wraps fs.ErrNotExist.
func Load(path string, schema []Setting) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Path: path, Msg: errors.Unwrap(err).Error(), err: err}
	}
	return Parse(path, data, schema)
}

// Parse checks data, the contents of the file at path.
func Parse(path string, data []byte, schema []Setting) (*File, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			return nil, &Error{Path: path, Line: line, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
		}
		return nil, &Error{Path: path, Msg: err.Error()}
	}
	byKey := make(map[string]Setting, len(schema))
	tables := map[string]bool{}
	for _, s := range schema {
		byKey[s.Key] = s
		for k := s.Key; strings.Contains(k, "."); {
			k = k[:strings.LastIndexByte(k, '.')]
			tables[k] = true
		}
	}
	lines := keyLines(data)
	f := &File{Path: path, values: map[string]Value{}}
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		// In the file's order, so the first mistake is the one reported.
		keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return lines[prefix+a] - lines[prefix+b] })
		for _, k := range keys {
			v, key := m[k], prefix+k
			line := lines[key]
			if sub, ok := v.(map[string]any); ok && tables[key] {
				if err := walk(key+".", sub); err != nil {
					return err
				}
				continue
			}
			s, ok := byKey[key]
			if !ok {
				if tables[key] {
					return &Error{Path: path, Line: line, Msg: fmt.Sprintf("%s is a table: write [%s] and its keys below it", key, key)}
				}
				return &Error{Path: path, Line: line, Msg: fmt.Sprintf("unknown key %q%s", key, suggest(key, schema))}
			}
			text, ok := scalar(v, s.Type)
			if !ok {
				return &Error{Path: path, Line: line, Msg: fmt.Sprintf("%s: want %s, not %s", key, s.Type, describe(v))}
			}
			if s.Check != nil {
				if err := s.Check(text); err != nil {
					return &Error{Path: path, Line: line, Msg: fmt.Sprintf("%s: %v", key, err)}
				}
			}
			f.values[key] = Value{Text: text, Line: line}
		}
		return nil
	}
	if err := walk("", doc); err != nil {
		return nil, err
	}
	return f, nil
}

// scalar renders v as flag text if its TOML type is one of t.
func scalar(v any, t Type) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, t&String != 0
	case bool:
		return strconv.FormatBool(v), t&Bool != 0
	case int64:
		return strconv.FormatInt(v, 10), t&Integer != 0
	}
	return "", false
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("%t", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// suggest names a known key that ends like key, for a key written in the
// wrong table or without its table.
func suggest(key string, schema []Setting) string {
	last := key[strings.LastIndexByte(key, '.')+1:]
	for _, s := range schema {
		if s.Key != key && (s.Key == last || strings.HasSuffix(s.Key, "."+last)) {
			if i := strings.LastIndexByte(s.Key, '.'); i >= 0 {
				return fmt.Sprintf(" (did you mean %s under [%s]?)", last, s.Key[:i])
			}
			return fmt.Sprintf(" (did you mean %s, before any [table]?)", s.Key)
		}
	}
	return ""
}

// keyLines maps each dotted key and table of a document that parsed to
// the line it is set or opened on.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	lineOf := func(n *unstable.Node) int {
		return 1 + strings.Count(string(data[:n.Raw.Offset]), "\n")
	}
	join := func(prefix string, it unstable.Iterator) (string, int) {
		key, line := prefix, 0
		for it.Next() {
			n := it.Node()
			if key != "" {
				key += "."
			}
			key += string(n.Data)
			if line == 0 {
				line = lineOf(n)
			}
			lines[key] = line
		}
		return key, line
	}
	p := unstable.Parser{KeepComments: false}
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, _ = join("", e.Key())
			if table != "" {
				table += "."
			}
		case unstable.KeyValue:
			join(strings.TrimSuffix(table, "."), e.Key())
		}
	}
	return lines
}
