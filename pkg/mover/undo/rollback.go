package undo

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

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
