package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

// writer mutates src like a busy application: creates, appends, rewrites in
// place, renames files and directories, deletes, chmods.
func writer(t *testing.T, src string, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	r := rand.New(rand.NewPCG(7, 8))
	j := func(p string) string { return filepath.Join(src, p) }
	db, err := os.OpenFile(j("a/b/c/large.db"), os.O_RDWR, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer db.Close()
	page := make([]byte, 8192)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		switch i % 8 {
		case 0:
			os.MkdirAll(j(fmt.Sprintf("w/d%d", i%5)), 0755)
			os.WriteFile(j(fmt.Sprintf("w/d%d/f%d", i%5, i)), []byte(fmt.Sprint(i)), 0644)
		case 1:
			for k := range page {
				page[k] = byte(r.Uint32())
			}
			db.WriteAt(page, int64(r.IntN(3<<20-8192)))
		case 2:
			os.Rename(j(fmt.Sprintf("w/d%d/f%d", (i-2)%5, i-2)), j(fmt.Sprintf("w/renamed%d", i)))
		case 3:
			os.Remove(j(fmt.Sprintf("w/renamed%d", i-9)))
		case 4:
			os.Chmod(j("a/small.bin"), os.FileMode(0600+i%2*0044))
			// Attributes change without touching the data: ctime alone says so.
			if i%3 == 1 {
				unix.Removexattr(j("append.log"), "user.gen")
			} else {
				unix.Setxattr(j("append.log"), "user.gen", []byte(fmt.Sprint(i)), 0)
			}
		case 5:
			f, err := os.OpenFile(j("append.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0644)
			if err == nil {
				fmt.Fprintf(f, "line %d\n", i)
				f.Close()
			}
		case 6:
			if i%48 == 6 {
				os.Rename(j("w/d1"), j(fmt.Sprintf("w/moved%d", i)))
			}
		case 7:
			if i%40 == 7 {
				os.RemoveAll(j("w/d2"))
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func TestContinuousWithConcurrentWriter(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	populate(t, src)
	r := startReceiver(t, c, dst, false)
	finish := make(chan struct{})
	o := sendOpts(c, src, r.addr)
	o.Continuous, o.Finish = true, finish
	// Full rescans while the app writes: each holds what it finds against
	// what inotify reported, and must find nothing it did not.
	o.RescanInterval = 300 * time.Millisecond
	var mu sync.Mutex
	var passes []progress.Progress
	o.Progress = func(p progress.Progress) {
		mu.Lock()
		passes = append(passes, p)
		mu.Unlock()
	}
	type out struct {
		res *sender.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := sender.Run(context.Background(), o)
		done <- out{res, err}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go writer(t, src, stop, &wg)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	// The writer has stopped: the destination must end up equal to this.
	want := snapshot(t, src)
	close(finish)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("receiver: %v", err)
	}
	if d := diffTrees(want, snapshot(t, dst)); len(d) > 0 {
		t.Fatalf("destination differs from the source at writer stop:\n%s", joinLines(d))
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[progress.Phase]bool{}
	for _, p := range passes {
		seen[p.Phase] = true
	}
	for _, ph := range []progress.Phase{progress.InitialSync, progress.Syncing, progress.FinalSync, progress.Verifying, progress.Completed} {
		if !seen[ph] {
			t.Errorf("phase %s never reported", ph)
		}
	}
	if res.res.Progress.Passes < 3 {
		t.Errorf("expected several update passes, got %d", res.res.Progress.Passes)
	}
	// The app had stopped: the first verification must agree. A repair
	// would hide a side that believes wrongly what it holds (the
	// receiver's view, the sender's records), since it ends equal anyway.
	if n := res.res.Progress.Repairs; n != 0 {
		t.Errorf("the final sync needed %d repairs after the writer stopped (last error: %s)", n, res.res.Progress.LastError)
	}
	if p := res.res.Progress.UnseenChange; p != "" {
		t.Errorf("a full rescan took %s for a change inotify missed", p)
	}
}

// An attribute changed on the destination behind the receiver's back (its
// record of what it set no longer holds: ctime moved) is found by the final
// verification and repaired.
func TestDestinationAttributeChangeIsRepaired(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	populate(t, src)
	r := startReceiver(t, c, dst, false)
	finish := make(chan struct{})
	res := startContinuous(t, sendOpts(c, src, r.addr), finish)
	must(t, unix.Setxattr(filepath.Join(dst, "owned"), "user.intruder", []byte("x"), 0))
	finishAndCompare(t, finish, res, r, src, dst)
}

// finishAndCompare asks the continuous sender to finish and expects both
// sides to end well with the trees alike.
func finishAndCompare(t *testing.T, finish chan struct{}, res <-chan error, r *recv, src, dst string) {
	t.Helper()
	close(finish)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("receiver: %v", err)
	}
	assertSame(t, src, dst)
}

// The receiver keeps its scan of the destination current between passes
// and, at the final sync, looks again only at what changed since: changes
// made on the destination behind its back after that scan (on this node)
// must still show in verification and be repaired, on a filesystem with
// fine timestamps and on one whose timestamps move once per tick.
func TestDestinationChangesAfterReceiverScanAreRepaired(t *testing.T) {
	for _, fs := range []string{"tmpdir", "ramfs"} {
		t.Run(fs, func(t *testing.T) {
			c := makeCreds(t)
			src, dst := t.TempDir(), t.TempDir()
			if fs == "ramfs" {
				dst = mountRamfs(t)
			}
			populate(t, src)
			r := startReceiver(t, c, dst, false)
			finish := make(chan struct{})
			res := startContinuous(t, sendOpts(c, src, r.addr), finish)
			// A second pass, then time for the receiver's scan after it.
			must(t, os.WriteFile(filepath.Join(src, "a/later"), []byte("later"), 0o644))
			waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dst, "a/later")); return err == nil })
			time.Sleep(time.Second)
			j := func(p string) string { return filepath.Join(dst, p) }
			b, err := os.ReadFile(j("a/small.bin"))
			must(t, err)
			b[0] ^= 0xff
			must(t, os.WriteFile(j("a/small.bin"), b, 0o644))
			must(t, os.Remove(j("a/b/medium.bin")))
			must(t, os.WriteFile(j("a/extra"), []byte("extra"), 0o644))
			must(t, os.MkdirAll(j("new/tree"), 0o755))
			must(t, os.WriteFile(j("new/tree/f"), []byte("f"), 0o644))
			must(t, os.Chmod(j("empty/dir"), 0o700))
			finishAndCompare(t, finish, res, r, src, dst)
		})
	}
}
