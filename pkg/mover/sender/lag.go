package sender

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// lagOf estimates what a change to e still costs: send, the file data to
// put on the wire (a new file whole, the growth of a known large file plus
// a block, since its in-place update sends only changed blocks), and
// reread, what must be read to find those blocks (the whole large file).
func (s *Sender) lagOf(e *tree.Entry) (send, reread int64) {
	o := s.sent[e.Path]
	switch {
	case e.Kind != tree.KindFile || e.LinkTo != "":
		return 0, 0
	case o == nil || o.Kind != tree.KindFile || o.LinkTo != "":
		return e.Size, e.Size
	case o.SameContentKey(e):
		return 0, 0
	case e.Size >= DeltaMin:
		return max(e.Size-o.Size, 0) + tree.BlockSize, e.Size
	}
	return e.Size, e.Size
}

// lagProbe bounds how many dirty paths are stat'ed for the lag between passes.
const lagProbe = 10000

// updateLag reports, between passes, what inotify says is pending: the
// bytes not yet copied, the age of the oldest change, and the estimated
// final sync.
func (s *Sender) updateLag() {
	n, oldest := s.w.Pending()
	var send, reread int64
	for _, p := range s.w.Peek(lagProbe) {
		var st unix.Stat_t
		if unix.Lstat(tree.Join(s.o.Dir, p), &st) != nil {
			continue
		}
		if e, ok := tree.FromStat(p, &st); ok {
			a, b := s.lagOf(&e)
			send, reread = send+a, reread+b
		}
	}
	s.t.Update(func(p *progress.Progress) {
		p.LagBytes = send
		p.LagSeconds = 0
		if n > 0 {
			p.LagSeconds = time.Since(oldest).Seconds()
		}
		p.EstimatedFinalSeconds = s.estimate(reread)
	})
}

// estimate is the final sync's cost as measured so far: a full final pass
// scans the tree and verification scans both sides at once (about one
// scan more); a final pass over what inotify reported costs what changed
// and verification then digests every record (measured at about a quarter
// of a scan); the pending bytes are read and sent at the rate the initial
// copy reached.
func (s *Sender) estimate(pending int64) float64 {
	est := 2 * s.scanSeconds
	if s.since.exact && !s.o.FullVerify {
		est = s.scanSeconds / 4
	}
	if s.copyRate > 0 {
		est += float64(pending) / s.copyRate
	}
	return est
}
