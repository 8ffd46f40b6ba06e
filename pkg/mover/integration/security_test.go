package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/receiver"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

func TestWrongCARefused(t *testing.T) {
	good, other := makeCreds(t), makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 100, 1)
	r := startReceiver(t, good, dst, false)
	// Client credentials from another migration's CA.
	o := sendOpts(other, src, r.addr)
	start := time.Now()
	_, err := sender.Run(context.Background(), o)
	if !errors.Is(err, transport.ErrAuth) {
		t.Fatalf("want an authentication error, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("credential errors must not be retried")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error does not say what is wrong: %v", err)
	}
	assertEmpty(t, dst)
}

func TestMissingClientCertRefused(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src, "f"), 100, 1)
	r := startReceiver(t, c, dst, false)
	full, err := transport.ClientConfig(c.client, "")
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: full.RootCAs}
	o := sendOpts(c, src, r.addr)
	o.TLSConfig = noCert
	_, err = sender.Run(context.Background(), o)
	if !errors.Is(err, transport.ErrAuth) || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("want a clear client-certificate refusal, got %v", err)
	}
	assertEmpty(t, dst)
}

func TestMissingCredentialFilesAreReported(t *testing.T) {
	_, err := transport.ServerConfig(transport.Files{CA: "x"})
	if err == nil || !strings.Contains(err.Error(), "--cert") {
		t.Fatalf("want a message naming the missing flag, got %v", err)
	}
	_, err = transport.ClientConfig(transport.Files{CA: "/nonexistent", Cert: "a", Key: "b"}, "")
	if err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("want a message about the CA file, got %v", err)
	}
}

func TestTLS12Refused(t *testing.T) {
	c := makeCreds(t)
	r := startReceiver(t, c, t.TempDir(), false)
	cfg, err := transport.ClientConfig(c.client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	conn, err := tls.Dial("tcp", r.addr, cfg)
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded")
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s is not empty: %v", dir, ents)
	}
}

// hostile drives a receiver session directly with crafted frames.
func hostile(t *testing.T, dst string, walk bool, frames func(w *wire.Writer)) error {
	t.Helper()
	r, err := receiver.New(receiver.Options{Dir: dst})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if walk {
		r.Root().ForceWalk()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, a) // drain replies
	go func() {
		w := wire.NewWriter(a, false)
		w.Send(wire.THello, &wire.Hello{Version: wire.Version})
		frames(w)
		w.Flush()
		a.(*net.TCPConn).CloseWrite() // end of the hostile stream
	}()
	errc := make(chan error, 1)
	go func() { errc <- r.ServeConn(context.Background(), b) }()
	select {
	case err := <-errc:
		a.Close()
		b.Close()
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("session hung")
		return nil
	}
}

func fileMsg(p string, data []byte) *wire.File {
	return &wire.File{Entry: tree.Entry{Path: p, Kind: tree.KindFile, Mode: 0644, Size: int64(len(data))}, Data: data}
}

