package sender

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// maxFinalPasses bounds retries while files still change under a final
// sync (the application should be stopped by then).
const maxFinalPasses = 3

// final copies what remains with the receiver fsyncing, then verifies.
func (s *Sender) final(ctx context.Context, k *conn) (*Result, error) {
	s.t.SetPhase(progress.FinalSync)
	for attempt := 0; ; attempt++ {
		for i := 0; i < maxFinalPasses; i++ {
			unstable, err := s.pass(ctx, k, nil, true)
			if err != nil {
				return nil, err
			}
			if !unstable {
				break
			}
		}
		s.t.SetPhase(progress.Verifying)
		d, err := s.verify(k)
		if err == nil {
			return s.done(k, d)
		}
		if !errors.Is(err, ErrMismatch) || attempt > 0 {
			return nil, err
		}
		s.t.Update(func(p *progress.Progress) { p.LastError = err.Error() })
		s.t.SetPhase(progress.FinalSync)
	}
}

func (s *Sender) verify(k *conn) (tree.Hash, error) {
	req := wire.VerifyReq{Full: s.o.FullVerify, Owners: s.owners}
	if err := k.send(wire.TVerifyReq, &req, true); err != nil {
		return tree.Hash{}, err
	}
	type local struct {
		d   tree.Hash
		rs  []tree.Record
		err error
	}
	lc := make(chan local, 1)
	go func() {
		d, rs, err := tree.VerifyEntries(s.o.Dir, s.lastScan, s.cache, s.o.FullVerify, s.owners)
		lc <- local{d, rs, err}
	}()
	resp, err := wait(k, k.verify)
	mine := <-lc
	if err != nil {
		return tree.Hash{}, err
	}
	if mine.err != nil {
		return tree.Hash{}, fmt.Errorf("verify source: %w", mine.err)
	}
	if resp.Err != "" {
		return tree.Hash{}, errReceiver("verify destination: " + resp.Err)
	}
	if resp.Digest == mine.d {
		return mine.d, nil
	}
	return tree.Hash{}, s.explain(k, mine.rs)
}

// explain fetches the receiver's records and names the differing paths.
func (s *Sender) explain(k *conn, mine []tree.Record) error {
	req := wire.VerifyReq{Full: s.o.FullVerify, Owners: s.owners, Detail: true}
	if err := k.send(wire.TVerifyReq, &req, true); err != nil {
		return err
	}
	theirs := map[string]tree.Hash{}
	for {
		select {
		case rs := <-k.records:
			for _, r := range rs {
				theirs[r.Path] = r.Sum
			}
			continue
		case <-k.verify:
		case <-k.dead:
			return k.Err()
		}
		break
	}
	var diff []string
	for _, r := range mine {
		if t, ok := theirs[r.Path]; !ok {
			diff = append(diff, r.Path+" (missing on destination)")
		} else if t != r.Sum {
			diff = append(diff, r.Path+" (differs)")
		}
		delete(theirs, r.Path)
	}
	for p := range theirs {
		diff = append(diff, p+" (extra on destination)")
	}
	sort.Strings(diff)
	if len(diff) > 10 {
		diff = append(diff[:10], fmt.Sprintf("... %d more", len(diff)-10))
	}
	return fmt.Errorf("%w: %s", ErrMismatch, strings.Join(diff, ", "))
}

func (s *Sender) done(k *conn, d tree.Hash) (*Result, error) {
	if err := k.send(wire.TDone, &wire.VerifyResp{Digest: d}, true); err != nil {
		return nil, err
	}
	ack, err := wait(k, k.acks)
	if err != nil {
		return nil, err
	}
	if ack.Err != "" {
		return nil, errReceiver(ack.Err)
	}
	hex := fmt.Sprintf("%x", d)
	s.t.Update(func(p *progress.Progress) {
		p.Digest = hex
		p.Verified = true
		p.LagBytes, p.LagSeconds = 0, 0
	})
	s.t.SetPhase(progress.Completed)
	return &Result{Digest: hex, Progress: s.t.Snapshot()}, nil
}
