package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

// An in-place page write to a large file sends about a page, not the file,
// and keeps the destination inode (written in place).
func TestInPlaceUpdateSendsOnlyChangedBlocks(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	const size = 32 << 20
	writeRandom(t, filepath.Join(src, "db"), size, 9)
	writeRandom(t, filepath.Join(src, "other"), 1000, 10)
	r := startReceiver(t, c, dst, false)
	finish := make(chan struct{})
	o := sendOpts(c, src, r.addr)
	o.Continuous, o.Finish = true, finish
	var last atomic.Value
	var mu sync.Mutex
	o.Progress = func(p progress.Progress) { mu.Lock(); last.Store(p); mu.Unlock() }
	done := make(chan error, 1)
	var res *sender.Result
	go func() {
		var err error
		res, err = sender.Run(context.Background(), o)
		done <- err
	}()
	waitFor(t, func() bool {
		p, _ := last.Load().(progress.Progress)
		return p.Phase == progress.Syncing
	})
	st0, err := os.Stat(filepath.Join(dst, "db"))
	must(t, err)
	ino := inode(st0)
	f, err := os.OpenFile(filepath.Join(src, "db"), os.O_RDWR, 0)
	must(t, err)
	f.WriteAt(make([]byte, 8192), 17<<20+100)
	f.Close()
	time.Sleep(300 * time.Millisecond)
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	must(t, r.wait(t))
	assertSame(t, src, dst)
	extra := res.Progress.BytesCopied - (size + 1000)
	if extra <= 0 || extra > 256<<10 {
		t.Fatalf("update copied %d bytes for an 8 KiB change", extra)
	}
	st1, err := os.Stat(filepath.Join(dst, "db"))
	must(t, err)
	if inode(st1) != ino {
		t.Fatal("large file was replaced instead of updated in place")
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatal("condition not reached")
}
