package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

func TestInitialCopyEveryFileType(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	populate(t, src)
	r := startReceiver(t, c, dst, false)
	res, err := sender.Run(context.Background(), sendOpts(c, src, r.addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatalf("receiver: %v", err)
	}
	if len(res.Digest) != 64 || !res.Progress.Verified {
		t.Fatalf("bad result %+v", res)
	}
	assertSame(t, src, dst)
	// The independent check must be able to fail.
	os.WriteFile(filepath.Join(dst, "a/small.bin"), []byte("tampered"), 0644)
	if d := diffTrees(snapshot(t, src), snapshot(t, dst)); len(d) == 0 {
		t.Fatal("tree comparison did not notice a tampered file")
	}
}
