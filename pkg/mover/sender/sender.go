// Package sender is the source side of the mover: initial copy, continuous
// update copy, final sync and verification, resuming across reconnects.
package sender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// Options configure a sender.
type Options struct {
	Dir        string // source directory, or device/image with Block
	Block      bool
	To         string // receiver host:port
	ServerName string // name expected in the receiver certificate (default: host of To)
	// Volume names the volume sent; the receiver must serve the same one.
	Volume     string
	TLS        transport.Files
	TLSConfig  *tls.Config // overrides TLS files when set
	Continuous bool
	// Finish, when closed, ends continuous replication with a final sync.
	Finish <-chan struct{}
	// QuiesceStart, read once Finish is closed, is when the application
	// was told to stop (zero: unknown). The final sync rereads every file
	// changed since then, whatever its cached sums say.
	QuiesceStart func() time.Time
	Compress     bool
	BWLimit      int64 // bytes per second, 0 = unlimited
	Workers      int   // parallel file readers (default 4)
	// RescanInterval is the full-rescan period backing change tracking in
	// continuous mode (block mode: the rehash period). Default 60s (10s block).
	RescanInterval time.Duration
	// FullVerify rereads every byte on both sides instead of trusting
	// sums cached under unchanged (size, mtime, ctime, inode) keys.
	FullVerify bool
	// TimestampWindow: a file read within this long of its last change is
	// read again before its copy is trusted (default tree.DefaultWindow).
	// Raise it for network filesystems whose server clock may be skewed.
	TimestampWindow time.Duration
	// RetryTimeout bounds how long a lost receiver is retried (default 10m).
	RetryTimeout time.Duration
	Progress     func(progress.Progress)
	// Dial replaces the TCP dial (tests use it to cut connections).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Result is what a successful run proves.
type Result struct {
	Digest   string
	Progress progress.Progress
}

// ErrMismatch means verification found source and destination different.
var ErrMismatch = errors.New("verification failed: source and destination differ")

// Sender holds what survives reconnects.
type Sender struct {
	o       Options
	t       *progress.Tracker
	cache   *tree.SumCache
	owners  bool
	sent    map[string]*tree.Entry // what the receiver holds, as far as we know
	blocks  map[string][]tree.Hash // block sums of what the receiver holds
	srcIno  map[string]uint64      // source inode of each sent path, for renames
	initial bool                   // initial copy finished
	cold    bool                   // finish was asked before this process had caught up
	// scanSeconds is the last full scan's duration, copyRate the initial
	// copy's bytes/s: what the final sync estimate is made of.
	scanSeconds float64
	copyRate    float64
	// passOldest is the oldest change the running pass replicates.
	passOldest time.Time
	// forceSince (unix ns): the final pass rereads files changed since.
	forceSince int64
	resumed    bool  // a later session must catch up with a full pass
	wireBase   int64 // stream bytes of earlier connections
	// lastScan is the last full scan, reused by verification.
	lastScan []tree.Entry
	// lastScanAt is when lastScan started; zero makes the next scan list
	// every attribute again (tree.Earlier).
	lastScanAt time.Time
	w          *watcher
	// seesAll: inotify sees every write to the source (watch.SeesAll);
	// since: what it reported since lastScan began.
	seesAll bool
	since   changes
	blk     *blockState
	// root resolves every source path beneath the volume (package beneath).
	root *beneath.Root
}

// Run replicates until done: one pass plus final sync without Continuous,
// else until Finish is closed. Cancelling ctx aborts without success.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = 60 * time.Second
		if o.Block {
			o.RescanInterval = 10 * time.Second
		}
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = 10 * time.Minute
	}
	if o.Finish == nil || !o.Continuous {
		ch := make(chan struct{})
		close(ch)
		o.Finish = ch
	}
	s := &Sender{o: o, t: progress.NewTracker("sender", o.Progress), cache: tree.NewSumCache(o.TimestampWindow)}
	res, err := s.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("aborted: %w", err)
		}
		s.t.Fail(err)
		return nil, err
	}
	return res, nil
}

func (s *Sender) run(ctx context.Context) (*Result, error) {
	if s.o.Block {
		f, err := os.Open(s.o.Dir)
		if err != nil {
			return nil, fmt.Errorf("open source volume: %w", err)
		}
		defer f.Close()
		s.blk = &blockState{f: f}
	} else {
		if st, err := os.Stat(s.o.Dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("source %q must be an existing directory", s.o.Dir)
		}
		root, err := beneath.New(s.o.Dir)
		if err != nil {
			return nil, fmt.Errorf("source volume: %w", err)
		}
		defer root.Close()
		s.root = root
		if s.o.Continuous {
			w, err := newWatcher(s.o.Dir)
			if err != nil {
				return nil, err
			}
			defer w.Close()
			s.w = w
			s.seesAll = watch.SeesAll(s.o.Dir)
		}
	}
	cfg := s.o.TLSConfig
	if cfg == nil {
		var err error
		if cfg, err = transport.ClientConfig(s.o.TLS, s.o.ServerName); err != nil {
			return nil, err
		}
	}
	done := make(chan struct{})
	defer close(done)
	go s.t.Run(done)

	var lastOK = time.Now()
	for attempt := 0; ; attempt++ {
		s.t.SetPhase(progress.Connecting)
		k, err := s.connect(ctx, cfg)
		if err == nil {
			lastOK = time.Now()
			var res *Result
			res, err = s.session(ctx, k)
			k.fail(errors.New("session over"))
			s.wireBase += k.sent()
			if err == nil {
				return res, nil
			}
			attempt = 0
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if permanent(err) {
			return nil, err
		}
		if time.Since(lastOK) > s.o.RetryTimeout {
			return nil, fmt.Errorf("giving up after %v: %w", s.o.RetryTimeout, err)
		}
		s.t.Update(func(p *progress.Progress) { p.LastError = err.Error(); p.Reconnects++ })
		s.t.Emit()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(transport.Backoff(attempt)):
		}
	}
}

