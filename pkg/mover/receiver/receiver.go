// Package receiver is the destination side of the mover: it serves one
// sender at a time over mutual TLS and applies what it is sent inside its
// directory (or block volume) only.
package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
)

// Options configure a receiver.
type Options struct {
	Dir   string // destination directory, or device/image with Block
	Block bool
	// Volume names the volume this receiver serves: a sender naming
	// another is refused (empty: any sender is taken).
	Volume   string
	Listen   string       // host:port, unless Listener is set
	Listener net.Listener // optional pre-bound listener (tests, agent)
	TLS      transport.Files
	// TLSConfig overrides TLS files when set.
	TLSConfig *tls.Config
	// Progress receives snapshots (may be nil).
	Progress func(progress.Progress)
	// Logf reports refused connections and session errors (may be nil).
	Logf func(format string, args ...any)
	// Points makes the volume a standby's: every pass after the first is
	// applied under an undo log and committed whole at its sync, so that a
	// crash at any moment leaves the last committed pass (docs/dr.md).
	Points bool
	// ExactOnly commits only passes the sender read at one instant (the
	// app wrote nothing meanwhile), after the first: the log then spans
	// passes, and the volume keeps its exact point until a pass is exact
	// again. PerFileAfter, if set, commits any pass once the point is this
	// old (each file then as it was at some instant of the pass).
	ExactOnly    bool
	PerFileAfter time.Duration
}

// Receiver keeps what survives between sender sessions: the confined root
// and the hash cache, so a reconnecting sender resumes cheaply.
type Receiver struct {
	opts    Options
	root    *safefs.Root
	cache   *tree.SumCache
	owners  bool
	Tracker *progress.Tracker
	mu      sync.Mutex
	applyMu sync.Mutex
	cur     net.Conn
	last    undo.Point // the last verification this side made: digest, count, owners
	flush   flusher
	// defaultACL: some directory here has a default ACL, which files
	// created in it inherit, so a new file's attributes must be listed.
	defaultACL atomic.Bool
	// The first index starts hashing what the volume already holds, until
	// verification begins (tree.Warm).
	warmOnce sync.Once
	warmStop chan struct{}
	warmEnd  sync.Once
	// view keeps verification's scan current between passes.
	view view
	// points is set with Options.Points.
	points *points
	// standbyLeft: without Options.Points, the volume holds a standby's
	// undo log, kept (at its point) until the first sender is accepted.
	standbyLeft bool
	// sumBudget is how many block sums the files being written may keep
	// together, like the cache: the volume's size in blocks. Memory for
	// sums is then at most twice volume/2048, whatever sizes a peer declares.
	sumBudget atomic.Int64
}

func (r *Receiver) stopWarm() { r.warmEnd.Do(func() { close(r.warmStop) }) }

// New prepares a receiver on opts.Dir.
func New(opts Options) (*Receiver, error) {
	r := &Receiver{opts: opts, cache: tree.NewSumCache(0), owners: os.Geteuid() == 0,
		Tracker: progress.NewTracker("receiver", opts.Progress), warmStop: make(chan struct{})}
	r.view.logf = opts.Logf
	if !opts.Block {
		st, err := os.Stat(opts.Dir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("destination %q must be an existing directory", opts.Dir)
		}
		if r.root, err = safefs.Open(opts.Dir); err != nil {
			return nil, err
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(opts.Dir, &fs); err != nil {
			return nil, fmt.Errorf("destination %q: %w", opts.Dir, err)
		}
		budget := int64(fs.Blocks)*fs.Bsize/tree.BlockSize + minSumBudget
		r.cache.SetLimit(budget)
		r.sumBudget.Store(budget)
	}
	switch {
	case opts.Points && opts.Block:
		return nil, errors.New("points in time are kept for filesystem volumes only, not --block-device")
	case opts.Points:
		if err := r.openPoints(); err != nil {
			return nil, err
		}
	case !opts.Block:
		if err := r.keepStandbyPoint(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// minSumBudget keeps sums for 64 GiB of files even on a small or
// unusual filesystem (tmpfs, ramfs report little or nothing): 16 MiB.
const minSumBudget = 1 << 20

// reserveSums takes n block sums from the budget of files being written.
func (r *Receiver) reserveSums(n int64) bool {
	if r.sumBudget.Add(-n) < 0 {
		r.sumBudget.Add(n)
		return false
	}
	return true
}

// Close releases the root.
func (r *Receiver) Close() {
	r.stopWarm()
	r.view.close()
	if r.root != nil {
		r.root.Close()
	}
}

// Root exposes the confined root (tests force the non-openat2 walk).
func (r *Receiver) Root() *safefs.Root { return r.root }

// ErrFatal marks errors that end the receiver, not just the session.
var ErrFatal = errors.New("fatal")

// Run serves until a sender completes a verified final sync (nil), a fatal
// error (such as a full disk) occurs, or ctx ends.
func Run(ctx context.Context, opts Options) error {
	r, err := New(opts)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Serve(ctx)
}

// Serve accepts senders; a new authenticated connection replaces the current
// one, since it means the sender reconnected.
func (r *Receiver) Serve(ctx context.Context) error {
	cfg := r.opts.TLSConfig
	if cfg == nil {
		var err error
		if cfg, err = transport.ServerConfig(r.opts.TLS); err != nil {
			return err
		}
	}
	ln := r.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", r.opts.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	defer ln.Close()
	r.Tracker.SetPhase(progress.Listening)
	done := make(chan struct{})
	defer close(done)
	go r.Tracker.Run(done)
	go func() { <-ctx.Done(); ln.Close() }()

	result := make(chan error, 1)
	var pending handshakes
	var sessions sync.WaitGroup
	defer sessions.Wait()
	defer pending.closeAll() // before waiting: a stalled handshake would hold it 15 s
	for {
		raw, err := ln.Accept()
		if err != nil {
			select {
			case err := <-result:
				return err
			default:
			}
			if ctx.Err() != nil {
				r.dropCurrent()
				return ctx.Err()
			}
			return fmt.Errorf("accept: %w", err)
		}
		sessions.Add(1)
		pending.start(raw)
		go func() {
			defer sessions.Done()
			conn, err := transport.Accept(ctx, raw, cfg)
			pending.done(raw)
			if err != nil {
				r.logf("%v", err)
				return
			}
			r.mu.Lock() // one session applies at a time
			if r.cur != nil {
				r.cur.Close()
			}
			r.cur = conn
			r.mu.Unlock()
			err = r.serveLocked(ctx, conn)
			if err == nil || errors.Is(err, ErrFatal) {
				select {
				case result <- err:
				default:
				}
				ln.Close()
				return
			}
			r.logf("session ended: %v", err)
			r.Tracker.Update(func(p *progress.Progress) { p.LastError = err.Error() })
		}()
	}
}

func (r *Receiver) dropCurrent() {
	r.mu.Lock()
	if r.cur != nil {
		r.cur.Close()
	}
	r.mu.Unlock()
}

// serveLocked runs one session while holding the apply lock.
func (r *Receiver) serveLocked(ctx context.Context, conn net.Conn) error {
	r.mu.Lock()
	// Wait out the previous session, which its closed conn is ending.
	r.mu.Unlock()
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	defer conn.Close()
	return r.ServeConn(ctx, conn)
}

func (r *Receiver) logf(format string, args ...any) {
	if r.opts.Logf != nil {
		r.opts.Logf(format, args...)
	}
}

// classify turns a disk-full condition into a fatal, clearly worded error.
func classify(err error, what string) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: destination disk full (ENOSPC) while %s: %v", ErrFatal, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
