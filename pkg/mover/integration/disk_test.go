package integration_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/receiver"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

func TestFullDiskIsAClearError(t *testing.T) {
	dst := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dst).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v", err)
	}
	defer exec.Command("umount", dst).Run()
	c := makeCreds(t)
	src := t.TempDir()
	for i := range 4 {
		writeRandom(t, filepath.Join(src, "f"+string(rune('a'+i))), 1<<20, uint64(i))
	}
	r := startReceiver(t, c, dst, false)
	_, err := sender.Run(context.Background(), sendOpts(c, src, r.addr))
	if err == nil || !errors.Is(err, sender.ErrReceiver) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("want a clear disk-full error from the sender, got %v", err)
	}
	rerr := r.wait(t)
	if !errors.Is(rerr, receiver.ErrFatal) || !strings.Contains(rerr.Error(), "ENOSPC") {
		t.Fatalf("receiver should stop with ENOSPC, got %v", rerr)
	}
	_ = os.Remove
}
