package sender

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// plan is one pass's view: the source entries in scope and the receiver
// paths in scope (candidates for rename or deletion).
type plan struct {
	cur     []tree.Entry
	curMap  map[string]*tree.Entry // by path, made on first use (at)
	roots   []string               // incremental scope roots; nil = whole tree
	touched map[string]bool
	whole   map[string]bool // files replaced by a fresh inode this pass
}

// at returns the scanned entry at p, or nil.
func (pl *plan) at(p string) *tree.Entry {
	if pl.curMap == nil {
		pl.curMap = make(map[string]*tree.Entry, len(pl.cur))
		for i := range pl.cur {
			pl.curMap[pl.cur[i].Path] = &pl.cur[i]
		}
	}
	return pl.curMap[p]
}

func under(p, root string) bool {
	return root == "." || p == root || strings.HasPrefix(p, root+"/")
}

// sentUnder lists receiver paths at or below root.
func (s *Sender) sentUnder(root string) []string {
	var out []string
	if e := s.sent[root]; e != nil && e.Kind != tree.KindDir {
		return []string{root}
	}
	for p := range s.sent {
		if under(p, root) {
			out = append(out, p)
		}
	}
	return out
}

// pass makes the receiver match the source within scope (dirty == nil: the
// whole tree). unstable reports files that changed while being read.
func (s *Sender) pass(ctx context.Context, k *conn, dirty []string, final bool) (unstable bool, err error) {
	start := time.Now()
	pl, err := s.scan(dirty)
	if err != nil {
		return false, err
	}
	if pl == nil { // hard links involved: only a full pass is exact
		pl, err = s.scan(nil)
		if err != nil {
			return false, err
		}
	}
	var scoped []string
	if pl.roots == nil {
		s.scanSeconds = time.Since(start).Seconds()
		s.checkTracking(pl.cur)
		s.lastScan = pl.cur
		s.lastScanAt = start
		s.since.reset(s.w != nil && s.seesAll)
		if final {
			s.t.Update(func(p *progress.Progress) { p.FinalPassFull = true })
		}
		if !s.samePaths(pl) {
			for p := range s.sent {
				scoped = append(scoped, p)
			}
		}
		var total int64
		for i := range pl.cur {
			total += pl.cur[i].Size
		}
		s.t.Update(func(p *progress.Progress) { p.BytesTotal = total; p.FilesTotal = int64(len(pl.cur)) })
	} else {
		seen := map[string]bool{}
		for _, r := range pl.roots {
			for _, p := range s.sentUnder(r) {
				if !seen[p] {
					seen[p] = true
					scoped = append(scoped, p)
				}
			}
		}
	}
	sort.Strings(scoped)
	if err := s.renames(k, pl, scoped); err != nil {
		return false, err
	}
	if err := s.deletes(k, pl, scoped); err != nil {
		return false, err
	}
	jobs, links, err := s.entries(k, pl)
	if err != nil {
		return false, err
	}
	var lag, reread int64
	lags := make(map[string]int64, len(jobs))
	for _, e := range jobs {
		a, b := s.lagOf(e)
		lags[e.Path] = a
		lag, reread = lag+a, reread+b
	}
	s.t.Update(func(p *progress.Progress) {
		p.LagBytes = lag
		if !s.passOldest.IsZero() {
			p.LagSeconds = time.Since(s.passOldest).Seconds()
		}
		p.EstimatedFinalSeconds = s.estimate(reread)
	})
	unstable, err = s.transfer(ctx, k, pl, jobs, lags)
	if err != nil {
		return false, err
	}
	for _, e := range links {
		if o := s.sent[e.Path]; o != nil && o.Kind == tree.KindFile && o.LinkTo == e.LinkTo && !pl.whole[e.LinkTo] {
			continue
		}
		if err := k.send(wire.TLink, &wire.EntryMsg{E: *e}, false); err != nil {
			return false, err
		}
		s.record(e, e.Ino)
		pl.touched[tree.Parent(e.Path)] = true
	}
	// Directory metadata last, deepest first, since every change inside a
	// directory moved its mtime on the receiver.
	for i := len(pl.cur) - 1; i >= 0; i-- {
		e := &pl.cur[i]
		if e.Kind != tree.KindDir {
			continue
		}
		if o := s.sent[e.Path]; o == nil || !o.SameMeta(e, s.owners) || pl.touched[e.Path] {
			if err := k.send(wire.TMeta, &wire.EntryMsg{E: *e}, false); err != nil {
				return false, err
			}
			s.record(e, e.Ino)
		}
	}
	exact := !unstable && s.unchanged()
	if err := s.barrier(k, final, exact); err != nil {
		return false, err
	}
	s.t.Update(func(p *progress.Progress) {
		p.Passes++
		if exact {
			p.ExactPasses++
		}
		p.LastPassSecond = time.Since(start).Seconds()
		p.LagBytes = 0
	})
	s.passOldest = time.Time{}
	return unstable, nil
}

