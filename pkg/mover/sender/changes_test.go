package sender

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/watch"
)

// A pass is exact only when inotify, trusted here, reported nothing since
// the pass took its changes: any write in between makes it per file.
func TestUnchangedFollowsEvents(t *testing.T) {
	dir := t.TempDir()
	w, err := watch.New(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := &Sender{w: w}
	s.since.reset(true)
	if !s.unchanged() {
		t.Fatal("nothing written, yet not unchanged")
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.unchanged() {
		t.Fatal("a write since the changes were taken went unseen")
	}
	s.since.add(w.Take())
	if !s.unchanged() {
		t.Fatal("changes taken, nothing written since, yet not unchanged")
	}
	s.since.reset(false) // a filesystem inotify does not see whole, or lost events
	if s.unchanged() {
		t.Fatal("exact without trusted events")
	}
}
