package store

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestMetadataWritesInOneFile holds the rule of commit.go: no other file
// of the package calls a method that changes badger's contents. It goes
// by method name, so a method of another type with one of these names
// must be renamed or listed here with the reason.
func TestMetadataWritesInOneFile(t *testing.T) {
	writers := map[string]bool{
		"Set": true, "SetEntry": true, "Delete": true, "Update": true,
		"NewTransaction": true, "NewWriteBatch": true, "NewManagedWriteBatch": true,
		"DropPrefix": true, "DropAll": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if name == "commit.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && writers[sel.Sel.Name] {
				t.Errorf("%s: %s: metadata is written in commit.go only", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 10 {
		t.Fatalf("checked %d files: the test does not see the package", checked)
	}
}

// TestRecordsOnlyKnownKinds: a package built on the store keeps records of
// its own kind only: no other prefix (the store's own records) is read or
// written through Records.
func TestRecordsOnlyKnownKinds(t *testing.T) {
	r := testRepo(t)
	ctx := context.Background()
	blocks := r.Records(RecordKind(prefixBlock))
	if err := blocks.Create(ctx, "x", map[string]int{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create under the block prefix: %v", err)
	}
	var v map[string]int
	if err := blocks.Get(ctx, "x", &v); !errors.Is(err, ErrInvalid) {
		t.Errorf("get under the block prefix: %v", err)
	}
	if _, err := ListRecords[map[string]int](ctx, blocks); !errors.Is(err, ErrInvalid) {
		t.Errorf("list under the block prefix: %v", err)
	}
	policies := r.Records(PolicyRecords)
	if err := policies.Create(ctx, "p", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := policies.Create(ctx, "p", map[string]int{}); !errors.Is(err, ErrExists) {
		t.Errorf("create twice: %v", err)
	}
	if err := policies.Get(ctx, "p", &v); err != nil || v["a"] != 1 {
		t.Errorf("get: %v %v", v, err)
	}
	if err := policies.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := policies.Get(ctx, "p", &v); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}
