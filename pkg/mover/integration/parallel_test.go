package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// Small files are applied by parallel workers; renames, deletes and links
// must still see every file sent before them, and a renamed directory must
// not keep receiving files through a stale handle.
func TestParallelApplyKeepsOrder(t *testing.T) {
	dst := t.TempDir()
	dir := func(p string) *wire.EntryMsg {
		return &wire.EntryMsg{E: tree.Entry{Path: p, Kind: tree.KindDir, Mode: 0755}}
	}
	hostile(t, dst, false, func(w *wire.Writer) {
		for _, d := range []string{"a", "b"} {
			w.Send(wire.TMkdir, dir(d))
			for i := range 300 {
				w.Send(wire.TFile, fileMsg(fmt.Sprintf("%s/f%d", d, i), []byte(d)))
			}
		}
		// The worker of "b" last held a handle on "b".
		w.Send(wire.TRename, &wire.Rename{From: "b", To: "c"})
		w.Send(wire.TMkdir, dir("b"))
		w.Send(wire.TFile, fileMsg("b/new", []byte("new")))
		w.Send(wire.TDelete, &wire.Text{S: "a/f7"})
		w.Send(wire.TLink, &wire.EntryMsg{E: tree.Entry{Path: "a/link", Kind: tree.KindFile, LinkTo: "a/f299"}})
		w.Send(wire.TFile, fileMsg("a/f8", []byte("second")))
	})
	for name, want := range map[string]int{"a": 300, "b": 1, "c": 300} {
		ents, err := os.ReadDir(filepath.Join(dst, name))
		if err != nil || len(ents) != want {
			t.Errorf("%s: %d entries (%v), want %d", name, len(ents), err, want)
		}
	}
	for p, want := range map[string]string{"b/new": "new", "c/f299": "b", "a/link": "a", "a/f8": "second"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", p, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "a/f7")); !os.IsNotExist(err) {
		t.Errorf("a/f7 survived its deletion: %v", err)
	}
}
