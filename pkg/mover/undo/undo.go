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
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
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

// Rollback undoes an interrupted pass, last change first, and leaves the
// volume as the last committed pass left it. A step that runs again after
// a crash finds its work done (a kept path restored, a made path already
// moved out, bytes and metadata set again), except a rename: a path can be
// renamed away and back within a pass, so no state tells whether undoing
// one ran. Before each such step the steps done so far are synced and the
// place is written down (progress), and a rollback run again resumes there.
func (l *Log) Rollback() error {
	if l.f != nil {
		l.w.Flush()
		l.f.Close()
		l.f = nil
	}
	l.moves = nil
	rs, err := l.read()
	if err != nil {
		return err
	}
	start := len(rs) - 1
	if k, ok := l.progress(); ok {
		start = min(start, k)
	}
	// stashed[k]: for a path made by record k, the record that kept what
	// was there before (-1: nothing was).
	stashed := make([]int, len(rs))
	last := map[string]int{}
	for k := range rs {
		stashed[k] = -1
		switch rs[k].op {
		case opStash:
			last[rs[k].path] = k
		case opCreated:
			if j, ok := last[rs[k].path]; ok {
				stashed[k] = j
			}
		}
	}
	for k := start; k >= 0; k-- {
		if rollbackHook != nil && !rollbackHook(k) {
			return errors.New("undo: rollback interrupted (test)")
		}
		if rs[k].op == opRenamed {
			if err := l.setProgress(k); err != nil {
				return err
			}
		}
		if err := l.undo(k, &rs[k], stashed[k]); err != nil {
			return fmt.Errorf("undo %s: %w", rs[k].path, err)
		}
	}
	// The pass's point, if it was written, goes before the log: with the
	// log gone, a written point would be taken as committed.
	if err := l.root.Remove(nextName); err != nil {
		return err
	}
	if err := l.root.Syncfs(); err != nil {
		return err
	}
	if err := l.root.Remove(logName); err != nil {
		return err
	}
	return l.clean()
}

const progressName = Dir + "/progress"

// setProgress makes the steps after k durable, then records that a
// rollback resumes at k.
func (l *Log) setProgress(k int) error {
	if err := l.root.Syncfs(); err != nil {
		return err
	}
	if err := write(l.root, progressName, strconv.Itoa(k)); err != nil {
		return err
	}
	return l.root.Syncfs()
}

func (l *Log) progress() (int, bool) {
	b, err := os.ReadFile(tree.Join(l.dir, progressName))
	if err != nil {
		return 0, false
	}
	k, err := strconv.Atoi(string(b))
	return k, err == nil
}

func write(r *safefs.Root, p, data string) error {
	f, err := r.Create(p)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	return errors.Join(err, f.Close())
}

// rollbackHook, when set (tests), is asked before each rollback step and
// stops the rollback when it answers false: a crash mid-rollback.
var rollbackHook func(step int) bool

func (l *Log) undo(k int, r *record, stashed int) error {
	kept := l.name(k)
	_, keptErr := l.root.Lstat(kept)
	switch r.op {
	case opCreated: // moved out, not removed: its name tells the step ran
		if keptErr == nil {
			return nil
		}
		if _, err := l.root.Lstat(r.path); err != nil {
			return nil
		}
		// What was there before is kept first: if it is not in the log,
		// the path still holds it (the crash came before it was moved,
		// or its own step already brought it back).
		if stashed >= 0 {
			if _, err := l.root.Lstat(l.name(stashed)); err != nil {
				return nil
			}
		}
		return l.root.Rename(r.path, kept)
	case opStash:
		if keptErr != nil {
			return nil // restored already
		}
		return l.root.Rename(kept, r.path)
	case opRenamed:
		if _, err := l.root.Lstat(r.from); err == nil {
			return nil // renamed back already
		}
		if _, err := l.root.Lstat(r.path); err != nil {
			return nil
		}
		return l.root.Rename(r.path, r.from)
	case opSize:
		f, err := l.root.OpenRW(r.path)
		if err != nil {
			return nil // gone: an earlier step restores another
		}
		defer f.Close()
		return f.Truncate(r.size)
	case opRange:
		old, err := os.ReadFile(tree.Join(l.dir, kept))
		if err != nil {
			return err
		}
		f, err := l.root.OpenRW(r.path)
		if err != nil {
			return nil
		}
		defer f.Close()
		_, err = f.WriteAt(old, r.offset)
		return err
	case opMeta:
		e := &r.entry
		return l.root.SetMeta(r.path, safefs.Meta{Mode: e.Mode, UID: e.UID, GID: e.GID, Mtime: e.Mtime,
			Symlink: e.Kind == tree.KindSymlink, Owners: l.owners, Xattrs: e.Xattrs})
	}
	return fmt.Errorf("unknown record %d", r.op)
}

// name is where record k keeps what it saved.
func (l *Log) name(k int) string { return Dir + "/" + strconv.Itoa(k) }

// clean removes everything in Dir but the log and the point.
func (l *Log) clean() error {
	pfd, err := l.root.OpenDir(Dir)
	if err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(pfd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), Dir)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if n != path.Base(logName) && n != path.Base(pointName) {
			if err := l.root.Remove(Dir + "/" + n); err != nil {
				return err
			}
		}
	}
	return nil
}

// add appends record r (index l.n) to the log: length, CRC-32C, body, so
// that a record torn by a crash ends the log where it starts.
func (l *Log) add(r record) error {
	if l.w == nil {
		return errors.New("undo: no pass in progress")
	}
	body := encode(&r)
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(body, castagnoli))
	if _, err := l.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := l.w.Write(body); err != nil {
		return err
	}
	l.n++
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// read returns the log's whole records; a torn or corrupt tail (its change
// never ran: a record is durable before its change) ends it.
func (l *Log) read() ([]record, error) {
	f, err := l.root.OpenRead(logName)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var rs []record
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return rs, nil
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n > 1<<24 {
			return rs, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil || crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return rs, nil
		}
		r, err := decode(body)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
}

// Records are coded as the wire's messages are: an entry as wire.PutEntry
// writes it, lengths bounded on the way back.
func encode(r *record) []byte {
	e := &wire.Enc{}
	e.Byte(byte(r.op))
	e.Str(r.path)
	switch r.op {
	case opSize:
		e.I(r.size)
	case opRange:
		e.I(r.offset)
	case opRenamed:
		e.Str(r.from)
	case opMeta:
		wire.PutEntry(e, &r.entry)
	}
	return e.B
}

func decode(b []byte) (record, error) {
	d := &wire.Dec{B: b}
	r := record{op: op(d.Byte()), path: d.Str()}
	switch r.op {
	case opSize:
		r.size = d.I()
	case opRange:
		r.offset = d.I()
	case opRenamed:
		r.from = d.Str()
	case opMeta:
		r.entry = wire.GetEntry(d)
	case opStash, opCreated:
	default:
		return record{}, fmt.Errorf("undo: unknown record %d", r.op)
	}
	if err := d.Done(); err != nil {
		return record{}, err
	}
	for _, p := range []string{r.path, r.from} {
		if err := safefs.CheckPath(p); err != nil && p != "." && p != "" {
			return record{}, err
		}
	}
	return r, nil
}
