package integration_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

func TestBlockImageContinuous(t *testing.T) {
	c := makeCreds(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	const size, hot = 16 << 20, 1 << 20
	writeRandom(t, src, size, 5)
	// A stale destination image with some right and some wrong content.
	b, _ := os.ReadFile(src)
	copy(b[1<<20:], bytes.Repeat([]byte{1}, 3<<20))
	must(t, os.WriteFile(dst, b[:12<<20], 0644))

	r := startReceiver(t, c, dst, true)
	finish := make(chan struct{})
	o := sendOpts(c, src, r.addr)
	o.Block, o.Continuous, o.Finish, o.RescanInterval = true, true, finish, 100*time.Millisecond
	done := make(chan error, 1)
	var res *sender.Result
	go func() {
		var err error
		res, err = sender.Run(context.Background(), o)
		done <- err
	}()
	// The "application" keeps writing blocks of the raw volume.
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	must(t, err)
	rnd := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			for i := range buf {
				buf[i] = byte(rnd.Uint32())
			}
			f.WriteAt(buf, int64(rnd.IntN(hot/4096))*4096) // a hot region, like a journal
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	f.Close()
	want, _ := os.ReadFile(src)
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(want, got) {
		t.Fatalf("block image differs (len %d vs %d)", len(want), len(got))
	}
	if res.Progress.Passes < 3 {
		t.Fatalf("expected periodic block passes, got %d", res.Progress.Passes)
	}
	// 9 MiB of the destination was already right and later passes only
	// resend the hot region: 7 MiB + at most 1 MiB per pass.
	if max := int64(7<<20) + res.Progress.Passes*hot; res.Progress.BytesCopied > max {
		t.Fatalf("copied %d bytes, more than the %d that differed", res.Progress.BytesCopied, max)
	}
	if res.Progress.BytesCopied < 7<<20 {
		t.Fatalf("copied only %d bytes, less than the 7 MiB that differed", res.Progress.BytesCopied)
	}
}

func TestBlockDeviceSizeMismatchIsClear(t *testing.T) {
	c := makeCreds(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	writeRandom(t, src, 1<<20, 5)
	r := startReceiver(t, c, dir, false) // a tree receiver
	o := sendOpts(c, src, r.addr)
	o.Block = true
	_, err := sender.Run(context.Background(), o)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("volume mode mismatch")) {
		t.Fatalf("want a mode mismatch error, got %v", err)
	}
}
