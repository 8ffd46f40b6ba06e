package sender

import (
	"context"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

type watcher = watch.Watcher

func newWatcher(dir string) (*watcher, error) { return watch.New(dir, 0) }

// settle batches bursts of events into one pass.
const settle = 20 * time.Millisecond

// replicate keeps the receiver current until Finish: inotify's dirty paths
// drive cheap passes, and a periodic full rescan catches anything inotify
// missed (overflow, races on new directories).
func (s *Sender) replicate(ctx context.Context, k *conn) error {
	if !s.o.Continuous {
		return nil
	}
	s.t.SetPhase(progress.Syncing)
	lastFull := time.Now()
	if s.resumed {
		// Paths taken before the connection dropped may not have arrived.
		if _, err := s.pass(ctx, k, nil, false); err != nil {
			return err
		}
	}
	s.resumed = true
	refresh := time.NewTicker(500 * time.Millisecond)
	defer refresh.Stop()
	for {
		select {
		case <-s.o.Finish:
			return nil
		default:
		}
		c := s.w.Take()
		s.since.add(c)
		dirty, overflow := c.Paths, c.Overflow
		s.passOldest = watch.Oldest(dirty)
		var err error
		switch {
		case overflow || time.Since(lastFull) >= s.o.RescanInterval:
			_, err = s.pass(ctx, k, nil, false)
			lastFull = time.Now()
		case len(dirty) > 0:
			paths := make([]string, 0, len(dirty))
			for p := range dirty {
				paths = append(paths, p)
			}
			_, err = s.pass(ctx, k, paths, false)
		}
		if err != nil {
			return err
		}
		s.updateLag()
		wake := time.NewTimer(time.Until(lastFull.Add(s.o.RescanInterval)))
	wait:
		for {
			select {
			case <-s.o.Finish:
				wake.Stop()
				return nil
			case <-ctx.Done():
				wake.Stop()
				return ctx.Err()
			case <-k.dead:
				wake.Stop()
				return k.Err()
			case <-s.w.C():
				time.Sleep(settle)
				break wait
			case <-wake.C:
				break wait
			case <-refresh.C:
				s.updateLag()
			}
		}
		wake.Stop()
	}
}
