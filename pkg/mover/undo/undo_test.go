package undo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// change is one operation of a pass as the receiver would apply it: keep
// what it destroys, sync, change.
type change struct {
	name string
	do   func(l *Log, r *safefs.Root) error
}

// overwrite writes data at off in the existing file p, in place.
func overwrite(l *Log, r *safefs.Root, p string, off int64, data []byte) error {
	f, err := r.OpenRW(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := l.Overwrite(p, f, off, int64(len(data))); err != nil {
		return err
	}
	if err := l.Sync(); err != nil {
		return err
	}
	_, err = f.WriteAt(data, off)
	return err
}

// made keeps what is at p, records p as made by the pass, syncs, makes it.
func made(l *Log, p string, mk func() error) error {
	if err := l.Replace(p); err != nil {
		return err
	}
	if err := l.Created(p); err != nil {
		return err
	}
	if err := l.Sync(); err != nil {
		return err
	}
	return mk()
}

func create(l *Log, r *safefs.Root, p, data string) error {
	return made(l, p, func() error { return write(r, p, data) })
}

func remove(l *Log, p string) error {
	if err := l.Replace(p); err != nil {
		return err
	}
	return l.Sync()
}

func rename(l *Log, r *safefs.Root, from, to string) error {
	if err := l.Replace(to); err != nil {
		return err
	}
	if err := l.Renamed(from, to); err != nil {
		return err
	}
	if err := l.Sync(); err != nil {
		return err
	}
	return r.Rename(from, to)
}

// pass is every kind of change a receiver makes, in an order where later
// changes depend on earlier ones (the same path removed, made, renamed).
var pass = []change{
	{"overwrite the middle of a file", func(l *Log, r *safefs.Root) error {
		return overwrite(l, r, "big", 70000, bytes.Repeat([]byte("N"), 9000))
	}},
	{"append", func(l *Log, r *safefs.Root) error { return overwrite(l, r, "a/small", 5, []byte("appended")) }},
	{"truncate", func(l *Log, r *safefs.Root) error {
		f, err := r.OpenRW("a/trunc")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := l.Overwrite("a/trunc", f, 3, 1<<20); err != nil {
			return err
		}
		if err := l.Sync(); err != nil {
			return err
		}
		return f.Truncate(3)
	}},
	{"new file", func(l *Log, r *safefs.Root) error { return create(l, r, "a/new", "new") }},
	{"new tree", func(l *Log, r *safefs.Root) error {
		if err := made(l, "n", func() error { return r.Mkdir("n") }); err != nil {
			return err
		}
		return create(l, r, "n/f", "in a new dir")
	}},
	{"remove a file", func(l *Log, r *safefs.Root) error { return remove(l, "b/gone") }},
	{"remove a tree", func(l *Log, r *safefs.Root) error { return remove(l, "c") }},
	{"rename over a file", func(l *Log, r *safefs.Root) error { return rename(l, r, "a/small", "b/target") }},
	{"rename a directory", func(l *Log, r *safefs.Root) error { return rename(l, r, "d", "a/d2") }},
	{"make again where a file was renamed from", func(l *Log, r *safefs.Root) error { return create(l, r, "a/small", "again") }},
	{"remove what the pass made", func(l *Log, r *safefs.Root) error { return remove(l, "a/small") }},
	{"file becomes a directory", func(l *Log, r *safefs.Root) error {
		return made(l, "b/file", func() error { return r.Mkdir("b/file") })
	}},
	{"metadata", func(l *Log, r *safefs.Root) error {
		for _, p := range []string{"b", "big", "."} {
			if err := l.Meta(p); err != nil {
				return err
			}
		}
		if err := l.Sync(); err != nil {
			return err
		}
		if err := r.SetMeta("b", safefs.Meta{Mode: 0o700, Mtime: 12345}); err != nil {
			return err
		}
		if err := r.SetMeta(".", safefs.Meta{Mode: 0o711, Mtime: 54321}); err != nil {
			return err
		}
		return r.SetMeta("big", safefs.Meta{Mode: 0o600, Mtime: 999, Xattrs: []tree.Xattr{{Name: "user.k", Value: []byte("v2")}}})
	}},
	{"rename back over a renamed path", func(l *Log, r *safefs.Root) error { return rename(l, r, "a/d2", "d") }},
	{"symlink", func(l *Log, r *safefs.Root) error {
		return made(l, "e", func() error { return r.Symlink("big", "e") })
	}},
}

// volume makes the tree the pass starts from.
func volume(t *testing.T) (string, *safefs.Root) {
	t.Helper()
	dir := t.TempDir()
	for p, data := range map[string]string{
		"big": strings.Repeat("0123456789", 20000), "a/small": "small", "a/trunc": "truncate me",
		"b/gone": "gone", "b/target": "old target", "b/file": "a file", "c/x/y": "deep", "c/z": "z",
		"d/inner": "inner", "e": "a file where a symlink goes",
	} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644))
	}
	must(t, unix.Setxattr(filepath.Join(dir, "big"), "user.k", []byte("v1"), 0))
	must(t, os.Chmod(filepath.Join(dir, "c"), 0o750))
	r, err := safefs.Open(dir)
	must(t, err)
	t.Cleanup(func() { r.Close() })
	return dir, r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// digest is the tree's verification digest, the log's directory left out.
