package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/cli"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/receiver"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
)

// execArgs, set in the environment, makes the test binary run the mover
// command with these arguments (separated by newlines) instead of the
// tests: a receiver process a test can kill.
const execArgs = "MOVER_TEST_EXEC"

func TestMain(m *testing.M) {
	if args := os.Getenv(execArgs); args != "" {
		cmd := cli.NewCommand()
		cmd.SetArgs(strings.Split(args, "\n"))
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A standby receiver process killed (SIGKILL) at any moment of a pass —
// small files being replaced by its workers, a large file rewritten in
// place, trees removed and made — leaves a volume that `promote` rolls
// back to the last committed pass, byte for byte, metadata included.
func TestStandbySurvivesAKilledReceiver(t *testing.T) {
	c := makeCreds(t)
	srcA, srcB := t.TempDir(), t.TempDir()
	must(t, os.MkdirAll(filepath.Join(srcA, "many"), 0o755))
	must(t, os.MkdirAll(filepath.Join(srcA, "old/sub"), 0o755))
	writeRandom(t, filepath.Join(srcA, "db"), 48<<20, 1)
	writeRandom(t, filepath.Join(srcA, "old/sub/f"), 5000, 2)
	for i := range 400 {
		must(t, os.WriteFile(filepath.Join(srcA, fmt.Sprintf("many/f%03d", i)), []byte(fmt.Sprintf("file %d before", i)), 0o644))
	}
	must(t, exec.Command("cp", "-a", srcA+"/.", srcB).Run())
	f, err := os.OpenFile(filepath.Join(srcB, "db"), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(randomBytes(24<<20, 3), 8<<20)
	must(t, err)
	must(t, f.Close())
	for i := range 400 {
		must(t, os.WriteFile(filepath.Join(srcB, fmt.Sprintf("many/f%03d", i)), []byte(fmt.Sprintf("file %d after", i)), 0o644))
	}
	must(t, os.RemoveAll(filepath.Join(srcB, "old")))
	must(t, os.MkdirAll(filepath.Join(srcB, "new/sub"), 0o700))
	writeRandom(t, filepath.Join(srcB, "new/sub/g"), 300<<10, 4)

	// An uncut pass first: how long one takes, and that it commits B.
	dst := t.TempDir()
	standbyCopy(t, c, srcA, dst, 0)
	start := time.Now()
	if killed := standbyCopy(t, c, srcB, dst, 0); killed {
		t.Fatal("an uncut pass was killed")
	}
	full := time.Since(start)
	b := promoteAndCompare(t, dst, func(undo.Point) string { return srcB })

	cut := 0
	for _, frac := range []float64{0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9} {
		dst := t.TempDir()
		standbyCopy(t, c, srcA, dst, 0)
		if standbyCopy(t, c, srcB, dst, time.Duration(frac*float64(full))) && pending(dst) {
			cut++
		}
		// B once its pass committed (the kill may come after the commit),
		// A before.
		promoteAndCompare(t, dst, func(pt undo.Point) string {
			if pt.Digest == b.Digest {
				return srcB
			}
			return srcA
		})
	}
	t.Logf("an uncut pass took %v; %d of 7 kills cut one off", full.Round(time.Millisecond), cut)
	if cut < 3 {
		t.Fatalf("only %d kills landed inside a pass: the test does not exercise the rollback", cut)
	}
}

// standbyCopy runs a receiver process keeping points on dst and a one-shot
// sender from src; with kill > 0 the receiver is killed that long after the
// sender starts. It reports whether the kill came before the receiver ended.
func standbyCopy(t *testing.T, c creds, src, dst string, kill time.Duration) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"receive", "--dir", dst, "--points", "--listen", addr, "--progress-interval", "1h",
		"--ca", c.server.CA, "--cert", c.server.Cert, "--key", c.server.Key}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execArgs+"="+strings.Join(args, "\n"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for { // listening?
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver does not listen: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := sendOpts(c, src, addr)
	o.RetryTimeout = time.Second
	sent := make(chan error, 1)
	go func() { _, err := sender.Run(ctx, o); sent <- err }()
	if kill > 0 {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("receiver: %v: %s", err, out.String())
			}
			<-sent
			return false
		case <-time.After(kill):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			cancel()
			<-sent
			return true
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("receiver: %v: %s", err, out.String())
	}
	return false
}

// pending reports a pass the log holds, neither committed nor rolled back.
func pending(dst string) bool {
	_, err := os.Lstat(filepath.Join(dst, undo.Dir, "log"))
	return err == nil
}

// promoteAndCompare promotes dst and compares it with the source want
// names for its point.
func promoteAndCompare(t *testing.T, dst string, want func(undo.Point) string) undo.Point {
	t.Helper()
	pt, err := receiver.Promote(dst)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	assertSame(t, want(pt), dst)
	return pt
}

// Under a continuous sender every update pass commits a point — renames
// of a file and of a directory among its changes (a continuous sender's
// own) — whose digest is the volume's, and the final sync commits the last.
func TestStandbyContinuousPassesArePoints(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	populate(t, src)
	addr, _, recvDone := runReceiver(t, c, receiver.Options{Dir: dst, Points: true})
	finish := make(chan struct{})
	res := startContinuous(t, sendOpts(c, src, addr), finish)

	first := waitPoint(t, dst, time.Time{}, src)
	must(t, os.Rename(filepath.Join(src, "a/b"), filepath.Join(src, "moved")))
	must(t, os.Rename(filepath.Join(src, "setuid"), filepath.Join(src, "a/setuid2")))
	must(t, os.Remove(filepath.Join(src, "empty.txt")))
	writeRandom(t, filepath.Join(src, "a/fresh"), 70<<10, 9)
	waitPoint(t, dst, first.Time, src)

	close(finish)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := <-recvDone; err != nil {
		t.Fatal(err)
	}
	promoteAndCompare(t, dst, func(undo.Point) string { return src })
}

// runReceiver runs a receiver with o in this process on a fresh loopback
// listener: its address, what ends it, and its result once it ended.
func runReceiver(t *testing.T, c creds, o receiver.Options) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	o.Listener, o.TLS = ln, c.server
	done := make(chan error, 1)
	go func() { done <- receiver.Run(ctx, o) }()
	return ln.Addr().String(), cancel, done
}

// waitPoint waits for a point committed after since that holds what src
// holds now, and checks its digest against the volume.
func waitPoint(t *testing.T, dst string, since time.Time, src string) undo.Point {
	t.Helper()
	want := snapshot(t, src)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pt undo.Point
		b, err := os.ReadFile(filepath.Join(dst, undo.Dir, "point"))
		if err == nil && json.Unmarshal(b, &pt) == nil && pt.Time.After(since) {
			got := snapshot(t, dst)
			for p := range got {
				if p == undo.Dir || strings.HasPrefix(p, undo.Dir+"/") {
					delete(got, p)
				}
			}
			if len(diffTrees(want, got)) == 0 && !pending(dst) {
				if d := volumeDigest(t, dst, pt.Owners); d != pt.Digest {
					t.Fatalf("the point of %v: digest %x, the volume's %x", pt.Time, pt.Digest, d)
				}
				return pt
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no point after %v holding the source (last read: %v %v)", since, pt.Time, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func volumeDigest(t *testing.T, root string, owners bool) tree.Hash {
	v, err := tree.VerifyTree(root, owners)
	must(t, err)
	return v.Digest
}

// A point's time is the state it holds, not when it was committed: every
// file written before it is in it, so the RPO a failover reports from it
// never understates what was lost. The sender is cut while the app writes.
func TestStandbyPointTimeIsWhatItHolds(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.Mkdir(filepath.Join(src, "w"), 0o755))
	addr, rcancel, recvDone := runReceiver(t, c, receiver.Options{Dir: dst, Points: true})
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	o := sendOpts(c, src, addr)
	o.Continuous, o.Finish = true, make(chan struct{})
	sent := make(chan struct{})
	go func() { defer close(sent); _, _ = sender.Run(sctx, o) }()

	// The app: a file every 2 ms, each noted once its write returned.
	var written []time.Time
	for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(2 * time.Millisecond) {
		must(t, os.WriteFile(filepath.Join(src, "w", fmt.Sprint(len(written))), []byte("x"), 0o644))
		written = append(written, time.Now())
		if time.Since(start) > 1500*time.Millisecond && sctx.Err() == nil {
			scancel() // the source is lost mid-stream
		}
	}
	<-sent
	rcancel()
	<-recvDone

	pt, err := receiver.Promote(dst)
	must(t, err)
	held := 0
	for n, at := range written {
		if !at.Before(pt.Time) {
			break
		}
		held++
		if _, err := os.Stat(filepath.Join(dst, "w", fmt.Sprint(n))); err != nil {
			t.Errorf("file %d written at %s, before the point's time %s, is not in the point: %v",
				n, at.Format(time.StampMicro), pt.Time.Format(time.StampMicro), err)
		}
	}
	if held < 100 {
		t.Fatalf("only %d of %d files were written before the point (%s): the test shows nothing", held, len(written), pt.Time)
	}
	t.Logf("point at %s holds the %d files written before it (of %d)", pt.Time.Format(time.StampMicro), held, len(written))
}

// With exact points the standby commits only passes the sender read at
// one instant. An app writes a record to two files in turn, b then a: at
// any instant b holds the records of a or one more. A pass that reads them
// at different instants can hold any mix, and is not committed; so the
// point a failover starts from keeps the rule, while data still flows.
// With PerFileAfter a per-file point is taken once the exact one is old.
func TestStandbyKeepsItsExactPoint(t *testing.T) {
	for name, perFileAfter := range map[string]time.Duration{"exact only": 0, "per file after 300ms": 300 * time.Millisecond} {
		t.Run(name, func(t *testing.T) {
			c := makeCreds(t)
			src, dst := t.TempDir(), t.TempDir()
			populate(t, src)
			addr, rcancel, recvDone := runReceiver(t, c, receiver.Options{Dir: dst, Points: true, ExactOnly: true, PerFileAfter: perFileAfter})
			sctx, scancel := context.WithCancel(context.Background())
			defer scancel()
			o := sendOpts(c, src, addr)
			o.Continuous, o.Finish = true, make(chan struct{})
			var mu sync.Mutex
			var last progress.Progress
			o.Progress = func(p progress.Progress) { mu.Lock(); last = p; mu.Unlock() }
			passes := func() (int64, int64) { mu.Lock(); defer mu.Unlock(); return last.Passes, last.ExactPasses }
			sent := make(chan struct{})
			go func() { defer close(sent); _, _ = sender.Run(sctx, o) }()

			first := waitPoint(t, dst, time.Time{}, src)
			// A quiet app: its next pass is exact.
			writeRandom(t, filepath.Join(src, "a/quiet"), 5000, 11)
			exact := waitPoint(t, dst, first.Time, src)
			if !exact.Exact {
				t.Fatalf("a pass over a source nothing wrote to during it is not exact: %+v", exact)
			}

			stop := make(chan struct{})
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				var fs []*os.File
				for _, n := range []string{"b", "a"} {
					f, err := os.OpenFile(filepath.Join(src, "pair-"+n), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
					if err != nil {
						t.Error(err)
						return
					}
					defer f.Close()
					fs = append(fs, f)
				}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					for _, f := range fs {
						fmt.Fprintf(f, "record %d\n", i)
					}
					time.Sleep(500 * time.Microsecond)
				}
			}()
			waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dst, "pair-a")); return err == nil })
			time.Sleep(1100 * time.Millisecond) // the sender reports every second
			p0, e0 := passes()
			time.Sleep(1100 * time.Millisecond)
			p1, e1 := passes()
			// The app wrote every half millisecond: hardly a pass read it at
			// one instant (a stalled writer may leave one).
			if p1-p0 < 4 || (e1-e0)*2 > p1-p0 {
				t.Errorf("while the app wrote: %d passes, %d of them called exact", p1-p0, e1-e0)
			}
			scancel() // the source is lost while the app writes
			<-sent
			close(stop)
			<-wrote
			rcancel()
			<-recvDone

			pt, err := receiver.Promote(dst)
			must(t, err)
			records := func(n string) int {
				b, err := os.ReadFile(filepath.Join(dst, "pair-"+n))
				if errors.Is(err, os.ErrNotExist) {
					return 0
				}
				must(t, err)
				return bytes.Count(b, []byte("\n"))
			}
			a, b := records("a"), records("b")
			t.Logf("point %v (exact %v): pair-a %d records, pair-b %d; the exact one %v", pt.Time, pt.Exact, a, b, exact.Time)
			if perFileAfter == 0 {
				if !pt.Exact || pt.Time.Before(exact.Time) {
					t.Fatalf("the point is not exact, or older than the exact one at %v: %+v", exact.Time, pt)
				}
				if b != a && b != a+1 {
					t.Fatalf("the point holds %d records in pair-a and %d in pair-b: a mix no instant of the source held", a, b)
				}
				return
			}
			// Points kept coming while the app wrote (per file, or exact
			// where a pass happened to be).
			if !pt.Time.After(exact.Time.Add(perFileAfter)) || a == 0 {
				t.Fatalf("want a point taken %v after the exact one, holding the app's writes; got %+v", perFileAfter, pt)
			}
		})
	}
}
