package receiver

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// Paths and values a program picks from: ordinary ones and every kind of
// escape the receiver must refuse.
var (
	fuzzPaths   = []string{"a", "a/b", "d", "d/e", "l", "l/x", ".", "big", "../outside/x", "a/../../outside/y", "/abs"}
	fuzzTargets = []string{"a", "../outside", "/", "d/e"}
	fuzzSizes   = []int64{0, 1, 4095, tree.BlockSize, wire.ChunkSize + 1, 1 << 40, wire.MaxFileSize, 1 << 62}
)

// program turns fuzz bytes into a well-framed session: Hello, then one
// message per opcode, its operands taken from the following bytes.
func program(in []byte) []byte {
	var out bytes.Buffer
	w := wire.NewWriter(&out, false)
	w.Send(wire.THello, &wire.Hello{Version: wire.Version})
	next := func() int {
		if len(in) == 0 {
			return 0
		}
		b := in[0]
		in = in[1:]
		return int(b)
	}
	path := func() string { return fuzzPaths[next()%len(fuzzPaths)] }
	size := func() int64 { return fuzzSizes[next()%len(fuzzSizes)] }
	entry := func(k tree.Kind) tree.Entry {
		return tree.Entry{Path: path(), Kind: k, Mode: uint32(next()) | 0o600, Size: size()}
	}
	for len(in) > 0 {
		switch next() % 16 {
		case 0:
			w.Send(wire.TMkdir, &wire.EntryMsg{E: entry(tree.KindDir)})
		case 1:
			e := entry(tree.KindSymlink)
			e.Target = fuzzTargets[next()%len(fuzzTargets)]
			w.Send(wire.TSymlink, &wire.EntryMsg{E: e})
		case 2:
			e := entry(tree.KindFile)
			n := min(e.Size, int64(next()*64))
			w.Send(wire.TFile, &wire.File{Entry: e, Data: make([]byte, n)})
		case 3:
			w.Send(wire.TBegin, &wire.File{ID: uint64(next() % 4), Entry: entry(tree.KindFile), InPlace: next()%2 == 0})
		case 4:
			w.Send(wire.TData, &wire.Data{ID: uint64(next() % 4), Off: size(), Data: make([]byte, next()*256)})
		case 5:
			w.Send(wire.TPunch, &wire.Data{ID: uint64(next() % 4), Off: size(), Len: size()})
		case 6:
			w.Send(wire.TEnd, &wire.ID{ID: uint64(next() % 4)})
		case 7:
			w.Send(wire.TDelete, &wire.Text{S: path()})
		case 8:
			w.Send(wire.TRename, &wire.Rename{From: path(), To: path()})
		case 9:
			e := entry(tree.KindFile)
			e.LinkTo = path()
			w.Send(wire.TLink, &wire.EntryMsg{E: e})
		case 10:
			w.Send(wire.TMeta, &wire.EntryMsg{E: entry(tree.KindFile)})
		case 11:
			w.Send(wire.THashReq, &wire.HashReq{ID: 1, Path: path()})
		case 12:
			w.Send(wire.TSync, &wire.Sync{Final: next()%2 == 0})
		case 13:
			w.Send(wire.TVerifyReq, &wire.VerifyReq{})
		case 14:
			w.Send(wire.TNode, &wire.EntryMsg{E: entry(tree.KindFifo)})
		case 15:
			w.Send(wire.TIndexReq, wire.Empty{})
		}
	}
	w.Flush()
	return out.Bytes()
}

type fuzzConn struct {
	io.Reader
	io.Writer
}

// FuzzApply plays sequences of messages against a real directory: whatever
// an authenticated peer sends, the receiver never panics, changes nothing
// outside its root, and stays within its memory bound.
func FuzzApply(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 0, 2, 1, 0, 3, 3, 0, 7, 1, 4, 4, 0, 3, 10, 6, 0, 12, 0, 13},            // dir, file, large file, sync, verify
		{1, 4, 0, 1, 2, 2, 5, 1, 10, 6, 1},                                            // symlink then writes through it
		{3, 1, 7, 0, 1, 5, 1, 6, 6, 6, 1},                                             // punch with overflowing range
		{3, 2, 8, 5, 3, 1, 4, 2, 5, 200, 6, 2, 11, 8},                                 // escape through .. and hash it
		{0, 0, 0, 1, 8, 0, 1, 2, 14, 3, 0, 0, 8, 3, 4, 9, 4, 0, 0, 1, 7, 6, 15, 7, 2}, // fifo, link, rename, delete
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		base := t.TempDir()
		vol, outside := filepath.Join(base, "vol"), filepath.Join(base, "outside")
		for _, d := range []string{vol, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := New(Options{Dir: vol})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if len(prog) > 0 && prog[0]%2 == 1 {
			r.Root().ForceWalk() // kernels without openat2
		}
		r.ServeConn(context.Background(), fuzzConn{bytes.NewReader(program(prog)), io.Discard})

		ents, err := os.ReadDir(outside)
		if err != nil || len(ents) != 1 || ents[0].Name() != "secret" {
			t.Fatalf("something changed outside the root: %v %v", ents, err)
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "s" {
			t.Fatal("a file outside the root was modified")
		}
		if st, err := os.Stat(vol); err != nil || !st.IsDir() {
			t.Fatalf("the root itself is gone: %v", err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > 512<<20 {
			t.Fatalf("heap in use %d MiB after one session", ms.HeapInuse>>20)
		}
	})
}