func permanent(err error) bool {
	return errors.Is(err, transport.ErrAuth) || errors.Is(err, ErrReceiver) || errors.Is(err, ErrMismatch)
}

func (s *Sender) connect(ctx context.Context, cfg *tls.Config) (*conn, error) {
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(s.o.To)
		if err != nil {
			return nil, err
		}
		c.ServerName = host
	}
	var raw net.Conn
	var err error
	if s.o.Dial != nil {
		raw, err = s.o.Dial(ctx, s.o.To)
	} else {
		d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
		raw, err = d.DialContext(ctx, "tcp", s.o.To)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.o.To, err)
	}
	tc, err := transport.Handshake(ctx, transport.Limit(raw, s.o.BWLimit), c, s.o.To)
	if err != nil {
		return nil, err
	}
	k := newConn(tc, s.o.Compress)
	mode := uint8(wire.ModeTree)
	if s.o.Block {
		mode = wire.ModeBlock
	}
	if err := k.send(wire.THello, &wire.Hello{Version: wire.Version, Mode: mode, Compress: s.o.Compress, Volume: s.o.Volume}, true); err != nil {
		return nil, err
	}
	ack, err := wait(k, k.hello)
	if err != nil {
		// TLS 1.3 reports a rejected client certificate on first read.
		if strings.Contains(err.Error(), "remote error: tls") {
			return nil, fmt.Errorf("%w: receiver %s rejected our client certificate: %v", transport.ErrAuth, s.o.To, err)
		}
		return nil, err
	}
	if ack.Err != "" {
		k.fail(errors.New("refused"))
		return nil, fmt.Errorf("%w: %s", ErrReceiver, ack.Err)
	}
	s.owners = ack.Owners
	if s.blk != nil {
		s.blk.destSize = ack.Size
	}
	return k, nil
}

// session runs the replication state machine on one connection; a
// reconnect re-enters it and resumes from the receiver's real state.
func (s *Sender) session(ctx context.Context, k *conn) (*Result, error) {
	if s.blk != nil {
		return s.blockSession(ctx, k)
	}
	if err := s.loadIndex(k); err != nil {
		return nil, err
	}
	if !s.initial {
		s.t.SetPhase(progress.InitialSync)
		start := time.Now()
		if _, err := s.pass(ctx, k, nil, false); err != nil {
			return nil, err
		}
		s.initial = true
		if d := time.Since(start).Seconds(); d > 0 {
			s.copyRate = float64(s.t.Snapshot().BytesCopied) / d
		}
		if s.o.Continuous {
			// Asked to finish before this process caught up (it started,
			// or restarted, after the app stopped): the whole scan and
			// rehash of the initial copy fell into the downtime.
			select {
			case <-s.o.Finish:
				s.cold = true
			default:
			}
		}
	}
	if err := s.replicate(ctx, k); err != nil {
		return nil, err
	}
	return s.final(ctx, k)
}

// MaxPeerEntries bounds the entries a receiver may list (its index, or its
// verification records): what the sender keeps of them grows with the
// count, and a broken or hostile receiver could otherwise stream entries
// until the sender runs out of memory. 16 Mi entries is ext4's inode count
// for a 256 GiB volume; a larger receiver fails the session clearly.
var MaxPeerEntries = 1 << 24

func tooManyEntries(what string) error {
	return fmt.Errorf("%w: the receiver lists more than %d entries in its %s", ErrReceiver, MaxPeerEntries, what)
}

// loadIndex rebuilds the view of the receiver from what it really holds, so
// nothing it already has is sent again.
func (s *Sender) loadIndex(k *conn) error {
	if err := k.send(wire.TIndexReq, wire.Empty{}, true); err != nil {
		return err
	}
	old, oldBlocks, oldIno := s.sent, s.blocks, s.srcIno
	s.sent = map[string]*tree.Entry{}
	s.blocks = map[string][]tree.Hash{}
	s.srcIno = map[string]uint64{}
	for {
		es, err := wait(k, k.index)
		if err != nil {
			return err
		}
		if es == nil {
			return nil
		}
		if len(s.sent)+len(es) > MaxPeerEntries {
			return tooManyEntries("index")
		}
		for i := range es {
			e := &es[i]
			s.sent[e.Path] = e
			// Keep what we knew of an entry the receiver still has unchanged.
			if o := old[e.Path]; o != nil && o.SameContentKey(e) {
				if b := oldBlocks[e.Path]; b != nil {
					s.blocks[e.Path] = b
				}
				s.srcIno[e.Path] = oldIno[e.Path]
			}
		}
	}
}