func TestHostilePathsRejected(t *testing.T) {
	for _, walk := range []bool{false, true} {
		base := t.TempDir()
		dst := filepath.Join(base, "vol")
		outside := filepath.Join(base, "outside")
		must(t, os.Mkdir(dst, 0755))
		must(t, os.Mkdir(outside, 0755))
		cases := map[string]func(w *wire.Writer){
			"dotdot file": func(w *wire.Writer) { w.Send(wire.TFile, fileMsg("../outside/pwned", []byte("x"))) },
			"dotdot deep": func(w *wire.Writer) { w.Send(wire.TFile, fileMsg("a/../../outside/pwned", []byte("x"))) },
			"absolute":    func(w *wire.Writer) { w.Send(wire.TFile, fileMsg(outside+"/pwned", []byte("x"))) },
			"mkdir dotdot": func(w *wire.Writer) {
				w.Send(wire.TMkdir, &wire.EntryMsg{E: tree.Entry{Path: "../outside/dir", Kind: tree.KindDir, Mode: 0755}})
			},
			"symlink component": func(w *wire.Writer) {
				w.Send(wire.TSymlink, &wire.EntryMsg{E: tree.Entry{Path: "esc", Kind: tree.KindSymlink, Target: outside}})
				w.Send(wire.TFile, fileMsg("esc/pwned", []byte("x")))
			},
			"symlink dir component mkdir": func(w *wire.Writer) {
				w.Send(wire.TSymlink, &wire.EntryMsg{E: tree.Entry{Path: "esc2", Kind: tree.KindSymlink, Target: "../outside"}})
				w.Send(wire.TMkdir, &wire.EntryMsg{E: tree.Entry{Path: "esc2/sub", Kind: tree.KindDir, Mode: 0755}})
			},
			"symlink final component write": func(w *wire.Writer) {
				w.Send(wire.TSymlink, &wire.EntryMsg{E: tree.Entry{Path: "lnk", Kind: tree.KindSymlink, Target: outside + "/target"}})
				w.Send(wire.TBegin, &wire.File{ID: 1, Entry: tree.Entry{Path: "lnk", Kind: tree.KindFile, Size: 10}, InPlace: true})
			},
			"hard link to outside": func(w *wire.Writer) {
				w.Send(wire.TLink, &wire.EntryMsg{E: tree.Entry{Path: "h", Kind: tree.KindFile, LinkTo: "../outside/secret"}})
			},
			"rename out": func(w *wire.Writer) {
				w.Send(wire.TFile, fileMsg("in", []byte("x")))
				w.Send(wire.TRename, &wire.Rename{From: "in", To: "../outside/moved"})
			},
			"rename through symlink": func(w *wire.Writer) {
				w.Send(wire.TSymlink, &wire.EntryMsg{E: tree.Entry{Path: "esc3", Kind: tree.KindSymlink, Target: outside}})
				w.Send(wire.TFile, fileMsg("in2", []byte("x")))
				w.Send(wire.TRename, &wire.Rename{From: "in2", To: "esc3/moved"})
			},
			"delete root":    func(w *wire.Writer) { w.Send(wire.TDelete, &wire.Text{S: "."}) },
			"delete outside": func(w *wire.Writer) { w.Send(wire.TDelete, &wire.Text{S: "../outside"}) },
			"NUL in name":    func(w *wire.Writer) { w.Send(wire.TFile, fileMsg("a\x00b", []byte("x"))) },
			"huge name": func(w *wire.Writer) {
				w.Send(wire.TFile, fileMsg(strings.Repeat("n", 300), []byte("x")))
			},
			"write past end": func(w *wire.Writer) {
				w.Send(wire.TBegin, &wire.File{ID: 1, Entry: tree.Entry{Path: "big", Kind: tree.KindFile, Size: 10}})
				w.Send(wire.TData, &wire.Data{ID: 1, Off: 1 << 40, Data: []byte("x")})
			},
		}
		must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0600))
		for name, fr := range cases {
			err := hostile(t, dst, walk, fr)
			// Replacing an in-tree symlink by a directory is safe and allowed.
			t.Logf("walk=%v %s: %v", walk, name, err)
			contained := name == "rename through symlink"
			if err == nil || (!contained && strings.Contains(err.Error(), "closed the stream")) {
				t.Errorf("walk=%v %s: accepted (%v)", walk, name, err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 || ents[0].Name() != "secret" {
				t.Fatalf("walk=%v %s: something was written outside: %v", walk, name, ents)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "s" {
				t.Fatalf("walk=%v %s: outside file modified", walk, name)
			}
		}
		if _, err := os.Stat(dst); err != nil {
			t.Fatalf("root was removed: %v", err)
		}
	}
}

func TestTruncatedAndCorruptStreams(t *testing.T) {
	dst := t.TempDir()
	r, err := receiver.New(receiver.Options{Dir: dst})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var hello bytes.Buffer
	w := wire.NewWriter(&hello, false)
	w.Send(wire.THello, &wire.Hello{Version: wire.Version})
	w.Flush()
	var file bytes.Buffer
	w = wire.NewWriter(&file, false)
	w.Send(wire.TFile, fileMsg("f", bytes.Repeat([]byte("z"), 5000)))
	w.Flush()
	fb := file.Bytes()
	corrupt := append([]byte(nil), fb...)
	corrupt[8] = 9 // an entry kind that does not exist
	cases := map[string][]byte{
		"empty":            nil,
		"truncated header": fb[:3],
		"truncated body":   fb[:len(fb)-100],
		"corrupt body":     corrupt,
		"unknown type":     {0x7f, 0, 0, 0, 0},
		"oversized frame":  {byte(wire.TFile), 0xff, 0xff, 0xff, 0xff},
		"garbage":          bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 100),
	}
	for name, tail := range cases {
		in := append(append([]byte(nil), hello.Bytes()...), tail...)
		if name == "garbage" {
			in = tail
		}
		err := r.ServeConn(context.Background(), &rw{Reader: bytes.NewReader(in), Writer: io.Discard})
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

type rw struct {
	io.Reader
	io.Writer
}

// A sender routed to the receiver of another volume of the same migration
// (same credentials) is refused before anything is written, and the
// receiver goes on serving its own volume.
func TestMisroutedVolumeRefused(t *testing.T) {
	c := makeCreds(t)
	srcA, srcB, dst := t.TempDir(), t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(srcA, "a"), 4096, 1)
	writeRandom(t, filepath.Join(srcB, "b"), 4096, 2)
	writeRandom(t, filepath.Join(dst, "b"), 100, 3) // what the destination of B held
	before := snapshot(t, dst)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- receiver.Run(ctx, receiver.Options{Dir: dst, Volume: "app/b", Listener: ln, TLS: c.server})
	}()

	o := sendOpts(c, srcA, ln.Addr().String())
	o.Volume = "app/a"
	_, err = sender.Run(context.Background(), o)
	if !errors.Is(err, sender.ErrReceiver) || !strings.Contains(err.Error(), `serves "app/b"`) {
		t.Fatalf("want a wrong-volume refusal naming both volumes, got %v", err)
	}
	if d := diffTrees(before, snapshot(t, dst)); len(d) > 0 {
		t.Fatalf("refused sender changed the destination: %s", joinLines(d))
	}

	o = sendOpts(c, srcB, ln.Addr().String())
	o.Volume = "app/b"
	if _, err := sender.Run(context.Background(), o); err != nil {
		t.Fatalf("the right sender after a refused one: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertSame(t, srcB, dst)
}
