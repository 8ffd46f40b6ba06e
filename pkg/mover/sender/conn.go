package sender

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// ErrReceiver marks an error reported by the receiver; retrying the same
// operation cannot help (disk full, refused path, mode mismatch).
var ErrReceiver = errors.New("receiver error")

// conn multiplexes one session: many goroutines write frames, one reader
// routes the receiver's answers.
type conn struct {
	c      net.Conn
	wmu    sync.Mutex
	w      *wire.Writer
	nextID atomic.Uint64

	mu      sync.Mutex
	hashes  map[uint64]*hashWait
	acks    chan *wire.Ack
	index   chan []tree.Entry // nil slice = end
	records chan []tree.Record
	verify  chan *wire.VerifyResp
	hello   chan *wire.HelloAck
	dead    chan struct{}
	err     error
}

func newConn(c net.Conn, compress bool) *conn {
	k := &conn{c: c, w: wire.NewWriter(c, compress), hashes: map[uint64]*hashWait{},
		acks: make(chan *wire.Ack, 4), index: make(chan []tree.Entry, 16),
		records: make(chan []tree.Record, 16), verify: make(chan *wire.VerifyResp, 1),
		hello: make(chan *wire.HelloAck, 1), dead: make(chan struct{})}
	go k.readLoop()
	return k
}

func (k *conn) fail(err error) {
	k.mu.Lock()
	if k.err == nil {
		k.err = err
		close(k.dead)
		k.c.Close()
	}
	k.mu.Unlock()
}

// Err returns why the connection died.
func (k *conn) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *conn) readLoop() {
	rd := wire.NewReader(k.c)
	for {
		f, err := rd.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			k.fail(fmt.Errorf("connection lost: %w", err))
			return
		}
		m, err := wire.Decode(f)
		if err != nil {
			k.fail(err)
			return
		}
		switch f.Type {
		case wire.THelloAck:
			k.hello <- m.(*wire.HelloAck)
		case wire.TIndexChunk:
			k.deliverIndex(append([]tree.Entry(nil), m.(*wire.Entries).List...))
		case wire.TIndexEnd:
			k.deliverIndex(nil)
		case wire.THashes:
			if err := k.deliverHashes(m.(*wire.Hashes)); err != nil {
				k.fail(err)
				return
			}
		case wire.TSyncAck:
			select {
			case k.acks <- m.(*wire.Ack):
			case <-k.dead:
				return
			}
		case wire.TVerifyRecs:
			select {
			case k.records <- m.(*wire.Records).List:
			case <-k.dead:
				return
			}
		case wire.TVerifyResp:
			k.verify <- m.(*wire.VerifyResp)
		case wire.TError:
			k.fail(fmt.Errorf("%w: %s", ErrReceiver, m.(*wire.Text).S))
			return
		default:
			k.fail(fmt.Errorf("protocol error: unexpected frame %d from receiver", f.Type))
			return
		}
	}
}

func (k *conn) deliverIndex(es []tree.Entry) {
	select {
	case k.index <- es:
	case <-k.dead:
	}
}

// send writes one frame; flush pushes it out now (requests, barriers).
func (k *conn) send(t wire.Type, m wire.Msg, flush bool) error {
	k.wmu.Lock()
	err := k.w.Send(t, m)
	if err == nil && flush {
		err = k.w.Flush()
	}
	k.wmu.Unlock()
	if err != nil {
		k.fail(fmt.Errorf("connection lost: %w", err))
		return k.Err()
	}
	return nil
}

// sent returns stream bytes written so far.
func (k *conn) sent() int64 {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	return k.w.N
}

func (k *conn) id() uint64 { return k.nextID.Add(1) }

// hashReq fetches the receiver's block sums for p.
// hashWait collects the frames of one answer; max bounds the sums taken.
type hashWait struct {
	ch  chan *wire.Hashes
	got *wire.Hashes
	max int64
}

// deliverHashes adds one Hashes frame to its answer and hands the answer
// over with its last frame.
func (k *conn) deliverHashes(h *wire.Hashes) error {
	k.mu.Lock()
	hw := k.hashes[h.ID]
	if hw != nil && !h.More {
		delete(k.hashes, h.ID)
	}
	k.mu.Unlock()
	if hw == nil {
		return fmt.Errorf("protocol error: hashes for unknown request %d", h.ID)
	}
	if hw.got == nil {
		hw.got = &wire.Hashes{ID: h.ID, Size: h.Size, Err: h.Err}
	}
	if int64(len(hw.got.Blocks)+len(h.Blocks)) > hw.max {
		// Not the file we expected (it grew): the caller copies it whole.
		hw.got.Blocks, hw.got.Err = nil, fmt.Sprintf("receiver holds more than %d blocks", hw.max)
	} else if hw.got.Err == "" {
		hw.got.Blocks = append(hw.got.Blocks, h.Blocks...)
	}
	if !h.More {
		hw.ch <- hw.got
	}
	return nil
}

// hashReq asks for the sums of p, expected to hold size bytes: the sums of
// a larger file are not kept (the answer says so in Err).
func (k *conn) hashReq(p string, size int64) (*wire.Hashes, error) {
	id := k.id()
	ch := make(chan *wire.Hashes, 1)
	k.mu.Lock()
	k.hashes[id] = &hashWait{ch: ch, max: (size + tree.BlockSize - 1) / tree.BlockSize}
	k.mu.Unlock()
	if err := k.send(wire.THashReq, &wire.HashReq{ID: id, Path: p}, true); err != nil {
		return nil, err
	}
	select {
	case h := <-ch:
		return h, nil
	case <-k.dead:
		return nil, k.Err()
	}
}

func wait[T any](k *conn, ch chan T) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-k.dead:
		// The receiver may close right after its last answer: prefer an
		// answer that arrived before the EOF over the EOF itself.
		select {
		case v := <-ch:
			return v, nil
		default:
		}
		var zero T
		return zero, k.Err()
	}
}
