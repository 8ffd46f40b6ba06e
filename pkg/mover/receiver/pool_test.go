package receiver

import (
	"fmt"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// A sender faster than the disk fills the queues only up to queuedBytes;
// then the session stops taking frames (and so stops reading the socket).
func TestQueuedFilesBounded(t *testing.T) {
	r, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := newPool(&session{r: r})
	release := make(chan struct{})
	p.apply = func(int, string, *wire.File) error { <-release; return nil } // a disk that stalls
	const files, size = 400, wire.ChunkSize
	added := make(chan int, files)
	go func() {
		for i := range files {
			buf := make([]byte, size)
			m := &wire.File{Entry: tree.Entry{Path: fmt.Sprintf("f%d", i), Kind: tree.KindFile, Size: size}}
			if err := p.add(m, &buf); err != nil {
				t.Error(err)
			}
			added <- i
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if n := len(added); n*size > queuedBytes+applyWorkers*size {
		t.Errorf("%d files (%d MiB) queued behind a stalled disk; the bound is %d MiB", n, n*size>>20, queuedBytes>>20)
	} else if n == files {
		t.Error("every file was queued: nothing held the session back")
	}
	close(release)
	for deadline := time.Now().Add(10 * time.Second); len(added) < files && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if len(added) != files {
		t.Fatalf("%d of %d files taken after the disk resumed", len(added), files)
	}
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	p.close()
	if p.peak.Load() > queuedBytes {
		t.Errorf("queued files held %d bytes, bound %d", p.peak.Load(), queuedBytes)
	}
	if p.queued.Load() != 0 {
		t.Errorf("%d bytes still accounted after the queue drained", p.queued.Load())
	}
}
