package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// points makes each pass a standby receives a point in time (Options.Points,
// docs/dr.md): once the volume holds a committed pass, every later pass is
// applied under an undo log, so that a crash mid-pass rolls back to the last
// committed one, and a pass commits at its sync, with its digest.
type points struct {
	log     *undo.Log
	have    bool      // a pass is committed: the next is applied under the log
	logging bool      // the log holds the pass in progress
	at      time.Time // the committed point's time
	// crash, when set (tests), is asked before each record and each change
	// the log covers; an error ends the session as a crash would.
	crash func() error
	// committed, when set (tests), is called after each commit.
	committed func()
}

// openLog opens a volume's undo log and rolls back a pass left pending (a
// crash, a cut session): the volume then holds its last committed point.
func openLog(root *safefs.Root, dir string, owners bool) (l *undo.Log, rolledBack bool, err error) {
	if l, err = undo.Open(root, dir, owners); err != nil {
		return nil, false, fmt.Errorf("opening the undo log: %w", err)
	}
	if !l.Pending() {
		return l, false, nil
	}
	if err := l.Rollback(); err != nil {
		return nil, false, fmt.Errorf("rolling back the interrupted pass: %w", err)
	}
	return l, true, nil
}

// openPoints opens the volume's log and rolls back a pass a crash left.
func (r *Receiver) openPoints() error {
	l, rolledBack, err := openLog(r.root, r.opts.Dir, r.owners)
	if err != nil {
		return err
	}
	if rolledBack {
		r.logf("rolled back an interrupted pass to the last committed point")
	}
	pt, have, err := l.Point()
	if err != nil {
		return err
	}
	r.points = &points{log: l, have: have, at: pt.Time}
	if have {
		r.reportPoint(pt)
	}
	return nil
}

// keepStandbyPoint prepares a volume a standby left (a move reusing a
// former standby's PVCs) for a plain receiver: a pass the standby left
// half-applied is rolled back, so that until a sender arrives the volume
// still holds the standby's last point — a move whose source never comes
// (it was lost) leaves a volume `mover promote` can still start an app on.
// The log itself goes once a sender is accepted (dropPoints).
func (r *Receiver) keepStandbyPoint() error {
	if _, err := r.root.Lstat(undo.Dir); err != nil {
		return nil
	}
	_, rolledBack, err := openLog(r.root, r.opts.Dir, r.owners)
	if err != nil {
		return fmt.Errorf("the log a standby left: %w", err)
	}
	if rolledBack {
		r.logf("rolled back the pass a standby left interrupted: the volume holds its last point until a sender arrives")
	}
	r.standbyLeft = true
	return nil
}

// dropPoints removes the undo log a standby left once a plain receiver's
// first sender is accepted: the move brings the volume to the source's
// state whatever point it held, and the app must not find the log there.
func (r *Receiver) dropPoints() error {
	if !r.standbyLeft {
		return nil
	}
	if err := undo.Remove(r.root, r.opts.Dir); err != nil {
		return fmt.Errorf("removing the standby's undo log %s: %w", undo.Dir, err)
	}
	r.standbyLeft = false
	r.logf("removed %s, left by a standby: this volume is a plain destination now", undo.Dir)
	return nil
}

// keep records, before a change, what the change destroys (record) and
// makes that durable: the change may follow.
func (s *session) keep(record func(*undo.Log) error) error {
	if !s.r.points.logs() {
		return nil
	}
	if err := s.r.points.record(record); err != nil {
		return err
	}
	return s.r.points.sync()
}

// commits reports whether a pass ending now is committed: an exact one, the
// first (there is no point to keep), and another unless o asks for exact
// points and the point is younger than o.PerFileAfter (or that is unset).
func (p *points) commits(exact bool, o Options) bool {
	return exact || !p.have || !o.ExactOnly || (o.PerFileAfter > 0 && time.Since(p.at) >= o.PerFileAfter)
}

// logs reports whether changes are applied under the log now: once the
// volume holds a point.
func (p *points) logs() bool { return p != nil && p.have }

// record writes what record keeps to the log, not yet durable.
func (p *points) record(record func(*undo.Log) error) error {
	if err := p.hit(); err != nil {
		return err
	}
	if !p.logging {
		if err := p.log.Begin(); err != nil {
			return classify(err, "starting the undo log")
		}
		p.logging = true
	}
	if err := record(p.log); err != nil {
		return classify(err, "keeping the standby's point")
	}
	return nil
}