func digest(t *testing.T, dir string) (tree.Hash, []string) {
	t.Helper()
	es, err := tree.Scan(dir, ".", nil)
	must(t, err)
	var kept []tree.Entry
	var paths []string
	for _, e := range es {
		if e.Path != Dir && !strings.HasPrefix(e.Path, Dir+"/") {
			kept = append(kept, e)
			paths = append(paths, fmt.Sprintf("%s %o %d", e.Path, e.Mode, e.Mtime))
		}
	}
	tree.LinkGroups(kept)
	v, err := tree.VerifyEntries(dir, kept, nil, true, os.Geteuid() == 0)
	must(t, err)
	return v.Digest, paths
}

// A crash after any number of a pass's changes, even between keeping and
// changing, rolls back to the volume as it was; so does a rollback that is
// itself interrupted at any step and run again. A committed pass stays.
func TestRollbackAfterACrashAnywhere(t *testing.T) {
	owners := os.Geteuid() == 0
	every := make([]int, 40) // a full pass has fewer records: interrupted after each step
	for i := range every {
		every[i] = i
	}
	for crash := 0; crash <= len(pass); crash++ {
		interrupts := []int{-1, 0, 3}
		if crash == len(pass) {
			interrupts = append([]int{-1}, every...)
		}
		for _, interrupt := range interrupts {
			name := fmt.Sprintf("after %d changes, rollback interrupted at step %d", crash, interrupt)
			t.Run(name, func(t *testing.T) {
				dir, r := volume(t)
				l, err := Open(r, dir, owners)
				must(t, err)
				want, wantPaths := digest(t, dir) // the log's directory made: the committed state
				must(t, l.Begin())
				for _, c := range pass[:crash] {
					if err := c.do(l, r); err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
				}
				if crash < len(pass) { // kept, not yet changed: Sync made it durable
					must(t, l.Sync())
				}
				l.f.Close() // the crash: nothing more is written
				l2, err := Open(r, dir, owners)
				must(t, err)
				if !l2.Pending() {
					t.Fatal("no pending pass after a crash")
				}
				if interrupt >= 0 {
					steps := 0
					rollbackHook = func(int) bool { steps++; return steps <= interrupt }
					interrupted := l2.Rollback() != nil
					rollbackHook = nil
					if l2, err = Open(r, dir, owners); err != nil || l2.Pending() != interrupted {
						t.Fatalf("after a rollback interrupted (%v): pending %v, %v", interrupted, l2 != nil && l2.Pending(), err)
					}
				}
				if l2.Pending() {
					must(t, l2.Rollback())
				}
				if got, paths := digest(t, dir); got != want {
					t.Fatalf("after rollback the volume differs\n got %q\nwant %q", paths, wantPaths)
				}
				if l2.Pending() {
					t.Fatal("still pending after the rollback")
				}
			})
		}
	}
	t.Run("committed", func(t *testing.T) {
		dir, r := volume(t)
		l, err := Open(r, dir, owners)
		must(t, err)
		want, _ := digest(t, dir)
		must(t, l.Begin())
		for _, c := range pass {
			must(t, c.do(l, r))
		}
		after, _ := digest(t, dir)
		must(t, r.Syncfs())
		must(t, l.Commit())
		l2, err := Open(r, dir, owners)
		must(t, err)
		if l2.Pending() {
			t.Fatal("pending after a commit")
		}
		if got, _ := digest(t, dir); got != after || got == want {
			t.Fatalf("committed pass: digest %x, want %x (and not the old %x)", got, after, want)
		}
		names, err := os.ReadDir(filepath.Join(dir, Dir))
		must(t, err)
		if len(names) != 0 {
			t.Fatalf("the log kept %d entries after the commit", len(names))
		}
	})
}

// A record torn by the crash ends the log; its change never ran.
func TestTornRecordEndsTheLog(t *testing.T) {
	dir, r := volume(t)
	l, err := Open(r, dir, false)
	must(t, err)
	want, _ := digest(t, dir)
	must(t, l.Begin())
	must(t, pass[0].do(l, r))
	must(t, l.w.Flush())
	// Half of a further record's header and body.
	l.f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, byte(opStash), 9})
	l.f.Close()
	l2, err := Open(r, dir, false)
	must(t, err)
	must(t, l2.Rollback())
	if got, _ := digest(t, dir); got != want {
		t.Fatal("rollback with a torn last record did not restore the volume")
	}
}