var syncSeq uint64

func errReceiver(msg string) error { return fmt.Errorf("%w: %s", ErrReceiver, msg) }

func (s *Sender) barrier(k *conn, final, exact bool) error {
	syncSeq++
	if err := k.send(wire.TSync, &wire.Sync{Seq: syncSeq, Final: final, Exact: exact}, true); err != nil {
		return err
	}
	ack, err := wait(k, k.acks)
	if err != nil {
		return err
	}
	if ack.Err != "" {
		return errReceiver(ack.Err)
	}
	n := s.wireBase + k.sent()
	s.t.Update(func(p *progress.Progress) { p.BytesSent = n })
	return nil
}

func (s *Sender) record(e *tree.Entry, ino uint64) {
	c := *e
	s.sent[e.Path] = &c
	s.srcIno[e.Path] = ino
}

func (s *Sender) forget(p string) {
	for _, q := range s.sentUnder(p) {
		delete(s.sent, q)
		delete(s.blocks, q)
		delete(s.srcIno, q)
	}
}

// samePaths reports that the receiver holds exactly the paths of a full
// scan, each from the inode it was sent from: nothing to rename or delete,
// and no need to list and sort every path the receiver holds (the usual
// final pass: one lookup per entry instead).
func (s *Sender) samePaths(pl *plan) bool {
	if len(pl.cur) != len(s.sent) {
		return false
	}
	for i := range pl.cur {
		e := &pl.cur[i]
		if s.sent[e.Path] == nil {
			return false
		}
		if ino := s.srcIno[e.Path]; ino != 0 && ino != e.Ino && e.Path != "." {
			return false
		}
	}
	return true
}

// renames moves receiver entries whose source inode reappeared under a new
// path, so renamed files and directories are not copied again.
func (s *Sender) renames(k *conn, pl *plan, scoped []string) error {
	byIno := map[uint64]string{}
	for _, p := range scoped {
		ino := s.srcIno[p]
		if c := pl.at(p); ino != 0 && (c == nil || c.Ino != ino) && p != "." {
			byIno[ino] = p
		}
	}
	if len(byIno) == 0 {
		return nil
	}
	for i := range pl.cur { // sorted, so parents move before children
		e := &pl.cur[i]
		if e.Path == "." || (s.sent[e.Path] != nil && s.srcIno[e.Path] == e.Ino) {
			continue
		}
		o, ok := byIno[e.Ino]
		if !ok || s.sent[o] == nil || s.srcIno[o] != e.Ino || s.sent[o].Kind != e.Kind || under(e.Path, o) {
			continue
		}
		if err := k.send(wire.TRename, &wire.Rename{From: o, To: e.Path}, false); err != nil {
			return err
		}
		delete(byIno, e.Ino)
		s.forget(e.Path)
		for _, q := range s.sentUnder(o) {
			nq := e.Path + strings.TrimPrefix(q, o)
			s.sent[nq], s.blocks[nq], s.srcIno[nq] = s.sent[q], s.blocks[q], s.srcIno[q]
			s.sent[nq].Path = nq
			delete(s.sent, q)
			delete(s.blocks, q)
			delete(s.srcIno, q)
			if ino := s.srcIno[nq]; byIno[ino] == q {
				byIno[ino] = nq
			}
		}
		pl.touched[tree.Parent(o)] = true
		pl.touched[tree.Parent(e.Path)] = true
	}
	return nil
}

func (s *Sender) deletes(k *conn, pl *plan, scoped []string) error {
	var gone string
	for _, p := range scoped {
		if p == "." || pl.at(p) != nil || s.sent[p] == nil {
			continue
		}
		if gone != "" && under(p, gone) {
			continue
		}
		if err := k.send(wire.TDelete, &wire.Text{S: p}, false); err != nil {
			return err
		}
		gone = p
		s.forget(p)
		pl.touched[tree.Parent(p)] = true
	}
	return nil
}