// sync makes the records durable: the changes they cover may follow.
func (p *points) sync() error {
	if err := p.hit(); err != nil {
		return err
	}
	if err := p.log.Sync(); err != nil {
		return classify(err, "keeping the standby's point")
	}
	return p.hit()
}

// Whole small files and the chunks of files updated in place are held in
// runs under the log, so that one sync makes the records of many durable:
// a run's files have distinct paths in directories that exist, its chunks
// distinct ranges, so no record depends on another's change. Any frame of
// another kind releases the run first.
const (
	heldFiles = 256
	heldBytes = 8 << 20
)

type heldRun struct {
	jobs   []fileJob
	writes []heldWrite
	bytes  int
}

type heldWrite struct {
	of   *openFile
	off  int64
	data []byte
}

// holds reports the frames a run holds: any other releases it first.
func holds(t wire.Type) bool { return t == wire.TFile || t == wire.TData }

// holdWrite keeps the bytes a chunk of a file updated in place overwrites
// and holds the chunk until its run is durable.
func (s *session) holdWrite(of *openFile, off int64, p []byte) error {
	if err := s.r.points.record(func(l *undo.Log) error { return l.Overwrite(of.e.Path, of.f, off, int64(len(p))) }); err != nil {
		return err
	}
	s.held.writes = append(s.held.writes, heldWrite{of, off, bytes.Clone(p)})
	s.held.bytes += len(p)
	return s.releaseIfFull()
}

func (s *session) releaseIfFull() error {
	if len(s.held.jobs)+len(s.held.writes) >= heldFiles || s.held.bytes >= heldBytes {
		return s.release()
	}
	return nil
}

// queueFile hands a checked whole file to the workers; under the log it
// records what the file replaces and holds it until its run is durable.
func (s *session) queueFile(m *wire.File, buf *[]byte) error {
	if !s.r.points.logs() {
		return s.pool.add(m, buf)
	}
	s.held.jobs = append(s.held.jobs, fileJob{m, buf})
	s.held.bytes += len(m.Data)
	err := s.r.points.record(func(l *undo.Log) error {
		if err := l.Replace(m.Entry.Path); err != nil {
			return err
		}
		return l.Created(m.Entry.Path)
	})
	if err == nil {
		err = s.releaseIfFull()
	}
	return err
}

// release makes the held run's records durable, writes its chunks and
// queues its files.
func (s *session) release() error {
	if len(s.held.jobs)+len(s.held.writes) == 0 {
		return nil
	}
	run := s.held
	s.held = heldRun{}
	err := s.r.points.sync()
	for _, w := range run.writes {
		if err == nil {
			err = s.write(w.of, w.off, w.data)
		}
	}
	for _, j := range run.jobs {
		if err == nil {
			err = s.pool.add(j.m, j.buf)
		} else {
			putFrame(j.buf)
		}
	}
	return err
}

// dropHeld returns the buffers of held files a failed session never applies.
func (s *session) dropHeld() {
	var paths []string
	for _, j := range s.held.jobs {
		paths = append(paths, j.m.Entry.Path)
		putFrame(j.buf)
	}
	s.held = heldRun{}
	// Their removals, not made yet, must not be made by a later session's
	// first sync: that session's index lists those paths as they are.
	if p := s.r.points; p != nil && p.logging {
		p.log.Forget(paths)
	}
}

// replaced keeps what is at path p, which the next change replaces, and
// records that the change makes p.
func (s *session) replaced(p string) error {
	return s.keep(func(l *undo.Log) error {
		if err := l.Replace(p); err != nil {
			return err
		}
		return l.Created(p)
	})
}

// reportPoint puts the committed point in the receiver's progress.
func (r *Receiver) reportPoint(pt undo.Point) {
	r.Tracker.Update(func(p *progress.Progress) {
		p.Point = &progress.Point{Time: pt.Time, Digest: fmt.Sprintf("%x", pt.Digest), Exact: pt.Exact}
	})
}

