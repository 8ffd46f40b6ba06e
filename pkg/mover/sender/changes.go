package sender

import (
	"context"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

// changes are the paths inotify reported since the last full scan began:
// with lastScan, what the tree is now. They let the final pass, which runs
// in the downtime, look only at what changed instead of the whole volume.
type changes struct {
	// exact: no event was lost since that scan, on a filesystem whose every
	// writer inotify sees (watch.SeesAll).
	exact bool
	paths map[string]bool
	trees map[string]bool
}

// reset starts over at a full scan.
func (c *changes) reset(exact bool) {
	c.exact, c.paths, c.trees = exact, map[string]bool{}, map[string]bool{}
}

func (c *changes) add(w watch.Changes) {
	if w.Overflow {
		c.exact = false
	}
	if !c.exact {
		return
	}
	for p := range w.Paths {
		c.paths[p] = true
	}
	for p := range w.Trees {
		c.trees[p] = true
	}
}

// finalPass is a final pass over what changed since the last full scan,
// plus what an earlier pass read while it changed (marked to be resent),
// when that is exact; else over the whole tree. A restarted sender
// (cold), a full verification, or a second attempt after a repair scans
// the whole tree: what the receiver holds was then not all read by this
// process, or something was missed.
func (s *Sender) finalPass(ctx context.Context, k *conn, first bool) (unstable bool, err error) {
	var c watch.Changes
	if s.w != nil {
		s.w.Drain() // every event of a write made before this call
		c = s.w.Take()
		s.since.add(c)
	}
	if !first || s.cold || s.o.FullVerify || !s.since.exact {
		return s.pass(ctx, k, nil, true)
	}
	// The earlier passes took care of the changes before these.
	dirty := map[string]bool{}
	for p := range c.Paths {
		dirty[p] = true
	}
	// What was read while it changed waits for the next pass, whether or
	// not a new event names it.
	for p, e := range s.sent {
		if e.Mtime == -1 {
			dirty[p] = true
		}
	}
	if len(dirty) == 0 {
		return false, s.barrier(k, true, s.unchanged())
	}
	return s.pass(ctx, k, slices.Collect(maps.Keys(dirty)), true)
}

// unchanged reports that inotify, which sees every change here, saw none
// since the running pass took its changes (or, a full pass, since the
// changes before its scan were taken): the pass read the source as it was
// at one instant. Conservative where the queue held events before a pass
// that did not take them (the first, or one after a reconnect).
func (s *Sender) unchanged() bool {
	if !s.since.exact { // exact only with a watcher on a filesystem it sees whole
		return false
	}
	s.w.Drain()
	n, _ := s.w.Pending()
	return n == 0
}

// relist brings lastScan, which verification lists, up to date with the
// changes since it was taken; a full pass where only that is exact.
func (s *Sender) relist(ctx context.Context, k *conn) error {
	if len(s.since.paths) == 0 && len(s.since.trees) == 0 {
		return nil
	}
	es, ok, err := tree.Rescan(s.o.Dir, s.lastScan, slices.Collect(maps.Keys(s.since.paths)), s.since.trees, nil)
	if err != nil {
		return err
	}
	if !ok {
		_, err := s.pass(ctx, k, nil, true)
		return err
	}
	tree.LinkGroups(es)
	s.lastScan = es
	// Entries looked up now are not what lastScanAt says was read then:
	// a later scan lists every attribute again.
	s.lastScanAt = time.Time{}
	s.since.reset(s.since.exact)
	return nil
}

// checkTracking holds a full scan against the last one and what inotify
// reported in between; a change it did not report ends the trust in it.
func (s *Sender) checkTracking(cur []tree.Entry) {
	if !s.since.exact || s.lastScan == nil {
		return
	}
	s.w.Drain()
	if p := s.since.unseen(s.lastScan, cur, s.w.Peek(math.MaxInt)); p != "" {
		s.seesAll = false
		s.t.Update(func(pr *progress.Progress) { pr.UnseenChange = p })
	}
}

// unseen compares a full scan with the one before it: every difference
// lies at or below a path inotify reported since (or pending now), or is
// a directory holding one. A path where it does not is returned: inotify
// misses writes to this volume (a shared mapping written before the file is
// closed, another host), so no final pass may rely on it. Close calls
// (a directory's times moved by a reported rename, say) err towards a full
// final pass, never towards a missed change.
func (c *changes) unseen(old, cur []tree.Entry, pending []string) string {
	seen := map[string]bool{}
	parents := map[string]bool{}
	for _, set := range []map[string]bool{c.paths, c.trees} {
		for p := range set {
			seen[p] = true
		}
	}
	for _, p := range pending {
		seen[p] = true
	}
	for p := range seen {
		parents[tree.Parent(p)] = true
	}
	covered := func(p string) bool {
		if parents[p] {
			return true
		}
		for q := p; ; q = tree.Parent(q) {
			if seen[q] {
				return true
			}
			if q == "." {
				return false
			}
		}
	}
	// A change to a hard-linked inode is reported under the name written.
	links := map[uint64]bool{}
	for _, es := range [][]tree.Entry{old, cur} {
		for k := range es {
			if e := &es[k]; e.Nlink > 1 && covered(e.Path) {
				links[e.Ino] = true
			}
		}
	}
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		var e *tree.Entry
		switch {
		case j == len(cur) || (i < len(old) && old[i].Path < cur[j].Path):
			e = &old[i]
			i++
		case i == len(old) || cur[j].Path < old[i].Path:
			e = &cur[j]
			j++
		default:
			a, b := &old[i], &cur[j]
			i, j = i+1, j+1
			if a.Kind == b.Kind && a.Ino == b.Ino && a.Size == b.Size && a.Mtime == b.Mtime && a.Ctime == b.Ctime &&
				a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.Target == b.Target {
				continue
			}
			e = b
		}
		if !covered(e.Path) && !(e.Nlink > 1 && links[e.Ino]) {
			return e.Path
		}
	}
	return ""
}
