package integration_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// allocDuring returns the bytes the process allocated while fn ran.
func allocDuring(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// Each declared size, offset and count from an authenticated but hostile
// sender is checked before it costs anything: an error, never a panic, and
// nothing of a size the sender merely declared.
func TestHostileSizesAndOffsets(t *testing.T) {
	dst := t.TempDir()
	begin := func(w *wire.Writer, size int64) {
		w.Send(wire.TBegin, &wire.File{ID: 1, Entry: tree.Entry{Path: "f", Kind: tree.KindFile, Mode: 0644, Size: size}})
	}
	cases := map[string]struct {
		frames func(w *wire.Writer)
		want   string
	}{
		// Off+Len overflowed int64 and the zero-fill fallback panicked.
		"punch overflow": {func(w *wire.Writer) {
			begin(w, 10)
			w.Send(wire.TPunch, &wire.Data{ID: 1, Off: 1 << 62, Len: 1 << 62})
		}, "bad range"},
		"punch past end": {func(w *wire.Writer) {
			begin(w, 10)
			w.Send(wire.TPunch, &wire.Data{ID: 1, Off: 4, Len: wire.MaxFileSize})
		}, "outside"},
		"empty punch": {func(w *wire.Writer) {
			begin(w, 10)
			w.Send(wire.TPunch, &wire.Data{ID: 1, Off: 0, Len: 0})
		}, "outside"},
		"size beyond any filesystem": {func(w *wire.Writer) { begin(w, 1<<50) }, "bad entry"},
		"whole file larger than a chunk": {func(w *wire.Writer) {
			w.Send(wire.TFile, fileMsg("big", make([]byte, wire.ChunkSize+1)))
		}, "sent whole"},
		"frame the sender never sends": {func(w *wire.Writer) {
			w.Send(wire.TIndexChunk, &wire.Entries{List: []tree.Entry{{Path: "x", Kind: tree.KindFile}}})
		}, "unexpected frame type"},
		"huge frame of a foreign type": {func(w *wire.Writer) {
			w.Write(wire.TIndexChunk, make([]byte, wire.MaxPayload))
		}, "exceeds maximum size"},
		"second hello": {func(w *wire.Writer) {
			w.Send(wire.THello, &wire.Hello{Version: wire.Version})
		}, "Hello, once"},
	}
	for name, c := range cases {
		var err error
		alloc := allocDuring(func() { err = hostile(t, dst, false, c.frames) })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", name, err, c.want)
		}
		if alloc > 64<<20 {
			t.Errorf("%s: the session allocated %d MiB", name, alloc>>20)
		}
	}
}

// A large declared size costs O(1): sizing leaves holes, and the block sums
// of a fresh file are only kept for blocks that data arrived for. (Hashing
// a zero buffer per declared block took 1.2 s and 1 GiB per GiB declared.)
func TestDeclaredSizeCostsNothing(t *testing.T) {
	dst := t.TempDir()
	const size = 1 << 40 // 1 TiB, all holes but one block
	start := time.Now()
	var err error
	alloc := allocDuring(func() {
		err = hostile(t, dst, false, func(w *wire.Writer) {
			w.Send(wire.TBegin, &wire.File{ID: 1, Entry: tree.Entry{Path: "sparse", Kind: tree.KindFile, Mode: 0644, Size: size}})
			w.Send(wire.TData, &wire.Data{ID: 1, Off: size - tree.BlockSize, Data: bytes.Repeat([]byte("z"), tree.BlockSize)})
			w.Send(wire.TEnd, &wire.ID{ID: 1})
			w.Send(wire.TBegin, &wire.File{ID: 2, Entry: tree.Entry{Path: "big", Kind: tree.KindFile, Mode: 0644, Size: 8 << 30}})
			w.Send(wire.TData, &wire.Data{ID: 2, Off: 0, Data: bytes.Repeat([]byte("y"), tree.BlockSize)})
			w.Send(wire.TEnd, &wire.ID{ID: 2})
		})
	})
	took := time.Since(start)
	// The stream ends without a verified final sync: that is the only error.
	if err == nil || !strings.Contains(err.Error(), "closed the stream") {
		t.Fatalf("session: %v", err)
	}
	if took > 2*time.Second || alloc > 64<<20 {
		t.Errorf("1 TiB and 8 GiB declared cost %v and %d MiB", took, alloc>>20)
	}
	for name, want := range map[string]int64{"sparse": size, "big": 8 << 30} {
		st, err := os.Stat(filepath.Join(dst, name))
		if err != nil || st.Size() != want {
			t.Fatalf("%s: %v size %d, want %d", name, err, st.Size(), want)
		}
		if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
			t.Errorf("%s occupies %d bytes on disk: holes were written", name, used)
		}
	}
}