func (p *points) hit() error {
	if p.crash != nil {
		if err := p.crash(); errors.Is(err, errCut) {
			return err // the session ends, the receiver goes on
		} else if err != nil {
			return fmt.Errorf("%w: %v", ErrFatal, err)
		}
	}
	return nil
}

// errCut, from the crash hook (tests), ends the session only, as a dropped
// connection does.
var errCut = errors.New("session cut (test)")

// commit makes the volume, synced by the caller, the standby's point, with
// its digest: verified is the one the sender agreed to; otherwise it is
// computed here (the view makes that cheap). The log, if the pass had one,
// is removed in one step.
func (s *session) commit(verified *undo.Point, exact bool) error {
	p := s.r.points
	if p == nil {
		return nil
	}
	pt := undo.Point{Owners: s.owners}
	if verified != nil {
		pt = *verified
	} else {
		es, err := s.r.view.current(s.r.opts.Dir, s.r.known(false), true)
		if err != nil {
			return classify(err, "listing the committed pass")
		}
		v, err := tree.VerifyEntries(s.r.opts.Dir, es, s.r.cache, false, s.owners)
		if err != nil {
			return classify(err, "summing the committed pass")
		}
		pt.Digest, pt.Entries = v.Digest, uint64(v.Count())
	}
	pt.Time = s.passFrom
	if pt.Time.IsZero() {
		pt.Time = time.Now().UTC()
	}
	pt.Exact = exact
	if err := p.hit(); err != nil {
		return err
	}
	var err error
	if p.logging {
		err = p.log.Commit(pt)
	} else {
		err = p.log.Mark(pt)
	}
	if err != nil {
		return classify(err, "committing the standby's point")
	}
	p.have, p.logging, p.at = true, false, pt.Time
	s.r.reportPoint(pt)
	if p.committed != nil {
		p.committed()
	}
	return nil
}

// overwriting keeps the bytes of [off, off+n) of a file updated in place.
func (s *session) overwriting(of *openFile, off, n int64) error {
	if !of.inPlace {
		return nil
	}
	return s.keep(func(l *undo.Log) error { return l.Overwrite(of.e.Path, of.f, off, n) })
}

// tailPast is how many bytes f holds past size.
func tailPast(f *os.File, size int64) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return max(0, st.Size()-size)
}

// keepRename keeps what renaming from to to changes: what is at to, and
// the parents of to that the rename makes (they are the pass's own).
func (s *session) keepRename(from, to string) error {
	return s.keep(func(l *undo.Log) error {
		var made []string
		for d := tree.Parent(to); d != "."; d = tree.Parent(d) {
			if st, err := s.r.root.Lstat(d); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				break
			}
			made = append(made, d)
		}
		for i := len(made) - 1; i >= 0; i-- {
			if err := l.Replace(made[i]); err != nil {
				return err
			}
			if err := l.Created(made[i]); err != nil {
				return err
			}
		}
		if err := l.Replace(to); err != nil {
			return err
		}
		return l.Renamed(from, to)
	})
}

// Promote readies a standby volume for the app (failover, docs/dr.md): it
// rolls back a pass a crash left, checks the volume against its point's
// digest, every byte reread, and removes the undo log's directory. A
// volume without a point, or whose digest differs, is refused untouched
// but for the rollback.
func Promote(dir string) (undo.Point, error) {
	root, err := safefs.Open(dir)
	if err != nil {
		return undo.Point{}, err
	}
	defer root.Close()
	if _, err := root.Lstat(undo.Dir); err != nil {
		return undo.Point{}, fmt.Errorf("%s holds no standby point (no %s)", dir, undo.Dir)
	}
	l, _, err := openLog(root, dir, os.Geteuid() == 0)
	if err != nil {
		return undo.Point{}, err
	}
	pt, ok, err := l.Point()
	if err != nil {
		return undo.Point{}, err
	}
	if !ok {
		return undo.Point{}, fmt.Errorf("%s holds no committed point yet: its first pass did not complete", dir)
	}
	v, err := tree.VerifyTree(dir, pt.Owners)
	if err != nil {
		return pt, err
	}
	if v.Digest != pt.Digest {
		return pt, fmt.Errorf("%s differs from its point of %s (digest %x, the point's %x): refusing to promote it",
			dir, pt.Time.Format(time.RFC3339), v.Digest, pt.Digest)
	}
	return pt, undo.Remove(root, dir)
}
