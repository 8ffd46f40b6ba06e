package tree

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A scan lists every entry in plain path order, also where a name sorts
// between a directory and its own entries ("a/b-c" and "a/b.c" before
// "a/b/x", "a/b0" after), and in a subtree scanned alone.
func TestScanOrder(t *testing.T) {
	root := t.TempDir()
	var want []string
	for _, d := range []string{"a/b/x", "a/b-c", "a/c/d", "a-", "a/b/x-"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a/b/x/y", "a/b-c/z", "a/b.c", "a/b0", "a/b/!", "a/b/ ", "a/a", "a/c/d/e", "a-/f", "a0", "b", "a/b/x-/q", "a/b/x0"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error {
		r, _ := filepath.Rel(root, p)
		want = append(want, r)
		return nil
	})
	slices.Sort(want)
	es, err := Scan(root, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := pathsOf(es)
	if !slices.Equal(got, want) {
		t.Fatalf("scan order\n got %q\nwant %q", got, want)
	}
	sub, err := Scan(root, "a/b", &Earlier{Entries: es, Taken: time.Now(), Window: DefaultWindow()})
	if err != nil {
		t.Fatal(err)
	}
	var gotSub, wantSub []string
	for _, e := range sub {
		gotSub = append(gotSub, e.Path)
	}
	for _, p := range want {
		if p == "a/b" || strings.HasPrefix(p, "a/b/") {
			wantSub = append(wantSub, p)
		}
	}
	if !slices.Equal(gotSub, wantSub) {
		t.Fatalf("subtree scan order\n got %q\nwant %q", gotSub, wantSub)
	}
}

// The directory the mover keeps at a volume's root is in no scan, lookup
// or rescan; a directory of that name deeper down is the app's own.
func TestReservedIsNeverListed(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{Reserved + "/kept", "a/" + Reserved} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, Reserved, "log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	es, err := Scan(root, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := pathsOf(es)
	if want := []string{".", "a", "a/" + Reserved}; !slices.Equal(got, want) {
		t.Fatalf("scan lists %q, want %q", got, want)
	}
	for _, p := range []string{Reserved, Reserved + "/log", Reserved + "/kept"} {
		if _, ok, err := Lookup(root, p); ok || err != nil {
			t.Fatalf("Lookup(%s) = %v, %v", p, ok, err)
		}
		if sub, err := Scan(root, p, nil); len(sub) != 0 || err != nil {
			t.Fatalf("Scan(%s) = %d entries, %v", p, len(sub), err)
		}
	}
	out, ok, err := Rescan(root, es, []string{Reserved + "/log", Reserved + "/new"}, map[string]bool{Reserved + "/kept": true}, nil)
	if err != nil || !ok || len(out) != len(es) {
		t.Fatalf("Rescan of reserved paths: %d entries (want %d), %v, %v", len(out), len(es), ok, err)
	}
}

// pathsOf lists the entries' paths in order.
func pathsOf(es []Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}
