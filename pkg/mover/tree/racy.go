package tree

import (
	"time"

	"golang.org/x/sys/unix"
)

// DefaultWindow is the racily-clean window: twice the coarse clock's tick,
// the step by which file timestamps move on kernels without multigrain
// timestamps (Linux before 6.13, and filesystems that never got them), and
// at least 10 ms.
func DefaultWindow() time.Duration {
	tick := 10 * time.Millisecond // HZ=100, the coarsest common setting
	var ts unix.Timespec
	if unix.ClockGetres(unix.CLOCK_REALTIME_COARSE, &ts) == nil && ts.Nano() > 0 {
		tick = time.Duration(ts.Nano())
	}
	return max(2*tick, 10*time.Millisecond)
}

// Racy reports whether a read of a file with key k that started at taken
// may have missed a later write that left k unchanged: the file changed
// within window of the read. A ctime on a whole second may come from a
// filesystem with second granularity, so it gets a second. A zero taken is
// never racy (see SumCache.Put); an mtime set into the future is not a
// recent change (ctime still tells).
func Racy(k StatKey, taken time.Time, window time.Duration) bool {
	if taken.IsZero() {
		return false
	}
	w := window
	if k.Ctime%int64(time.Second) == 0 {
		w = max(w, time.Second)
	}
	now := taken.UnixNano()
	recent := func(ts int64) bool { return ts >= now-int64(w) && ts <= now+int64(w) }
	return recent(k.Ctime) || recent(k.Mtime)
}
