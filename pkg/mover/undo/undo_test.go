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

// change is one operation of a pass as the receiver applies it: keep what
// it destroys, Sync (records durable, removals moved into the log), change.
type change struct {
	name  string
	keep  func(l *Log, r *safefs.Root) error
	apply func(r *safefs.Root) error
}

func (c change) do(l *Log, r *safefs.Root) error {
	if err := c.keep(l, r); err != nil {
		return err
	}
	if err := l.Sync(); err != nil {
		return err
	}
	return c.apply(r)
}

// overwrite writes data at off in the existing file p, in place.
func overwrite(name, p string, off int64, data []byte) change {
	return change{name,
		func(l *Log, r *safefs.Root) error {
			f, err := r.OpenRW(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return l.Overwrite(p, f, off, int64(len(data)))
		},
		func(r *safefs.Root) error {
			f, err := r.OpenRW(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(data, off)
			return err
		}}
}

// made keeps what is at p, records p as made by the pass, then makes it.
func made(name, p string, mk func(r *safefs.Root) error) change {
	return change{name,
		func(l *Log, r *safefs.Root) error {
			if err := l.Replace(p); err != nil {
				return err
			}
			return l.Created(p)
		}, mk}
}

func create(name, p, data string) change {
	return made(name, p, func(r *safefs.Root) error { return write(r, p, data) })
}

// remove: keeping p is its removal (Sync moves it into the log).
func remove(name, p string) change {
	return change{name, func(l *Log, r *safefs.Root) error { return l.Replace(p) },
		func(*safefs.Root) error { return nil }}
}

func rename(name, from, to string) change {
	return change{name,
		func(l *Log, r *safefs.Root) error {
			if err := l.Replace(to); err != nil {
				return err
			}
			return l.Renamed(from, to)
		},
		func(r *safefs.Root) error { return r.Rename(from, to) }}
}

// pass is every kind of change a receiver makes, in an order where later
// changes depend on earlier ones (the same path removed, made, renamed).
var pass = []change{
	overwrite("overwrite the middle of a file", "big", 70000, bytes.Repeat([]byte("N"), 9000)),
	overwrite("append", "a/small", 5, []byte("appended")),
	{"truncate",
		func(l *Log, r *safefs.Root) error {
			f, err := r.OpenRW("a/trunc")
			if err != nil {
				return err
			}
			defer f.Close()
			return l.Overwrite("a/trunc", f, 3, 1<<20)
		},
		func(r *safefs.Root) error {
			f, err := r.OpenRW("a/trunc")
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(3)
		}},
	create("new file", "a/new", "new"),
	made("new tree", "n", func(r *safefs.Root) error { return r.Mkdir("n") }),
	create("a file in the new tree", "n/f", "in a new dir"),
	remove("remove a file", "b/gone"),
	remove("remove a tree", "c"),
	rename("rename over a file", "a/small", "b/target"),
	rename("rename a directory", "d", "a/d2"),
	create("make again where a file was renamed from", "a/small", "again"),
	remove("remove what the pass made", "a/small"),
	made("file becomes a directory", "b/file", func(r *safefs.Root) error { return r.Mkdir("b/file") }),
	{"metadata",
		func(l *Log, r *safefs.Root) error {
			for _, p := range []string{"b", "big", "."} {
				if err := l.Meta(p); err != nil {
					return err
				}
			}
			return nil
		},
		func(r *safefs.Root) error {
			if err := r.SetMeta("b", safefs.Meta{Mode: 0o700, Mtime: 12345}); err != nil {
				return err
			}
			if err := r.SetMeta(".", safefs.Meta{Mode: 0o711, Mtime: 54321}); err != nil {
				return err
			}
			return r.SetMeta("big", safefs.Meta{Mode: 0o600, Mtime: 999, Xattrs: []tree.Xattr{{Name: "user.k", Value: []byte("v2")}}})
		}},
	rename("rename back over a renamed path", "a/d2", "d"),
	create("replace a file the pass made", "a/new", "newer"),
	made("symlink", "e", func(r *safefs.Root) error { return r.Symlink("big", "e") }),
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

// digest is the tree's verification digest; the scan leaves the log's
// directory out by itself.
func digest(t *testing.T, dir string) (tree.Hash, []string) {
	t.Helper()
	kept, err := tree.Scan(dir, ".", nil)
	must(t, err)
	var paths []string
	for _, e := range kept {
		if e.Path == Dir || strings.HasPrefix(e.Path, Dir+"/") {
			t.Fatalf("the scan lists %s", e.Path)
		}
		paths = append(paths, fmt.Sprintf("%s %o %d", e.Path, e.Mode, e.Mtime))
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
		type cut struct {
			interrupt int  // rollback interrupted after this many steps (-1: not)
			moved     bool // the next change's records durable, and its moves into the log made
		}
		cuts := []cut{{-1, true}, {0, true}, {3, true}, {-1, false}, {3, false}}
		if crash == len(pass) {
			cuts = []cut{{-1, true}}
			for _, i := range every {
				cuts = append(cuts, cut{i, true})
			}
		}
		for _, c := range cuts {
			interrupt := c.interrupt
			name := fmt.Sprintf("after %d changes (moved %v), rollback interrupted at step %d", crash, c.moved, interrupt)
			t.Run(name, func(t *testing.T) {
				dir, r := volume(t)
				before, _ := digest(t, dir)
				l, err := Open(r, dir, owners)
				must(t, err)
				want, wantPaths := digest(t, dir) // the log's directory made: the committed state
				if want != before {
					t.Fatal("making the log's directory changed the volume's digest (the root's mtime)")
				}
				must(t, l.Mark(Point{Digest: want}))
				must(t, l.Begin())
				for _, c := range pass[:crash] {
					if err := c.do(l, r); err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
				}
				switch {
				case crash < len(pass) && !c.moved: // the crash inside Sync: records durable, nothing moved yet
					must(t, pass[crash].keep(l, r))
					must(t, l.w.Flush())
					must(t, r.Syncfs())
				case crash < len(pass): // kept, not yet changed: Sync made it durable
					must(t, pass[crash].keep(l, r))
					must(t, l.Sync())
				default: // the crash inside Commit: its point written, the log not yet removed
					must(t, l.w.Flush())
					must(t, l.writeNext(Point{Digest: tree.Hash{1}}))
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
				if pt, ok, err := l2.Point(); err != nil || !ok || pt.Digest != want {
					t.Fatalf("the point after the rollback: %x %v %v, want the last committed %x", pt.Digest, ok, err, want)
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
		must(t, l.Commit(Point{Digest: after}))
		l2, err := Open(r, dir, owners)
		must(t, err)
		if l2.Pending() {
			t.Fatal("pending after a commit")
		}
		if got, _ := digest(t, dir); got != after || got == want {
			t.Fatalf("committed pass: digest %x, want %x (and not the old %x)", got, after, want)
		}
		if pt, ok, err := l2.Point(); err != nil || !ok || pt.Digest != after {
			t.Fatalf("the committed pass's point: %x %v %v", pt.Digest, ok, err)
		}
		names, err := os.ReadDir(filepath.Join(dir, Dir))
		must(t, err)
		if len(names) != 1 || names[0].Name() != "point" {
			t.Fatalf("the log kept %d entries after the commit, want only the point", len(names))
		}
	})
}

// A crash inside Commit after the log is gone: the pass is committed, and
// Open makes its point the volume's point.
func TestCommitFinishedByOpen(t *testing.T) {
	dir, r := volume(t)
	l, err := Open(r, dir, false)
	must(t, err)
	must(t, l.Mark(Point{Digest: tree.Hash{1}}))
	must(t, l.Begin())
	must(t, pass[0].do(l, r))
	must(t, l.w.Flush())
	l.f.Close()
	must(t, l.writeNext(Point{Digest: tree.Hash{2}}))
	must(t, r.Remove(logName)) // the commit step; the crash before the point's rename
	l2, err := Open(r, dir, false)
	must(t, err)
	if pt, ok, err := l2.Point(); err != nil || !ok || pt.Digest != (tree.Hash{2}) || l2.Pending() {
		t.Fatalf("point %x %v %v, pending %v: want the committed pass's", pt.Digest, ok, err, l2.Pending())
	}
}

// Remove hands the volume back without the log's directory, the root's
// metadata as the point had it.
func TestRemoveLeavesTheVolume(t *testing.T) {
	dir, r := volume(t)
	want, _ := digest(t, dir)
	l, err := Open(r, dir, false)
	must(t, err)
	must(t, l.Mark(Point{Digest: want}))
	must(t, Remove(r, dir))
	if _, err := os.Lstat(filepath.Join(dir, Dir)); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", Dir, err)
	}
	if got, _ := digest(t, dir); got != want {
		t.Fatal("removing the log's directory changed the volume")
	}
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

// Changes recorded but dropped before their sync (a session cut while they
// were held) leave nothing behind: a later change of the same path in the
// same pass is kept anew, and a rollback restores what was there.
func TestForgottenChangesAreKeptAnew(t *testing.T) {
	dir, r := volume(t)
	l, err := Open(r, dir, os.Geteuid() == 0)
	must(t, err)
	want, _ := digest(t, dir)
	must(t, l.Begin())
	c := create("replace a file", "b/target", "dropped")
	must(t, c.keep(l, r)) // held, never synced, never made
	l.Forget([]string{"b/target"})
	must(t, create("replace it again", "b/target", "made").do(l, r))
	if b, err := os.ReadFile(filepath.Join(dir, "b/target")); err != nil || string(b) != "made" {
		t.Fatalf("b/target: %q, %v", b, err)
	}
	l.f.Close() // the crash
	l2, err := Open(r, dir, os.Geteuid() == 0)
	must(t, err)
	must(t, l2.Rollback())
	if got, paths := digest(t, dir); got != want {
		t.Fatalf("after rollback the volume differs: %q", paths)
	}
}
