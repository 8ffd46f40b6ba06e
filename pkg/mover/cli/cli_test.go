package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func run(ctx context.Context, out *syncBuf, args ...string) error {
	cmd := NewCommand()
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(out)
	return cmd.ExecuteContext(ctx)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestCLIContinuousFinishFile(t *testing.T) {
	base := t.TempDir()
	cd, src, dst := filepath.Join(base, "certs"), filepath.Join(base, "src"), filepath.Join(base, "dst")
	os.Mkdir(src, 0755)
	os.Mkdir(dst, 0755)
	os.WriteFile(filepath.Join(src, "hello"), []byte("world"), 0644)
	var out syncBuf
	if err := run(context.Background(), &out, "certs", "--out", cd); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	c := func(n string) string { return filepath.Join(cd, n) }
	rdone := make(chan error, 1)
	var rout syncBuf
	go func() {
		rdone <- run(context.Background(), &rout, "receive", "--dir", dst, "--listen", addr,
			"--ca", c("ca.crt"), "--cert", c("server.crt"), "--key", c("server.key"))
	}()
	finish := filepath.Join(base, "finish")
	os.WriteFile(finish, nil, 0644) // as the downward API projects an absent annotation
	status := filepath.Join(base, "status.json")
	sdone := make(chan error, 1)
	var sout syncBuf
	go func() {
		sdone <- run(context.Background(), &sout, "send", "--dir", src, "--to", addr, "--continuous",
			"--finish-file", finish, "--status-file", status, "--compress", "--bwlimit", "50M",
			"--progress-interval", "100ms",
			"--ca", c("ca.crt"), "--cert", c("client.crt"), "--key", c("client.key"))
	}()
	time.Sleep(700 * time.Millisecond)
	os.WriteFile(filepath.Join(src, "later"), []byte("written while continuous"), 0644)
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-sdone:
		t.Fatalf("sender ended before the finish file had content: %v\n%s", err, sout.String())
	default:
	}
	os.WriteFile(finish, []byte(time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)), 0644)
	for _, ch := range []chan error{sdone, rdone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%v\nsender:\n%s\nreceiver:\n%s", err, sout.String(), rout.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("timeout")
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "later")); string(b) != "written while continuous" {
		t.Fatal("change made during continuous mode missing")
	}
	var last progress.Progress
	sc := bufio.NewScanner(strings.NewReader(sout.String()))
	lines := 0
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "{") {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines < 3 || last.Phase != progress.Completed || !last.Verified || len(last.Digest) != 64 {
		t.Fatalf("last of %d progress lines: %+v", lines, last)
	}
	var st progress.Progress
	b, err := os.ReadFile(status)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Phase != progress.Completed || st.Digest != last.Digest {
		t.Fatalf("status file: %s (%v)", b, err)
	}
}

func TestCLIMissingCredentials(t *testing.T) {
	var out syncBuf
	err := run(context.Background(), &out, "send", "--dir", t.TempDir(), "--to", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Fatalf("want a missing-credential error naming the flag, got %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "10K": 10 << 10, "5m": 5 << 20, "1G": 1 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	if _, err := ParseBytes("-1"); err == nil {
		t.Error("negative accepted")
	}
}

// promote prints a progress line the agent reads: Completed, verified,
// the point's digest; the log's directory is gone. A plain directory is
// refused with a non-zero exit.
func TestCLIPromote(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	if err := run(context.Background(), &out, "promote", "--dir", dir); err == nil || !strings.Contains(err.Error(), "no standby point") {
		t.Fatalf("promoting a plain directory: %v", err)
	}
	root, err := safefs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	l, err := undo.Open(root, dir, os.Geteuid() == 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tree.VerifyTree(dir, os.Geteuid() == 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Mark(undo.Point{Digest: v.Digest, Owners: os.Geteuid() == 0, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	out = syncBuf{}
	if err := run(context.Background(), &out, "promote", "--dir", dir); err != nil {
		t.Fatalf("promote: %v\n%s", err, out.String())
	}
	var p progress.Progress
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := fmt.Sprintf("%x", v.Digest); p.Phase != progress.Completed || !p.Verified || p.Digest != want || p.Point == nil || p.Point.Digest != want {
		t.Fatalf("progress line %+v, want Completed, verified, digest %s\n%s", p, want, out.String())
	}
	if _, err := os.Lstat(filepath.Join(dir, undo.Dir)); !os.IsNotExist(err) {
		t.Fatalf("%s left: %v", undo.Dir, err)
	}
}