// entries sends directory, symlink and metadata changes and returns the
// files whose content must move, and the hard links to make afterwards.
func (s *Sender) entries(k *conn, pl *plan) (jobs, links []*tree.Entry, err error) {
	for i := range pl.cur {
		e := &pl.cur[i]
		if err := wire.CheckXattrs(e); err != nil {
			return nil, nil, err
		}
		o := s.sent[e.Path]
		switch {
		case e.Kind.IsNode():
			if err := s.create(k, pl, e, wire.TNode, o == nil || o.Kind != e.Kind || o.Rdev != e.Rdev); err != nil {
				return nil, nil, err
			}
		case e.Kind == tree.KindDir:
			if o == nil || o.Kind != tree.KindDir {
				if err := k.send(wire.TMkdir, &wire.EntryMsg{E: *e}, false); err != nil {
					return nil, nil, err
				}
				if o != nil {
					s.forget(e.Path)
				}
				c := *e
				c.Mtime = -1 // metadata follows at the end of the pass
				s.sent[e.Path] = &c
				s.srcIno[e.Path] = e.Ino
				pl.touched[tree.Parent(e.Path)] = true
			}
		case e.Kind == tree.KindSymlink:
			if err := s.create(k, pl, e, wire.TSymlink, o == nil || o.Kind != tree.KindSymlink || o.Target != e.Target); err != nil {
				return nil, nil, err
			}
		case e.LinkTo != "":
			links = append(links, e)
		case o == nil || o.Kind != tree.KindFile || o.LinkTo != "" || !o.SameContentKey(e):
			jobs = append(jobs, e)
		case s.forceSince != 0 && e.Ctime >= s.forceSince:
			// Changed while the app was stopping: reread, whatever the key says.
			jobs = append(jobs, e)
		case !o.SameMeta(e, s.owners):
			if err := s.sendMeta(k, e); err != nil {
				return nil, nil, err
			}
		}
	}
	return jobs, links, nil
}

// create sends e whole with frame type t when it changed (new, other kind,
// target or device), else only its metadata if that differs.
func (s *Sender) create(k *conn, pl *plan, e *tree.Entry, t wire.Type, changed bool) error {
	if changed {
		if err := k.send(t, &wire.EntryMsg{E: *e}, false); err != nil {
			return err
		}
		s.record(e, e.Ino)
		pl.touched[tree.Parent(e.Path)] = true
		return nil
	}
	if !s.sent[e.Path].SameMeta(e, s.owners) {
		return s.sendMeta(k, e)
	}
	return nil
}

func (s *Sender) sendMeta(k *conn, e *tree.Entry) error {
	if err := k.send(wire.TMeta, &wire.EntryMsg{E: *e}, false); err != nil {
		return err
	}
	o := s.sent[e.Path]
	c := *e
	if o != nil {
		c.Size, c.Sparse = o.Size, o.Sparse
	}
	s.sent[e.Path] = &c
	return nil
}

// transfer copies file contents with parallel readers.
func (s *Sender) transfer(ctx context.Context, k *conn, pl *plan, jobs []*tree.Entry, lags map[string]int64) (bool, error) {
	// Big files first so they overlap with the stream of small ones.
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Size > jobs[j].Size && jobs[i].Size > wire.ChunkSize })
	type job struct {
		e      *tree.Entry
		old    *tree.Entry
		blocks []tree.Hash
	}
	ch := make(chan job)
	var mu sync.Mutex
	var firstErr error
	unstable := false
	var wg sync.WaitGroup
	for range s.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := newXfer(s, k)
			for j := range ch {
				e := j.e
				r, err := x.send(e, j.old, j.blocks)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					s.applyResult(pl, e, r)
					unstable = unstable || !r.stable
				}
				mu.Unlock()
				s.t.Update(func(p *progress.Progress) { p.LagBytes = max(p.LagBytes-lags[e.Path], 0) })
			}
		}()
	}
loop:
	for _, e := range jobs {
		mu.Lock() // workers update sent concurrently
		j := job{e, s.sent[e.Path], s.blocks[e.Path]}
		mu.Unlock()
		select {
		case ch <- j:
		case <-k.dead:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	close(ch)
	wg.Wait()
	if firstErr == nil {
		firstErr = k.Err()
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return unstable, firstErr
}

func (s *Sender) applyResult(pl *plan, e *tree.Entry, r xferResult) {
	if r.vanished {
		return // the next pass sees it gone
	}
	c := r.entry
	if !r.stable {
		c.Mtime = -1 // resend next pass
	}
	s.sent[e.Path] = &c
	s.srcIno[e.Path] = r.ino
	s.blocks[e.Path] = r.blocks
	if r.whole {
		pl.whole[e.Path] = true
		pl.touched[tree.Parent(e.Path)] = true
	}
}
