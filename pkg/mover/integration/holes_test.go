package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

// A destination filesystem that cannot punch holes (ramfs; older or
// network filesystems) gets zeros written instead, a chunk at a time, and
// the copy still verifies: a hole and written zeros read the same.
func TestHolesOnAFilesystemWithoutHoles(t *testing.T) {
	dst := mountRamfs(t)
	src := t.TempDir()
	p := filepath.Join(src, "db")
	writeRandom(t, p, 4<<20, 7)
	c := makeCreds(t)
	r := startReceiver(t, c, dst, false)
	if _, err := sender.Run(context.Background(), sendOpts(c, src, r.addr)); err != nil {
		t.Fatal(err)
	}
	must(t, r.wait(t))

	// The app frees 1 MiB in the middle: the next copy punches it.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	must(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20))
	f.Close()
	r = startReceiver(t, c, dst, false)
	res, err := sender.Run(context.Background(), sendOpts(c, src, r.addr))
	if err != nil {
		t.Fatalf("copy with a hole onto ramfs: %v", err)
	}
	must(t, r.wait(t))
	assertSame(t, src, dst)
	if res.Progress.BytesCopied >= 1<<20 {
		t.Errorf("the hole was sent as data (%d bytes copied)", res.Progress.BytesCopied)
	}
}
