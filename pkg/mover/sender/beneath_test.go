package sender

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// An app that swaps a directory for a symlink between the scan and the
// open must not make the sender read outside the volume (the mover's own
// container, its TLS key): the path counts as vanished, for the next pass.
// Both resolutions are tested: openat2, and the walk of kernels before 5.6.
func TestSenderNeverFollowsASwappedDirectory(t *testing.T) {
	for _, walk := range []bool{false, true} {
		base := t.TempDir()
		src, outside := filepath.Join(base, "vol"), filepath.Join(base, "outside")
		for _, d := range []string{src, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "tls.key"), []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Scanned as a directory d holding tls.key; now d leads outside.
		if err := os.Symlink(outside, filepath.Join(src, "d")); err != nil {
			t.Fatal(err)
		}
		root, err := beneath.New(src)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		if walk {
			root.ForceWalk()
		}
		s := &Sender{o: Options{Dir: src}, root: root, cache: tree.NewSumCache(0)}
		x := newXfer(s, nil) // no connection: reading the file would be the bug
		r, err := x.send(&tree.Entry{Path: "d/tls.key", Kind: tree.KindFile, Size: 6}, nil, nil)
		if err != nil || !r.vanished {
			t.Fatalf("walk=%v: read through the swapped directory: %+v, %v", walk, r, err)
		}
		// The same for a path that climbs out.
		if r, err := x.send(&tree.Entry{Path: "../outside/tls.key", Kind: tree.KindFile, Size: 6}, nil, nil); err != nil || !r.vanished {
			t.Fatalf("walk=%v: read through ..: %+v, %v", walk, r, err)
		}
	}
}
