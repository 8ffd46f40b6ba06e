// Package undo keeps, while a pass is applied to a standby volume, what the
// pass destroys, so that after a crash the volume rolls back to the last
// committed pass: a point in time a failover can start from (docs/dr.md).
//
// A redo journal would not do: a pass is a sequence of path operations that
// are not idempotent together on replay. Here every removal is a rename into
// the log's directory under a name made from the record's index, so each
// rollback step can tell whether it already ran, and a rollback interrupted
// by another crash is simply run again.
package undo

import (
	"bufio"
	"errors"
	"hash/crc32"
	"io"
	"os"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Dir is the log's directory at the volume's root; scans leave it out.
const Dir = tree.Reserved

const logName = Dir + "/log"

type op byte

const (
	opMeta    op = iota + 1 // path's mode, owner, mtime, attributes as they were
	opStash                 // path moved into Dir (removed or replaced)
	opCreated               // path made by the pass: moved out on rollback
	opSize                  // a file's size as it was
	opRange                 // a file's bytes at an offset as they were, kept in Dir
	opRenamed               // path renamed from another: renamed back
)

type record struct {
	op     op
	path   string
	entry  tree.Entry // opMeta
	size   int64      // opSize
	offset int64      // opRange
	from   string     // opRenamed
}

// Log is the undo log of a volume. Callers keep (Meta, Created, Replace,
// Overwrite), then Sync, then change the volume: a record must be durable
// before the change it covers.
type Log struct {
	root    *safefs.Root
	dir     string // the volume's path, for lookups
	owners  bool   // restore owners (the receiver runs as root)
	f       *os.File
	w       *bufio.Writer
	n       int             // records written this pass
	created map[string]int  // paths made by the pass: their record
	kept    map[string]bool // paths whose metadata is recorded
	sized   map[string]bool // files whose size is recorded
	moves   [][2]string     // Replace's moves, made by Sync once their records are durable
}

// Open prepares the log of the volume at dir (root confines every change to
// it). Pending tells whether a pass was interrupted: Rollback it before
// anything else touches the volume.
func Open(root *safefs.Root, dir string, owners bool) (*Log, error) {
	if err := makeDir(root, dir); err != nil {
		return nil, err
	}
	l := &Log{root: root, dir: dir, owners: owners}
	if !l.Pending() {
		if err := l.promoteNext(); err != nil { // a crash after a commit
			return nil, err
		}
		if err := l.clean(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// makeDir makes Dir, leaving the root's metadata as it was: the root is
// part of the volume the points are taken of, Dir is not.
func makeDir(root *safefs.Root, dir string) error {
	if _, err := root.Lstat(Dir); err == nil {
		return root.Mkdir(Dir) // a directory already, or replaced by one
	}
	return keepingRoot(root, dir, func() error { return root.Mkdir(Dir) })
}

// Remove deletes Dir and everything in it, the root's metadata left as it
// was: the volume is handed to the app (promotion) and holds no point now.
func Remove(root *safefs.Root, dir string) error {
	return keepingRoot(root, dir, func() error { return root.Remove(Dir) })
}

// keepingRoot runs change, which adds or removes Dir, and sets the root's
// mtime and attributes back to what they were.
func keepingRoot(root *safefs.Root, dir string, change func() error) error {
	e, _, err := tree.Lookup(dir, ".")
	if err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	return root.SetMeta(".", safefs.Meta{Mode: e.Mode, UID: e.UID, GID: e.GID, Mtime: e.Mtime, Xattrs: e.Xattrs})
}

// Pending reports a pass begun and neither committed nor rolled back.
func (l *Log) Pending() bool {
	_, err := l.root.Lstat(logName)
	return err == nil
}

// Begin starts a pass.
func (l *Log) Begin() error {
	if l.f != nil || l.Pending() {
		return errors.New("undo: a pass is already in progress")
	}
	f, err := l.root.Create(logName)
	if err != nil {
		return err
	}
	l.f, l.w, l.n = f, bufio.NewWriter(f), 0
	l.created, l.kept, l.sized = map[string]int{}, map[string]bool{}, map[string]bool{}
	return nil
}

// Meta keeps p's metadata as it is before the pass first changes it (a
// directory's mtime moves with every entry added or removed in it).
func (l *Log) Meta(p string) error {
	if _, made := l.created[p]; made || l.kept[p] {
		return nil
	}
	l.kept[p] = true
	e, ok, err := tree.Lookup(l.dir, p)
	if err != nil || !ok {
		return err
	}
	return l.add(record{op: opMeta, path: p, entry: e})
}

// Created records that the pass makes p (what was there is kept by Replace
// first).
func (l *Log) Created(p string) error {
	if err := l.Meta(tree.Parent(p)); err != nil {
		return err
	}
	l.created[p] = l.n
	return l.add(record{op: opCreated, path: p})
}

// Renamed records that the pass is about to rename from to to (what was at
// to is kept by Replace first).
func (l *Log) Renamed(from, to string) error {
	for _, p := range []string{from, tree.Parent(from), tree.Parent(to)} {
		if err := l.Meta(p); err != nil {
			return err
		}
	}
	return l.add(record{op: opRenamed, path: to, from: from})
}

// Replace moves p, which the pass is about to remove or replace, into the
// log (at Sync, once the record is durable: many removals share one sync). A path the pass made itself goes where its own record's rollback
// would have put it, so that step knows it is done.
func (l *Log) Replace(p string) error {
	if _, err := l.root.Lstat(p); err != nil {
		return nil // nothing there
	}
	if err := l.Meta(tree.Parent(p)); err != nil {
		return err
	}
	if k, made := l.created[p]; made {
		delete(l.created, p)
		l.moves = append(l.moves, [2]string{p, l.name(k)})
		return nil
	}
	if err := l.add(record{op: opStash, path: p}); err != nil {
		return err
	}
	l.moves = append(l.moves, [2]string{p, l.name(l.n - 1)})
	return nil
}

// Overwrite keeps the bytes of [off, off+n) of file p (open as f) and its
// size, before the pass writes there; nothing for a file the pass made.
func (l *Log) Overwrite(p string, f *os.File, off, n int64) error {
	if _, made := l.created[p]; made {
		return nil
	}
	if err := l.Meta(p); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !l.sized[p] {
		l.sized[p] = true
		if err := l.add(record{op: opSize, path: p, size: st.Size()}); err != nil {
			return err
		}
	}
	end := min(off+n, st.Size())
	if off >= end {
		return nil
	}
	old := make([]byte, end-off)
	if _, err := f.ReadAt(old, off); err != nil && err != io.EOF {
		return err
	}
	if err := l.add(record{op: opRange, path: p, offset: off}); err != nil {
		return err
	}
	k, err := l.root.Create(l.name(l.n - 1))
	if err != nil {
		return err
	}
	_, err = k.Write(old)
	return errors.Join(err, k.Close())
}

// Sync makes every record, and what it keeps, durable, then makes the moves
// Replace asked for: the changes the records cover may follow.
func (l *Log) Sync() error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	if err := l.root.Syncfs(); err != nil {
		return err
	}
	for _, m := range l.moves {
		if err := l.root.Rename(m[0], m[1]); err != nil {
			return err
		}
	}
	l.moves = l.moves[:0]
	return nil
}

// Forget drops the removals Replace asked for and Sync has not made, and
// the paths recorded as made: the changes they were for will not follow.
// Their records, if durable, roll back to the same state (nothing moved,
// nothing made); a later change of such a path keeps it anew.
func (l *Log) Forget(made []string) {
	l.moves = l.moves[:0]
	for _, p := range made {
		delete(l.created, p)
	}
}

// Commit ends the pass once its changes are durable (the caller synced the
// volume) and makes pt the volume's point: pt is written down first, then
// the log goes, in one step (the commit), then what it kept.
func (l *Log) Commit(pt Point) error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	l.f.Close()
	l.f = nil
	if err := l.writeNext(pt); err != nil {
		return err
	}
	if err := l.root.Remove(logName); err != nil {
		return err
	}
	if err := l.promoteNext(); err != nil {
		return err
	}
	return l.clean()
}

// Mark makes pt the volume's point outside a pass: the first pass, which
// has no earlier point to roll back to, is applied without a log.
func (l *Log) Mark(pt Point) error {
	if l.f != nil || l.Pending() {
		return errors.New("undo: a pass is in progress")
	}
	if err := l.writeNext(pt); err != nil {
		return err
	}
	return l.promoteNext()
}

const progressName = Dir + "/progress"

// rollbackHook, when set (tests), is asked before each rollback step and
// stops the rollback when it answers false: a crash mid-rollback.
var rollbackHook func(step int) bool

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
