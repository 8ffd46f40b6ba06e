package sender

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
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

// The receiver's records arrive before its response; explain must take
// every batch of them, though both wait on channels at once (it once took
// the response first at random and reported every path missing).
func TestExplainTakesEveryRecordBeforeTheResponse(t *testing.T) {
	var mine []tree.Record
	for i := range 3 * 16 {
		mine = append(mine, tree.Record{Path: fmt.Sprintf("f%d", i), Sum: tree.Hash{byte(i)}})
	}
	for range 50 {
		ours, theirs := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, theirs) }() // the request
		// As the reader leaves them: every batch queued, then the response.
		k := &conn{c: ours, w: wire.NewWriter(ours, false), dead: make(chan struct{}),
			records: make(chan []tree.Record, 16), verify: make(chan *wire.VerifyResp, 1)}
		for i := 0; i < len(mine); i += 3 {
			k.records <- mine[i : i+3]
		}
		k.verify <- &wire.VerifyResp{}
		err := (&Sender{}).explain(k, mine)
		var m *mismatch
		if !errors.As(err, &m) || len(m.missing)+len(m.differ)+len(m.extra) != 0 {
			t.Fatalf("the same records reported as %v", err)
		}
		ours.Close()
	}
}
