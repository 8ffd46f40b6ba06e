package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

type frame struct {
	t   wire.Type
	buf *[]byte
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, wire.ChunkSize+4096); return &b }}

// smallFrame sizes buffers of small frames exactly, so that the many
// queued for the file workers do not each pin a pooled chunk buffer.
const smallFrame = 16 << 10

// frameBuf is where the wire reader puts a frame of n bytes (wire.Reader.Own).
func frameBuf(n int) []byte {
	if n <= smallFrame {
		return make([]byte, n)
	}
	if bp := framePool.Get().(*[]byte); cap(*bp) >= n {
		return (*bp)[:n]
	}
	return make([]byte, n)
}

func putFrame(bp *[]byte) {
	if cap(*bp) > smallFrame {
		framePool.Put(bp)
	}
}

type session struct {
	r      *Receiver
	w      *wire.Writer
	owners bool
	block  bool
	files  map[uint64]*openFile
	dev    *os.File
	pool   *pool   // the workers writing whole small files
	held   heldRun // changes under the undo log, waiting for their run's sync
	// passFrom: the sender's next pass holds every change made before it.
	// The sender scans (and takes its change events) only once it has the
	// index or its last pass's ack, both sent after this was set: so it is
	// the time of the state a standby's point holds, not when it committed.
	passFrom time.Time
}

// flushEvery is how much written data starts a background syncfs, so that
// writeback overlaps the copy instead of all waiting for the final sync
// (which still syncs, and alone vouches for durability).
const flushEvery = 64 << 20

type flusher struct {
	dirty   atomic.Int64
	running atomic.Bool
}

// wrote accounts n bytes (plus an inode) and may start a background flush.
func (s *session) wrote(n int64) {
	if s.r.flush.dirty.Add(n+4096) >= flushEvery {
		s.flushNow()
	}
}

// flushNow starts a background syncfs of what was written, unless one runs.
func (s *session) flushNow() {
	f := &s.r.flush
	if f.dirty.Load() == 0 || !f.running.CompareAndSwap(false, true) {
		return
	}
	f.dirty.Store(0)
	go func() {
		defer f.running.Store(false)
		if fd, err := unix.Open(s.r.opts.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			unix.Syncfs(fd)
			unix.Close(fd)
		}
	}()
}

type openFile struct {
	f      *os.File
	e      tree.Entry
	sums   *fileSums // nil when the cache cannot be maintained
	budget int64     // block sums reserved for it (Receiver.sumBudget)
	fresh  bool      // created by us for this transfer (not updated in place)
	// inPlace: an existing file updated in place, whose old bytes the
	// undo log keeps before they are overwritten.
	inPlace bool
}

