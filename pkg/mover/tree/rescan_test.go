package tree_test

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

type fsOp func(t *testing.T, root string)

func write(p, data string) fsOp {
	return func(t *testing.T, root string) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte(data), 0o644))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A rescan of what inotify reported lists what a full scan lists, for every
// kind of change a receiver (or anyone on the node) makes.
func TestRescanMatchesFullScan(t *testing.T) {
	cases := map[string]fsOp{
		"new file":         write("a/new", "x"),
		"file rewritten":   write("a/f1", "other"),
		"file appended":    func(t *testing.T, r string) { appendTo(t, filepath.Join(r, "a/f1")) },
		"file removed":     func(t *testing.T, r string) { must(t, os.Remove(filepath.Join(r, "a/f1"))) },
		"new tree":         write("n/m/o/f", "deep"),
		"tree removed":     func(t *testing.T, r string) { must(t, os.RemoveAll(filepath.Join(r, "b"))) },
		"tree renamed":     func(t *testing.T, r string) { must(t, os.Rename(filepath.Join(r, "b"), filepath.Join(r, "c/b2"))) },
		"file renamed":     func(t *testing.T, r string) { must(t, os.Rename(filepath.Join(r, "a/f1"), filepath.Join(r, "b/x/f1"))) },
		"file becomes dir": func(t *testing.T, r string) { rm(t, r, "a/f1"); write("a/f1/inner", "i")(t, r) },
		"dir becomes file": func(t *testing.T, r string) {
			must(t, os.RemoveAll(filepath.Join(r, "b")))
			write("b", "now a file")(t, r)
		},
		"dir mode":  func(t *testing.T, r string) { must(t, os.Chmod(filepath.Join(r, "b/x"), 0o700)) },
		"root mode": func(t *testing.T, r string) { must(t, os.Chmod(r, 0o711)) },
		"attribute set": func(t *testing.T, r string) {
			must(t, unix.Setxattr(filepath.Join(r, "b/x/f2"), "user.k", []byte("v"), 0))
		},
		"times set": func(t *testing.T, r string) {
			must(t, unix.UtimesNano(filepath.Join(r, "a"), []unix.Timespec{{Sec: 5}, {Sec: 5}}))
		},
		"symlink": func(t *testing.T, r string) { must(t, os.Symlink("../a/f1", filepath.Join(r, "b/l"))) },
		"sibling": write("a-b/f", "sorts between a and a/"),
		"nothing": func(*testing.T, string) {},
		"in a new dir after its creation": func(t *testing.T, r string) {
			must(t, os.Mkdir(filepath.Join(r, "late"), 0o755))
			write("late/f", "written after the mkdir")(t, r)
		},
	}
	for name, op := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for _, p := range []string{"a/f1", "a/f0", "b/x/f2", "b/y", "c/f3", "a0"} {
				write(p, p)(t, root)
			}
			w, err := watch.New(root, 0)
			must(t, err)
			defer w.Close()
			before, err := tree.Scan(root, ".", nil)
			must(t, err)
			op(t, root)
			w.Drain()
			c := w.Take()
			got, ok, err := tree.Rescan(root, before, slices.Collect(maps.Keys(c.Paths)), c.Trees, nil)
			must(t, err)
			if !ok || c.Overflow {
				t.Fatalf("rescan refused (ok %v, overflow %v)", ok, c.Overflow)
			}
			want, err := tree.Scan(root, ".", nil)
			must(t, err)
			if !reflect.DeepEqual(paths(got), paths(want)) {
				t.Fatalf("paths after rescan\n got %v\nwant %v", paths(got), paths(want))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("entries after rescan differ from a full scan\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// A hard link among the changes refuses: its other names changed too.
func TestRescanRefusesHardLinks(t *testing.T) {
	root := t.TempDir()
	write("a/f", "x")(t, root)
	w, err := watch.New(root, 0)
	must(t, err)
	defer w.Close()
	before, err := tree.Scan(root, ".", nil)
	must(t, err)
	must(t, os.Link(filepath.Join(root, "a/f"), filepath.Join(root, "a/g")))
	w.Drain()
	c := w.Take()
	if _, ok, err := tree.Rescan(root, before, slices.Collect(maps.Keys(c.Paths)), c.Trees, nil); err != nil || ok {
		t.Fatalf("rescan with a new hard link: ok %v err %v, want a refusal", ok, err)
	}
}

func appendTo(t *testing.T, p string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("more")
	must(t, err)
	must(t, f.Close())
}

func rm(t *testing.T, root, p string) { must(t, os.Remove(filepath.Join(root, p))) }

func paths(es []tree.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}
