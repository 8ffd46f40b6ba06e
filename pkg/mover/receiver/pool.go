package receiver

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// Whole small files are written by several goroutines: creating an inode
// costs ~100 µs of kernel time here, so one goroutine caps the file rate.
// Files go to a worker chosen by their directory, which keeps every path
// (and every directory, whose lock serialises creates anyway) in order.
// Any other operation is a barrier: it runs once all queued files are done,
// so renames, deletes, links and metadata see the files before them.
//
// Queued files hold their frame buffers: queuedBytes bounds them together,
// and a full queue stops the session reading, so the sender waits on TCP
// instead of the receiver buffering (a peer sending faster than the disk
// writes once made the queues hold up to 1,024 frames).
const (
	applyWorkers = 4
	queueDepth   = 256 // > files per directory, so the next one can start
	queuedBytes  = 32 << 20
)

type fileJob struct {
	m   *wire.File
	buf *[]byte
}

type pool struct {
	s    *session
	qs   []chan fileJob
	seed maphash.Seed
	busy sync.WaitGroup // queued or running jobs
	done sync.WaitGroup // worker goroutines
	mu   sync.Mutex
	err  error

	budget *semaphore.Weighted // of queuedBytes
	queued atomic.Int64        // bytes held by queued jobs
	peak   atomic.Int64        // the most they held (tests)
	// apply writes one file in the directory handle dfd (tests replace it).
	apply func(dfd int, name string, m *wire.File) error
}

func newPool(s *session) *pool {
	p := &pool{s: s, seed: maphash.MakeSeed(), budget: semaphore.NewWeighted(queuedBytes), apply: s.fileAt}
	for range applyWorkers {
		q := make(chan fileJob, queueDepth)
		p.qs = append(p.qs, q)
		p.done.Add(1)
		go p.work(q)
	}
	return p
}

// add queues a file; it reports an earlier worker error instead, if any.
func (p *pool) add(m *wire.File, buf *[]byte) error {
	if err := p.failed(); err != nil {
		return err
	}
	// Waits for room; the workers free it whatever happens to the job.
	if err := p.budget.Acquire(context.Background(), held(buf)); err != nil {
		return err
	}
	if q := p.queued.Add(held(buf)); q > p.peak.Load() {
		p.peak.Store(q)
	}
	dir, _ := safefs.Split(m.Entry.Path)
	p.busy.Add(1)
	p.qs[maphash.String(p.seed, dir)%applyWorkers] <- fileJob{m, buf}
	return nil
}

// held is what a queued frame buffer pins.
func held(buf *[]byte) int64 { return min(int64(cap(*buf)), queuedBytes) }

// wait is the barrier: it returns once every queued file is applied.
func (p *pool) wait() error {
	p.busy.Wait()
	return p.failed()
}

func (p *pool) close() {
	for _, q := range p.qs {
		close(q)
	}
	p.done.Wait()
}

func (p *pool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// work applies the files of one queue. It keeps the handle of the current
// directory only while it has a backlog, so a handle never outlives a
// barrier (after which a rename could have moved that directory).
func (p *pool) work(q chan fileJob) {
	defer p.done.Done()
	dir, dfd := "", -1
	drop := func() {
		if dfd >= 0 {
			unix.Close(dfd)
		}
		dir, dfd = "", -1
	}
	for j := range q {
		if p.failed() == nil {
			d, name := safefs.Split(j.m.Entry.Path)
			var err error
			if d != dir {
				drop()
				if dfd, err = p.s.r.root.OpenDir(d); err == nil {
					dir = d
				} else {
					dfd = -1
				}
			}
			if err == nil {
				err = p.apply(dfd, name, j.m)
			}
			if err == nil {
				p.s.wrote(int64(len(j.m.Data)))
			}
			if err != nil {
				p.mu.Lock()
				if p.err == nil {
					p.err = err
				}
				p.mu.Unlock()
			}
		}
		n := held(j.buf)
		putFrame(j.buf)
		p.queued.Add(-n)
		p.budget.Release(n)
		if len(q) == 0 {
			drop()
		}
		p.busy.Done()
	}
	drop()
}