// ServeConn runs one sender session on rw. It returns nil once the sender
// declared a verified final sync, and an error for anything else,
// including a truncated or corrupt stream.
func (r *Receiver) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	s := &session{r: r, w: wire.NewWriter(rw, false), files: map[uint64]*openFile{}}
	defer s.closeAll()
	frames := make(chan frame, 32)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		rd := wire.NewReader(rw)
		rd.Limit(maxFrame)
		rd.Own(frameBuf)
		for {
			f, err := rd.Next()
			if err != nil {
				if err == io.EOF {
					err = fmt.Errorf("sender closed the stream mid-session: %w", io.ErrUnexpectedEOF)
				}
				readErr <- err
				close(frames)
				return
			}
			bp := &f.Payload
			r.Tracker.Update(func(p *progress.Progress) { p.BytesSent = rd.N })
			select {
			case frames <- frame{f.Type, bp}:
			case <-stop:
				return
			}
		}
	}()
	files := newPool(s)
	s.pool = files
	defer files.close()
	defer s.dropHeld()
	first := true
	for fr := range frames {
		// The type is checked before the body is decoded: a frame the
		// sender never sends costs nothing.
		var m wire.Msg
		var err error
		switch {
		case !fromSender(fr.t):
			err = fmt.Errorf("protocol error: unexpected frame type %d from sender", fr.t)
		case first != (fr.t == wire.THello):
			err = errors.New("protocol error: session must start with Hello, once")
		default:
			if m, err = wire.Decode(wire.Frame{Type: fr.t, Payload: *fr.buf}); err == nil {
				err = refuseReserved(m)
			}
		}
		first = false
		var done bool
		if err == nil && fr.t == wire.TFile {
			if err = s.checkFile(m.(*wire.File)); err == nil {
				err = s.queueFile(m.(*wire.File), fr.buf)
				fr.buf = nil // the worker returns it
			}
		} else if err == nil {
			if !holds(fr.t) {
				err = s.release()
			}
			if err == nil && !streams(fr.t) {
				err = files.wait()
			}
			if err == nil {
				done, err = s.apply(fr.t, m)
			}
		}
		if fr.buf != nil {
			putFrame(fr.buf)
		}
		if err == nil && s.w.Buffered() > 0 {
			err = s.w.Flush()
		}
		if err != nil {
			s.refuse(err, frames)
			return err
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	err := s.release()
	if err == nil {
		err = files.wait()
	}
	if err != nil { // a refused file explains more than the EOF
		s.refuse(err, frames)
		return err
	}
	return <-readErr
}

// refuse tells the sender why the session ends, then keeps reading (and
// dropping) what the sender still had in flight until it hangs up or a short
// while passes. Closing with unread data would reset the connection, and a
// reset can discard the error frame before the sender reads it: the sender
// would then retry against a receiver that is gone instead of reporting why.
func (s *session) refuse(err error, frames <-chan frame) {
	s.w.Send(wire.TError, &wire.Text{S: err.Error()})
	s.w.Flush()
	linger := time.NewTimer(refuseLinger)
	defer linger.Stop()
	for {
		select {
		case fr, ok := <-frames:
			if !ok {
				return
			}
			if fr.buf != nil {
				putFrame(fr.buf)
			}
		case <-linger.C:
			return
		}
	}
}

// refuseLinger bounds how long refuse waits for the sender to hang up.
const refuseLinger = 2 * time.Second

// maxFrame bounds what the receiver reads in one frame: the largest a sender
// sends is a whole small file with its path and attributes.
const maxFrame = wire.ChunkSize + wire.MaxXattrBytes + 64<<10

// refuseReserved refuses a message naming a path in the directory the
// receiver keeps for itself (the undo log): no sender may touch it.
func refuseReserved(m wire.Msg) error {
	var ps []string
	switch m := m.(type) {
	case *wire.EntryMsg:
		ps = []string{m.E.Path, m.E.LinkTo}
	case *wire.File:
		ps = []string{m.Entry.Path}
	case *wire.Text:
		ps = []string{m.S}
	case *wire.Rename:
		ps = []string{m.From, m.To}
	case *wire.HashReq:
		ps = []string{m.Path}
	}
	for _, p := range ps {
		if tree.IsReserved(path.Clean(p)) {
			return fmt.Errorf("protocol error: %q is the receiver's own (%s)", p, tree.Reserved)
		}
	}
	return nil
}

// fromSender reports the frame types a sender sends.
func fromSender(t wire.Type) bool {
	switch t {
	case wire.THello, wire.TIndexReq, wire.TMkdir, wire.TSymlink, wire.TNode, wire.TLink, wire.TMeta,
		wire.TDelete, wire.TRename, wire.TFile, wire.TBegin, wire.TData, wire.TPunch, wire.TEnd,
		wire.THashReq, wire.TSync, wire.TVerifyReq, wire.TDone:
		return true
	}
	return false
}

// streams reports the large-file frames, which touch only their own file
// (one path is sent once per pass) and so need not wait for queued files.
func streams(t wire.Type) bool {
	return t == wire.TBegin || t == wire.TData || t == wire.TPunch || t == wire.TEnd
}

func (s *session) closeAll() {
	for id, of := range s.files {
		s.r.sumBudget.Add(of.budget)
		if of.f != s.dev {
			of.f.Close()
		}
		delete(s.files, id)
	}
	if s.dev != nil {
		s.dev.Close()
	}
}

func (s *session) apply(t wire.Type, m wire.Msg) (bool, error) {
	switch t {
	case wire.THello:
		return false, s.hello(m.(*wire.Hello))
	case wire.TIndexReq:
		return false, s.index()
	case wire.TMkdir:
		return false, s.mkdir(&m.(*wire.EntryMsg).E)
	case wire.TSymlink:
		return false, s.symlink(&m.(*wire.EntryMsg).E)
	case wire.TNode:
		return false, s.node(&m.(*wire.EntryMsg).E)
	case wire.TLink:
		return false, s.link(&m.(*wire.EntryMsg).E)
	case wire.TMeta:
		return false, s.meta(&m.(*wire.EntryMsg).E)
	case wire.TDelete:
		return false, s.delete(m.(*wire.Text).S)
	case wire.TRename:
		mm := m.(*wire.Rename)
		return false, s.rename(mm.From, mm.To)
	case wire.TBegin:
		return false, s.begin(m.(*wire.File))
	case wire.TData:
		return false, s.data(m.(*wire.Data))
	case wire.TPunch:
		return false, s.punch(m.(*wire.Data))
	case wire.TEnd:
		return false, s.end(m.(*wire.ID).ID)
	case wire.THashReq:
		return false, s.hashes(m.(*wire.HashReq))
	case wire.TSync:
		return false, s.sync(m.(*wire.Sync))
	case wire.TVerifyReq:
		return false, s.verify(m.(*wire.VerifyReq))
	case wire.TDone:
		return s.done(m.(*wire.VerifyResp))
	}
	return false, fmt.Errorf("protocol error: unexpected frame type %d from sender", t)
}

func (s *session) hello(h *wire.Hello) error {
	ack := wire.HelloAck{Version: wire.Version, Owners: s.r.owners}
	switch {
	case h.Version != wire.Version:
		ack.Err = fmt.Sprintf("protocol version %d not supported (want %d)", h.Version, wire.Version)
	case h.Volume != s.r.opts.Volume && s.r.opts.Volume != "":
		ack.Err = fmt.Sprintf("wrong volume: this receiver serves %q, the sender sends %q (misrouted endpoint)", s.r.opts.Volume, h.Volume)
	case (h.Mode == wire.ModeBlock) != s.r.opts.Block:
		ack.Err = "volume mode mismatch: sender and receiver must both use --block-device or neither"
	}
	if ack.Err == "" {
		if err := s.r.dropPoints(); err != nil {
			ack.Err = err.Error()
		}
	}
	if ack.Err == "" && s.r.opts.Block {
		if err := s.openDev(&ack); err != nil {
			ack.Err = err.Error()
		}
	}
	s.owners = ack.Owners
	s.block = s.r.opts.Block
	if err := s.w.Send(wire.THelloAck, &ack); err != nil {
		return err
	}
	if ack.Err != "" {
		s.w.Flush()
		return errors.New(ack.Err)
	}
	s.r.Tracker.SetPhase(progress.Receiving)
	return nil
}

func (s *session) index() error {
	s.passFrom = time.Now().UTC()
	if s.block {
		return s.w.Send(wire.TIndexEnd, wire.Empty{})
	}
	es, err := tree.Scan(s.r.opts.Dir, ".", nil)
	if err != nil {
		return err
	}
	tree.LinkGroups(es)
	for i := range es {
		s.r.noteACL(es[i].Xattrs)
	}
	s.r.warmOnce.Do(func() { go tree.Warm(s.r.opts.Dir, es, s.r.cache, s.r.warmStop) })
	const batch = 2000
	for i := 0; i < len(es); i += batch {
		if err := s.w.Send(wire.TIndexChunk, &wire.Entries{List: es[i:min(i+batch, len(es))]}); err != nil {
			return err
		}
	}
	return s.w.Send(wire.TIndexEnd, wire.Empty{})
}

func (s *session) sync(m *wire.Sync) error {
	if m.Final {
		if err := s.fsync(); err != nil {
			return classify(err, "flushing the destination")
		}
	} else if s.r.points != nil {
		// A standby's pass: durable, then committed as its point, unless
		// it waits for an exact one.
		if s.r.points.commits(m.Exact, s.r.opts) {
			if err := s.fsync(); err != nil {
				return classify(err, "flushing the destination")
			}
			if err := s.commit(nil, m.Exact); err != nil {
				return err
			}
		}
	} else if !s.block {
		// Between passes the disk is idle: write back now, so that the
		// final sync's own syncfs finds little left (it is downtime), and
		// bring verification's view up to date.
		s.flushNow()
		s.r.view.refresh(s.r.opts.Dir, s.r.known(false))
	}
	s.r.Tracker.Update(func(p *progress.Progress) { p.Passes++ })
	s.passFrom = time.Now().UTC()
	return s.w.Send(wire.TSyncAck, &wire.Ack{Seq: m.Seq})
}

func (s *session) fsync() error {
	if s.dev != nil {
		return s.dev.Sync()
	}
	return s.r.root.Syncfs()
}

func (s *session) verify(m *wire.VerifyReq) error {
	s.r.stopWarm() // verification hashes what is left, in parallel
	var d tree.Hash
	var v *tree.Verification
	var err error
	if s.block {
		d, err = s.blockDigest(m.Size, m.Full)
	} else {
		if m.Detail || m.Full { // a difference was found, or everything is to be read again
			s.r.view.forget()
		}
		var es []tree.Entry
		if es, err = s.r.view.current(s.r.opts.Dir, s.r.known(m.Full), false); err == nil {
			if v, err = tree.VerifyEntries(s.r.opts.Dir, es, s.r.cache, m.Full, m.Owners); err == nil {
				d = v.Digest
			}
		}
	}
	if err != nil {
		return s.w.Send(wire.TVerifyResp, &wire.VerifyResp{Err: err.Error()})
	}
	var count uint64
	if v != nil {
		count = uint64(v.Count())
	}
	s.r.last = undo.Point{Digest: d, Entries: count, Owners: m.Owners}
	if m.Detail && v != nil {
		rs := v.Records()
		const batch = 20000
		for i := 0; i < len(rs); i += batch {
			if err := s.w.Send(wire.TVerifyRecs, &wire.Records{List: rs[i:min(i+batch, len(rs))]}); err != nil {
				return err
			}
		}
	}
	return s.w.Send(wire.TVerifyResp, &wire.VerifyResp{Digest: d, Count: count})
}

// known is what a scan may take as read: the attributes the receiver set,
// unless a full verification asks to read everything.
func (r *Receiver) known(full bool) tree.Known {
	if full {
		return nil
	}
	return r.cache
}

// done ends the receiver successfully only if the sender's verified digest
// is the one this side computed.
func (s *session) done(m *wire.VerifyResp) (bool, error) {
	if m.Err != "" || m.Digest != s.r.last.Digest {
		return false, fmt.Errorf("sender reported completion with digest %x, receiver has %x", m.Digest, s.r.last.Digest)
	}
	if err := s.commit(&s.r.last, true); err != nil { // a standby's: the verified pass, the app stopped, is its point
		return false, err
	}
	s.r.Tracker.Update(func(p *progress.Progress) {
		p.Digest = fmt.Sprintf("%x", m.Digest)
		p.Verified = true
	})
	s.r.Tracker.SetPhase(progress.Completed)
	err := s.w.Send(wire.TSyncAck, &wire.Ack{})
	if err == nil {
		err = s.w.Flush()
	}
	return true, err
}
