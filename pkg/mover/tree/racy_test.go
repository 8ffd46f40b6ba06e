package tree

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRacy(t *testing.T) {
	w := 10 * time.Millisecond
	now := time.Unix(1700000000, 500_000_000)
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	for _, tc := range []struct {
		name         string
		mtime, ctime int64
		taken        time.Time
		racy         bool
	}{
		{"changed long before the read", at(-time.Minute), at(-time.Minute), now, false},
		{"ctime in the read's tick", at(-time.Minute), at(-3 * time.Millisecond), now, true},
		{"mtime in the read's tick", at(-2 * time.Millisecond), at(-time.Minute), now, true},
		{"just outside the window", at(-11 * time.Millisecond), at(-11 * time.Millisecond), now, false},
		{"mtime set into the future", at(time.Hour), at(-time.Minute), now, false},
		{"whole-second ctime within a second", at(-time.Minute), time.Unix(1700000000, 0).UnixNano(), now, true},
		{"sums the caller wrote itself", at(-time.Millisecond), at(-time.Millisecond), time.Time{}, false},
	} {
		if got := Racy(StatKey{Mtime: tc.mtime, Ctime: tc.ctime}, tc.taken, w); got != tc.racy {
			t.Errorf("%s: Racy = %v, want %v", tc.name, got, tc.racy)
		}
	}
}

func TestSumCacheNeverReturnsRacySums(t *testing.T) {
	c := NewSumCache(10 * time.Millisecond)
	now := time.Now()
	k := StatKey{Size: 1, Mtime: now.Add(-time.Millisecond).UnixNano(), Ctime: now.Add(-time.Millisecond).UnixNano()}
	c.Put(1, k, []Hash{{1}}, now)
	if _, ok := c.Get(1, k); ok {
		t.Fatal("sums read in the tick of the file's last change were trusted")
	}
	c.Put(1, k, []Hash{{1}}, now.Add(time.Second))
	if _, ok := c.Get(1, k); !ok {
		t.Fatal("sums read well after the last change were not trusted")
	}
	if _, ok := c.Get(1, StatKey{Size: 2}); ok {
		t.Fatal("sums returned for another key")
	}
}

// A rescan of one directory (the continuous sender rescans what inotify
// marked) resolves it beneath the root: a symlink swapped in on the way is
// not followed, so nothing outside the volume is listed or sent.
func TestScanStaysBeneathRoot(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "vol"), filepath.Join(base, "outside")
	for _, d := range []string{root, filepath.Join(outside, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "sub", "tls.key"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"link/sub", "link/sub/tls.key", "../outside/sub"} {
		es, err := Scan(root, sub, nil)
		if err != nil || len(es) != 0 {
			t.Errorf("Scan(%q) listed %d entries outside the root (%v)", sub, len(es), err)
		}
	}
}
