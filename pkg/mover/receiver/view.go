package receiver

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

// view is the receiver's own scan of its tree, kept current between passes
// with inotify, so that verification in the downtime looks again only at
// what the last pass changed instead of scanning the whole volume.
//
// Until the app starts there, the receiver is the volume's only writer,
// and it writes only through system calls inotify reports (every file it
// changes it also opens for writing and closes). Someone else writing on
// this node is seen too; a writer on another host of a network filesystem
// is not, and is outside the contract. A verification that finds a
// difference forgets the view and scans everything again.
type view struct {
	mu  sync.Mutex
	w   *watch.Watcher
	es  []tree.Entry // sorted and link-grouped; nil: scan whole
	off bool         // the tree cannot be watched
	// logf reports once why there is no view.
	logf func(format string, args ...any)
}

// refresh brings the view up to date in the background between passes,
// unless a refresh is already running.
func (v *view) refresh(root string, known tree.Known) {
	if !v.mu.TryLock() {
		return
	}
	go func() {
		defer v.mu.Unlock()
		v.update(root, known, true)
	}()
}

// current returns the tree as it is now: the view brought up to date, or
// a full scan where there is none and start is false (a one-shot copy never
// had passes to build one between: watching the tree now would only add to
// the scan).
func (v *view) current(root string, known tree.Known, start bool) ([]tree.Entry, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.update(root, known, start); err != nil {
		return nil, err
	}
	if v.es != nil {
		return v.es, nil
	}
	return scanWhole(root, known)
}

// scanWhole is a full scan, link-grouped as verification takes it.
func scanWhole(root string, known tree.Known) ([]tree.Entry, error) {
	es, err := tree.Scan(root, ".", known)
	if err != nil {
		return nil, err
	}
	tree.LinkGroups(es)
	return es, nil
}

// forget drops the scan: the next verification scans the volume whole.
func (v *view) forget() {
	v.mu.Lock()
	v.es = nil
	v.mu.Unlock()
}

// update brings the view up to date; start: build one if there is none.
func (v *view) update(root string, known tree.Known, start bool) error {
	if v.off || (v.w == nil && !start) {
		return nil
	}
	if v.w == nil {
		w, err := watch.New(root, watchBudget())
		if err != nil {
			v.off = true
			if v.logf != nil {
				v.logf("verification will scan the whole volume each time: %v", err)
			}
			return nil
		}
		v.w = w
	}
	v.w.Drain()
	c := v.w.Take()
	if v.es != nil && !c.Overflow {
		if len(c.Paths) == 0 {
			return nil
		}
		es, ok, err := tree.Rescan(root, v.es, slices.Collect(maps.Keys(c.Paths)), c.Trees, known)
		if err != nil {
			v.es = nil
			return err
		}
		if ok {
			tree.LinkGroups(es)
			v.es = es
			return nil
		}
	}
	// Watched before scanned: what changes during the scan is reported.
	es, err := scanWhole(root, known)
	v.es = es
	return err
}

func (v *view) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.w != nil {
		v.w.Close()
		v.w = nil
	}
	v.es, v.off = nil, true
}

// watchBudget is how many directories the view may watch: a quarter of the
// node's per-user inotify watches, which the node's other pods share.
func watchBudget() int {
	n := 8192 // the kernel's default before Linux 5.11
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches"); err == nil {
		if m, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && m > 0 {
			n = m
		}
	}
	return max(n/4, 1)
}
