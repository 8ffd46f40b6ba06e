// Package progress reports a mover's state to the Kubernetes agent: as a Go
// value through a callback, as JSON lines, and as an atomically replaced
// status file.
package progress

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Phase is the mover's lifecycle step.
type Phase string

// Phases, in order for a sender; a receiver reports Listening then Receiving.
const (
	Connecting  Phase = "Connecting"
	InitialSync Phase = "InitialSync"
	Syncing     Phase = "Syncing"
	FinalSync   Phase = "FinalSync"
	Verifying   Phase = "Verifying"
	Completed   Phase = "Completed"
	Failed      Phase = "Failed"
	Listening   Phase = "Listening"
	Receiving   Phase = "Receiving"
)

// Progress is one snapshot. Byte counts are file data (BytesCopied) and
// stream bytes after compression (BytesSent).
type Progress struct {
	Role           string    `json:"role"`
	Phase          Phase     `json:"phase"`
	Time           time.Time `json:"time"`
	BytesTotal     int64     `json:"bytesTotal"`
	BytesCopied    int64     `json:"bytesCopied"`
	BytesSent      int64     `json:"bytesSent"`
	FilesTotal     int64     `json:"filesTotal"`
	FilesCopied    int64     `json:"filesCopied"`
	Passes         int64     `json:"passes"`
	LagBytes       int64     `json:"lagBytes"`
	LagSeconds     float64   `json:"lagSeconds"`
	ThroughputBps  float64   `json:"throughputBytesPerSecond"`
	LastPassSecond float64   `json:"lastPassSeconds"`
	// EstimatedFinalSeconds is what the final sync and its verification
	// would take now: the scans of both sides, the pending bytes, the
	// rereads (block volumes: two full reads).
	EstimatedFinalSeconds float64 `json:"estimatedFinalSyncSeconds"`
	Reconnects            int64   `json:"reconnects"`
	// FinalSyncCold: the final sync ran in a sender that had not caught up
	// before it was asked to finish (it started or restarted after the app
	// stopped), so it rescanned and rehashed the whole volume.
	FinalSyncCold bool `json:"finalSyncCold,omitempty"`
	// ExactPasses counts the sender's passes that read the source at one
	// instant (nothing changed during them): a standby commits those as
	// exact points.
	ExactPasses int64 `json:"exactPasses,omitempty"`
	// FinalPassFull: the final pass scanned the whole volume rather than
	// what inotify reported changed (cold, events lost, a filesystem other
	// hosts write to, a full verification, or a repair).
	FinalPassFull bool `json:"finalPassFull,omitempty"`
	// UnseenChange is a path a periodic full rescan found changed with no
	// inotify event for it: from then on the final pass scans everything.
	UnseenChange string `json:"unseenChange,omitempty"`
	// Repairs counts verification differences repaired by resending.
	Repairs int64 `json:"repairs,omitempty"`
	// PeakRSSBytes is the process's peak resident memory so far (VmHWM):
	// what the mover pod's memory limit must leave room for.
	PeakRSSBytes int64  `json:"peakRSSBytes,omitempty"`
	LastError    string `json:"lastError,omitempty"`
	Digest       string `json:"digest,omitempty"`
	Verified     bool   `json:"verified"`
	// Point is a standby receiver's (receive --points) last committed
	// pass: what a failover would start from.
	Point *Point `json:"point,omitempty"`
}

// Point is a committed pass of a standby volume.
type Point struct {
	Time   time.Time `json:"time"`
	Digest string    `json:"digest"`
	// Exact: the source held this at Time; else it is per file (undo.Point).
	Exact bool `json:"exact,omitempty"`
}

// Tracker accumulates progress; all methods are safe for concurrent use.
type Tracker struct {
	mu       sync.Mutex
	p        Progress
	notify   func(Progress)
	lastT    time.Time
	lastB    int64
	Interval time.Duration
}

// NewTracker returns a tracker calling notify (may be nil) on every phase
// change and periodically once Run is started.
func NewTracker(role string, notify func(Progress)) *Tracker {
	return &Tracker{p: Progress{Role: role}, notify: notify, lastT: time.Now(), Interval: time.Second}
}

// Update changes the snapshot under the lock.
func (t *Tracker) Update(f func(p *Progress)) {
	t.mu.Lock()
	f(&t.p)
	t.mu.Unlock()
}

// AddCopied counts file data written to the stream.
func (t *Tracker) AddCopied(bytes, files int64) {
	t.mu.Lock()
	t.p.BytesCopied += bytes
	t.p.FilesCopied += files
	t.mu.Unlock()
}

// SetPhase switches phase and reports at once.
func (t *Tracker) SetPhase(ph Phase) {
	t.mu.Lock()
	changed := t.p.Phase != ph
	t.p.Phase = ph
	t.mu.Unlock()
	if changed {
		t.Emit()
	}
}

// Fail records err and the Failed phase.
func (t *Tracker) Fail(err error) {
	t.mu.Lock()
	t.p.LastError = err.Error()
	t.p.Phase = Failed
	t.mu.Unlock()
	t.Emit()
}

// Snapshot returns the current progress with a fresh throughput figure.
func (t *Tracker) Snapshot() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if dt := now.Sub(t.lastT).Seconds(); dt >= 0.5 {
		t.p.ThroughputBps = float64(t.p.BytesCopied-t.lastB) / dt
		t.lastT, t.lastB = now, t.p.BytesCopied
	}
	t.p.Time = now.UTC()
	t.p.PeakRSSBytes = PeakRSS()
	return t.p
}

// PeakRSS reads this process's peak resident set size (0 where /proc is
// not mounted).
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Emit sends a snapshot to the callback.
func (t *Tracker) Emit() {
	if t.notify != nil {
		t.notify(t.Snapshot())
	}
}

// Run emits every Interval until done is closed.
func (t *Tracker) Run(done <-chan struct{}) {
	tk := time.NewTicker(t.Interval)
	defer tk.Stop()
	for {
		select {
		case <-done:
			return
		case <-tk.C:
			t.Emit()
		}
	}
}

// JSONLines returns a callback writing one JSON object per line to w.
func JSONLines(w io.Writer) func(Progress) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(p Progress) {
		mu.Lock()
		enc.Encode(p)
		mu.Unlock()
	}
}

// StatusFile returns a callback replacing path atomically with the latest
// snapshot (write to a temp file, then rename), so readers never see a
// partial document.
func StatusFile(path string) func(Progress) {
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.MarshalIndent(p, "", "  ")
		tmp, err := os.CreateTemp(filepath.Dir(path), ".status-*")
		if err != nil {
			return
		}
		_, err = tmp.Write(append(b, '\n'))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
}

// Tee fans a snapshot out to several callbacks.
func Tee(fs ...func(Progress)) func(Progress) {
	return func(p Progress) {
		for _, f := range fs {
			if f != nil {
				f(p)
			}
		}
	}
}