// DecodeEntries allocated one entry per payload byte before decoding any:
// an 8 MiB frame cost 896 MiB.
func TestEntryBatchAllocationBounded(t *testing.T) {
	var e wire.Enc
	e.U(wire.MaxPayload - 16) // the count a peer declares
	e.B = append(e.B, make([]byte, wire.MaxPayload-16-len(e.B))...)
	var err error
	alloc := allocDuring(func() { _, err = wire.Decode(wire.Frame{Type: wire.TIndexChunk, Payload: e.B}) })
	if err == nil {
		t.Fatal("a batch of garbage entries decoded")
	}
	if alloc > 16<<20 {
		t.Errorf("decoding one 8 MiB frame allocated %d MiB", alloc>>20)
	}
}

// Connections that never finish their TLS handshake are bounded: beyond 16
// the oldest is closed, and a sender still gets through among them.
func TestIdleHandshakesBounded(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "data"), 1<<20, 1)
	r := startReceiver(t, c, dst, false)
	const idle = 64
	var conns []net.Conn
	for range idle {
		conn, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	deadline := time.Now().Add(time.Second) // the handshake timeout is 15 s
	closed := 0
	for _, conn := range conns {
		conn.SetReadDeadline(deadline)
		if _, err := conn.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
			closed++
		}
	}
	if closed < idle-16 {
		t.Errorf("%d of %d idle connections closed within a second; at most 16 may wait", closed, idle)
	}
	if _, err := sender.Run(context.Background(), sendOpts(c, src, r.addr)); err != nil {
		t.Fatalf("sender among idle connections: %v", err)
	}
	if err := r.wait(t); err != nil {
		t.Fatal(err)
	}
	assertSame(t, src, dst)
}

// Block sums are what a receiver keeps per byte written: with a peer free
// to declare 256 GiB files and write one block at their end, they are
// bounded by the volume's size (its blocks), not by what is declared.
func TestSumsBoundedByTheVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dst := t.TempDir()
	must(t, syscall.Mount("tmpfs", dst, "tmpfs", 0, "size=64m"))
	t.Cleanup(func() { syscall.Unmount(dst, syscall.MNT_DETACH) })
	const files, size = 16, int64(tree.MaxTrackedBlocks) * tree.BlockSize // 256 GiB each
	var err error
	alloc := allocDuring(func() {
		err = hostile(t, dst, false, func(w *wire.Writer) {
			for i := range uint64(files) {
				w.Send(wire.TBegin, &wire.File{ID: i + 1, Entry: tree.Entry{Path: "f" + string(rune('a'+i)), Kind: tree.KindFile, Mode: 0644, Size: size}})
				w.Send(wire.TData, &wire.Data{ID: i + 1, Off: size - tree.BlockSize, Data: make([]byte, tree.BlockSize)})
			}
			for i := range uint64(files) {
				w.Send(wire.TEnd, &wire.ID{ID: i + 1})
			}
		})
	})
	if err == nil || !strings.Contains(err.Error(), "closed the stream") {
		t.Fatalf("session: %v", err)
	}
	t.Logf("allocated %d MiB", alloc>>20)
	// Unbounded, each file would have kept 4 Mi sums (128 MiB).
	if alloc > 256<<20 {
		t.Errorf("%d files of 256 GiB declared on a 64 MiB volume cost %d MiB", files, alloc>>20)
	}
}

// The sender keeps what a receiver lists of itself: a receiver listing more
// entries than MaxPeerEntries ends the session with a clear error, not
// retried, instead of growing the sender without bound.
func TestSenderBoundsTheReceiversIndex(t *testing.T) {
	defer func(n int) { sender.MaxPeerEntries = n }(sender.MaxPeerEntries)
	sender.MaxPeerEntries = 100
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "data"), 4096, 1)
	for i := range 300 {
		must(t, os.WriteFile(filepath.Join(dst, "stale"+strconv.Itoa(i)), nil, 0o644))
	}
	r := startReceiver(t, c, dst, false)
	_, err := sender.Run(context.Background(), sendOpts(c, src, r.addr))
	if err == nil || !errors.Is(err, sender.ErrReceiver) || !strings.Contains(err.Error(), "more than 100 entries in its index") {
		t.Fatalf("want a clear error about the receiver's index, got %v", err)
	}
}
