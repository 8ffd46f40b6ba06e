package decision

import (
	"sync"
	"testing"
	"time"
)

// Read-modify-writes of one Placement under Hold never interleave; other
// Placements are not held up by them; no entry outlives its holders.
func TestHoldSerialisesOnePlacement(t *testing.T) {
	var shared int
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer Hold("ns", "web")()
			read := shared
			time.Sleep(time.Millisecond) // another writer would read the same value now
			shared = read + 1
		}()
	}
	release := Hold("ns", "web")
	other := make(chan struct{})
	go func() { defer close(other); Hold("ns", "db")() }()
	select {
	case <-other:
	case <-time.After(5 * time.Second):
		t.Fatal("another Placement waited for this one")
	}
	release()
	wg.Wait()
	if shared != 20 {
		t.Fatalf("20 read-modify-writes left %d", shared)
	}
	holds.mu.Lock()
	defer holds.mu.Unlock()
	if len(holds.m) != 0 {
		t.Fatalf("entries left: %v", holds.m)
	}
}
