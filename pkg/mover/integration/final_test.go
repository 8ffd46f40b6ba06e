package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

// lastWrites runs a continuous sender over a tree of many files and makes
// change in the sender's FinalSync report, which it gives in its own
// goroutine after it stopped replicating and before its final pass: the
// app's last writes, which only the final pass can carry. It returns the
// sender's last progress once both sides verified and the trees are alike.
func lastWrites(t *testing.T, src string, o func(*sender.Options), change func(j func(string) string)) progress.Progress {
	t.Helper()
	c := makeCreds(t)
	dst := t.TempDir()
	j := func(p string) string { return filepath.Join(src, p) }
	for d := range 10 {
		must(t, os.MkdirAll(j(fmt.Sprintf("d%d/sub", d)), 0o755))
		for f := range 30 {
			writeRandom(t, j(fmt.Sprintf("d%d/sub/f%d", d, f)), 2000+f, uint64(d*100+f))
		}
	}
	must(t, os.Mkdir(j("db"), 0o755))
	writeRandom(t, j("db/large.db"), 4<<20, 9)
	must(t, os.Symlink("d0/sub/f0", j("link")))
	r := startReceiver(t, c, dst, false)
	finish := make(chan struct{})
	so := sendOpts(c, src, r.addr)
	so.RescanInterval = time.Hour // only inotify tells what changed
	if o != nil {
		o(&so)
	}
	var mu sync.Mutex
	var last progress.Progress
	var once sync.Once
	so.Progress = func(p progress.Progress) {
		if p.Phase == progress.FinalSync {
			once.Do(func() { change(j) })
		}
		mu.Lock()
		last = p
		mu.Unlock()
	}
	res := startContinuous(t, so, finish)
	finishAndCompare(t, finish, res, r, src, dst)
	mu.Lock()
	defer mu.Unlock()
	if !last.Verified || last.Repairs != 0 {
		t.Fatalf("not verified at the first attempt (a pass missed a change): %+v", last)
	}
	return last
}

// appWrites changes every kind of thing an app's last writes can: bytes in
// place, a new tree, a removal, a rename, a mode, a symlink, a truncation.
func appWrites(t *testing.T) func(j func(string) string) {
	return func(j func(string) string) {
		f, err := os.OpenFile(j("db/large.db"), os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteAt(randomBytes(8192, 77), 1<<20)
		must(t, err)
		must(t, f.Close())
		must(t, os.MkdirAll(j("new/tree"), 0o755))
		writeRandom(t, j("new/tree/born"), 5000, 78)
		must(t, os.Remove(j("d1/sub/f3")))
		must(t, os.Rename(j("d2"), j("d2-renamed")))
		must(t, os.Chmod(j("d3/sub/f4"), 0o600))
		must(t, os.Remove(j("link")))
		must(t, os.Symlink("d4/sub/f1", j("link")))
		must(t, os.Truncate(j("d5/sub/f5"), 10))
	}
}

// The final pass runs in the downtime: it looks only at what inotify
// reported changed since the last full scan (and what an earlier pass read
// while it changed), not at the whole volume, and still carries every last
// write. On a filesystem whose timestamps move once per tick too.
func TestFinalPassTakesOnlyWhatChanged(t *testing.T) {
	for _, fs := range []string{"tmpdir", "ramfs"} {
		t.Run(fs, func(t *testing.T) {
			src := t.TempDir()
			if fs == "ramfs" {
				src = mountRamfs(t)
			}
			// A temporary directory on a filesystem other hosts could write
			// (or one not known local) gets the full pass instead.
			p := lastWrites(t, src, nil, appWrites(t))
			if want := !watch.SeesAll(src); p.FinalPassFull != want {
				t.Errorf("final pass over the whole volume: %v, want %v: %+v", p.FinalPassFull, want, p)
			}
		})
	}
}

// Where only a full scan is exact, the final pass makes one: a hard link
// among the last changes (its other names may lie outside them), or a
// full verification asked for.
func TestFinalPassScansWholeWhereItMust(t *testing.T) {
	for name, tc := range map[string]struct {
		o      func(*sender.Options)
		change func(t *testing.T) func(j func(string) string)
	}{
		"hard link": {change: func(t *testing.T) func(j func(string) string) {
			return func(j func(string) string) {
				appWrites(t)(j)
				must(t, os.Link(j("d6/sub/f6"), j("d7/hard")))
			}
		}},
		"full verification": {o: func(o *sender.Options) { o.FullVerify = true }, change: appWrites},
	} {
		t.Run(name, func(t *testing.T) {
			if p := lastWrites(t, t.TempDir(), tc.o, tc.change(t)); !p.FinalPassFull {
				t.Errorf("the final pass did not scan the whole volume: %+v", p)
			}
		})
	}
}

// A write through a shared mapping raises no inotify event, but the app's
// end does: the last reference to a file opened for writing (the mapping's,
// at munmap or exit) raises IN_CLOSE_WRITE. So the final pass, run after
// the app stopped, still finds the file, without a repair.
func TestFinalPassSeesWritesThroughAMapping(t *testing.T) {
	for _, fs := range []string{"tmpdir", "ramfs"} {
		t.Run(fs, func(t *testing.T) {
			src := t.TempDir()
			if fs == "ramfs" {
				src = mountRamfs(t)
			}
			lastWrites(t, src, nil, func(j func(string) string) {
				f, err := os.OpenFile(j("db/large.db"), os.O_RDWR, 0)
				must(t, err)
				m, err := unix.Mmap(int(f.Fd()), 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
				must(t, err)
				must(t, f.Close()) // the mapping keeps the file open
				copy(m[4096:], randomBytes(4096, 79))
				must(t, unix.Munmap(m)) // the app's end
			})
		})
	}
}

// A write inotify cannot see while it happens (through a mapping the app
// keeps open) is found by the next periodic full rescan, which holds its
// scan against what inotify reported: from then on the final pass scans
// the whole volume instead of trusting the events.
func TestAChangeInotifyMissedEndsTrustInIt(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "db"), 1<<20, 80)
	writeRandom(t, filepath.Join(src, "other"), 1000, 81)
	r := startReceiver(t, c, dst, false)
	so := sendOpts(c, src, r.addr)
	so.RescanInterval = 300 * time.Millisecond
	var mu sync.Mutex
	var last progress.Progress
	so.Progress = func(p progress.Progress) { mu.Lock(); last = p; mu.Unlock() }
	finish := make(chan struct{})
	res := startContinuous(t, so, finish)

	f, err := os.OpenFile(filepath.Join(src, "db"), os.O_RDWR, 0)
	must(t, err)
	m, err := unix.Mmap(int(f.Fd()), 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	must(t, f.Close())
	copy(m[8192:], randomBytes(4096, 82)) // no event: the mapping stays open
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return last.UnseenChange != "" })
	must(t, unix.Munmap(m))
	finishAndCompare(t, finish, res, r, src, dst)
	mu.Lock()
	defer mu.Unlock()
	if last.UnseenChange != "db" || !last.FinalPassFull || !last.Verified {
		t.Fatalf("want the change to db reported unseen and a full final pass: %+v", last)
	}
}
