package sender

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/block"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// blockState is the raw-volume counterpart of the tree index: the sums of
// what the receiver holds.
type blockState struct {
	f        *os.File
	destSize int64
	known    []tree.Hash
	last     []tree.Hash
	size     int64
}

// blockSession replicates a device or image: each pass rereads the source
// (there is no change notification for raw devices) and sends only blocks
// whose sums differ from the receiver's.
func (s *Sender) blockSession(ctx context.Context, k *conn) (*Result, error) {
	b := s.blk
	size, err := block.Size(b.f)
	if err != nil {
		return nil, err
	}
	b.size = size
	s.t.Update(func(p *progress.Progress) { p.BytesTotal = size; p.FilesTotal = 1 })
	if b.known == nil {
		h, err := k.hashReq(".", max(size, b.destSize)) // the receiver hashes its whole device
		if err != nil {
			return nil, err
		}
		if h.Err != "" {
			return nil, errReceiver(h.Err)
		}
		b.known = h.Blocks
	}
	if !s.initial {
		s.t.SetPhase(progress.InitialSync)
		if err := s.blockPass(k, false); err != nil {
			return nil, err
		}
		s.initial = true
	}
	if s.o.Continuous {
		s.t.SetPhase(progress.Syncing)
		tick := time.NewTicker(s.o.RescanInterval)
		defer tick.Stop()
	loop:
		for {
			select {
			case <-s.o.Finish:
				break loop
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-k.dead:
				return nil, k.Err()
			case <-tick.C:
				if err := s.blockPass(k, false); err != nil {
					return nil, err
				}
			}
		}
	}
	s.t.SetPhase(progress.FinalSync)
	if err := s.blockPass(k, true); err != nil {
		return nil, err
	}
	s.t.SetPhase(progress.Verifying)
	if err := k.send(wire.TVerifyReq, &wire.VerifyReq{Full: true, Size: size}, true); err != nil {
		return nil, err
	}
	resp, err := wait(k, k.verify)
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, errReceiver("verify destination: " + resp.Err)
	}
	mine := block.Digest(b.last, size)
	if resp.Digest != mine {
		return nil, fmt.Errorf("%w: block volume digests %x (source) and %x (destination)", ErrMismatch, mine, resp.Digest)
	}
	return s.done(k, mine)
}

func (s *Sender) blockPass(k *conn, final bool) error {
	b := s.blk
	start := time.Now()
	var before int64
	s.t.Update(func(p *progress.Progress) { before = p.BytesCopied })
	r := xferResult{entry: tree.Entry{Path: ".", Kind: tree.KindFile, Size: b.size}}
	x := newXfer(s, k)
	if err := x.large(b.f, &r, true, b.known); err != nil {
		return err
	}
	if err := s.barrier(k, final, false); err != nil {
		return err
	}
	b.known, b.last = r.blocks, r.blocks
	// No change notification on a raw volume: what the last interval
	// changed is what the next one will have changed, a change waits up to
	// an interval, and the final sync rereads the volume on both sides.
	s.t.Update(func(p *progress.Progress) {
		p.Passes++
		p.LastPassSecond = time.Since(start).Seconds()
		p.LagBytes = p.BytesCopied - before
		p.LagSeconds = s.o.RescanInterval.Seconds()
		p.EstimatedFinalSeconds = 2 * p.LastPassSecond
	})
	return nil
}
