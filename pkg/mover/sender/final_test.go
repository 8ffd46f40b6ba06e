package sender

import (
	"errors"
	"strings"
	"testing"
)

// A mismatch names what differs, at most ten paths, and says so when the
// receiver's full rescan agreed after all.
func TestMismatchMessage(t *testing.T) {
	m := &mismatch{differ: []string{"b"}, missing: []string{"a"}, extra: []string{"c"}}
	if got := m.Error(); !strings.Contains(got, "a (missing on destination), b (differs), c (extra on destination)") || !errors.Is(m, ErrMismatch) {
		t.Errorf("message %q", got)
	}
	var many mismatch
	for range 12 {
		many.differ = append(many.differ, "p")
	}
	if got := many.Error(); !strings.Contains(got, "... 2 more") {
		t.Errorf("twelve paths: %q", got)
	}
	if got := (&mismatch{}).Error(); !strings.Contains(got, "full rescan agrees") {
		t.Errorf("no path differs: %q", got)
	}
}
