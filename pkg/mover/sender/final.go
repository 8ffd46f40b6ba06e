package sender

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// maxFinalPasses bounds retries while files still change under a final
// sync (the application should be stopped by then).
const maxFinalPasses = 3

// quiesceSlack allows for the hub's clock (quiesce start) running ahead of
// the node's (file timestamps).
const quiesceSlack = time.Second

// final copies what remains with the receiver fsyncing, then verifies. A
// difference found by verification is repaired once: the differing paths
// are resent whole, as if the receiver had never had them, and verified
// again. Only a second difference fails.
func (s *Sender) final(ctx context.Context, k *conn) (*Result, error) {
	if s.o.QuiesceStart != nil {
		if q := s.o.QuiesceStart(); !q.IsZero() {
			s.forceSince = q.Add(-s.cache.Window() - quiesceSlack).UnixNano()
		}
	}
	s.t.Update(func(p *progress.Progress) { p.FinalSyncCold = s.cold })
	s.t.SetPhase(progress.FinalSync)
	// The app has stopped: past one window, no read of its last writes is
	// racily clean, so the final pass need not be repeated for them.
	time.Sleep(s.cache.Window())
	for attempt := 0; ; attempt++ {
		for i := 0; i < maxFinalPasses; i++ {
			unstable, err := s.finalPass(ctx, k, attempt == 0)
			s.forceSince = 0 // reread once: what changed since the quiesce start
			if err != nil {
				return nil, err
			}
			if !unstable {
				break
			}
			// Racily clean reads become trustworthy once the window passed.
			time.Sleep(s.cache.Window())
		}
		if err := s.relist(ctx, k); err != nil {
			return nil, err
		}
		s.t.SetPhase(progress.Verifying)
		d, err := s.verify(k)
		if err == nil {
			return s.done(k, d)
		}
		var mm *mismatch
		if !errors.As(err, &mm) || attempt > 0 {
			return nil, err
		}
		s.t.Update(func(p *progress.Progress) { p.LastError = err.Error(); p.Repairs++ })
		s.repair(mm)
		s.t.SetPhase(progress.FinalSync)
	}
}

// mismatch lists the paths whose verification records differ.
type mismatch struct {
	differ, missing, extra []string
}

func (m *mismatch) Unwrap() error { return ErrMismatch }

func (m *mismatch) Error() string {
	var diff []string
	for _, l := range []struct {
		ps  []string
		why string
	}{{m.differ, "differs"}, {m.missing, "missing on destination"}, {m.extra, "extra on destination"}} {
		for _, p := range l.ps {
			diff = append(diff, p+" ("+l.why+")")
		}
	}
	if len(diff) == 0 {
		// The receiver's digest came from its view of its volume; the
		// records it then listed come from a full scan, and agree.
		return fmt.Sprintf("%v: the receiver's first digest differed, its full rescan agrees", ErrMismatch)
	}
	sort.Strings(diff)
	if len(diff) > 10 {
		diff = append(diff[:10], fmt.Sprintf("... %d more", len(diff)-10))
	}
	return fmt.Sprintf("%v: %s", ErrMismatch, strings.Join(diff, ", "))
}

// repair forgets what the sender believed the receiver holds for every
// differing path, and the sums it had for the source, so that the next
// pass resends them whole and verification rereads them; a path only the
// receiver has is deleted by that pass.
func (s *Sender) repair(m *mismatch) {
	s.lastScanAt = time.Time{} // every attribute is listed again
	ino := map[string]uint64{}
	for i := range s.lastScan {
		ino[s.lastScan[i].Path] = s.lastScan[i].Ino
	}
	for _, p := range append(append([]string(nil), m.differ...), m.missing...) {
		if n := ino[p]; n != 0 {
			s.cache.Drop(n)
		}
		if e := s.sent[p]; e != nil && e.Kind == tree.KindDir {
			c := *e
			c.Mtime = -1 // its metadata goes again; its entries have records of their own
			s.sent[p] = &c
			continue
		}
		s.forget(p)
	}
	for _, p := range m.extra {
		if s.sent[p] == nil {
			s.sent[p] = &tree.Entry{Path: p, Kind: tree.KindFile, Mtime: -1}
		}
	}
}

func (s *Sender) verify(k *conn) (tree.Hash, error) {
	req := wire.VerifyReq{Full: s.o.FullVerify, Owners: s.owners}
	if err := k.send(wire.TVerifyReq, &req, true); err != nil {
		return tree.Hash{}, err
	}
	type local struct {
		v   *tree.Verification
		err error
	}
	lc := make(chan local, 1)
	go func() {
		v, err := tree.VerifyEntries(s.o.Dir, s.lastScan, s.cache, s.o.FullVerify, s.owners)
		lc <- local{v, err}
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
	if resp.Digest == mine.v.Digest {
		return mine.v.Digest, nil
	}
	return tree.Hash{}, s.explain(k, mine.v.Records())
}

// explain fetches the receiver's records and names the differing paths.
func (s *Sender) explain(k *conn, mine []tree.Record) error {
	req := wire.VerifyReq{Full: s.o.FullVerify, Owners: s.owners, Detail: true}
	if err := k.send(wire.TVerifyReq, &req, true); err != nil {
		return err
	}
	theirs := map[string]tree.Hash{}
	take := func(rs []tree.Record) error {
		if len(theirs)+len(rs) > MaxPeerEntries {
			return tooManyEntries("verification records")
		}
		for _, r := range rs {
			theirs[r.Path] = r.Sum
		}
		return nil
	}
	for done := false; !done; {
		select {
		case rs := <-k.records:
			if err := take(rs); err != nil {
				return err
			}
		case <-k.verify:
			// The reader queued every batch of records before the response,
			// but select picks among ready channels at random: take the
			// batches still queued before reading theirs.
			for queued := true; queued; {
				select {
				case rs := <-k.records:
					if err := take(rs); err != nil {
						return err
					}
				default:
					queued = false
				}
			}
			done = true
		case <-k.dead:
			return k.Err()
		}
	}
	m := &mismatch{}
	for _, r := range mine {
		if t, ok := theirs[r.Path]; !ok {
			m.missing = append(m.missing, r.Path)
		} else if t != r.Sum {
			m.differ = append(m.differ, r.Path)
		}
		delete(theirs, r.Path)
	}
	for p := range theirs {
		m.extra = append(m.extra, p)
	}
	return m
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
