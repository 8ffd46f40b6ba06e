package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/certs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
)

// A standby receiving a pass that a crash cuts off after any number of its
// changes — before or after each one's undo record, or just before the
// commit — is, once the receiver starts again, exactly the pass before
// (an independent listing of every path, its metadata and bytes), and its
// point's digest is that volume's. The pass that is not cut off commits
// the new state. The pass updates a large file in place (grown, rewritten,
// and another shrunk), replaces, adds and deletes files, trees, symlinks,
// a hard link, and changes modes and times. On ramfs too: no holes (the
// punched range written as zeros), timestamps that move once per tick.
func TestStandbyCrashRollsBackToThePoint(t *testing.T) {
	c := testCreds(t)
	before, after := t.TempDir(), t.TempDir()
	standbyBefore(t, before)
	standbyAfter(t, before, after)
	for _, fs := range []string{"tmpdir", "ramfs"} {
		t.Run(fs, func(t *testing.T) {
			vols := t.TempDir()
			if fs == "ramfs" {
				if os.Geteuid() != 0 {
					t.Fatal("mounting a ramfs needs root (run the tests as root)")
				}
				must(t, unix.Mount("ramfs", vols, "ramfs", 0, ""))
				t.Cleanup(func() { unix.Unmount(vols, unix.MNT_DETACH) })
			}
			crashEverywhere(t, c, before, after, vols)
		})
	}
}

func crashEverywhere(t *testing.T, c testCredFiles, before, after, vols string) {
	undone := 0
	for crashAt := 0; ; crashAt++ {
		dst := filepath.Join(vols, strconv.Itoa(crashAt))
		must(t, os.Mkdir(dst, 0o755))
		if err := standbyPass(t, c, before, dst, nil, nil); err != nil {
			t.Fatalf("first pass: %v", err)
		}
		want := listing(t, dst) // the last point, until the pass commits one
		hits := 0
		err := standbyPass(t, c, after, dst, func() error {
			if hits++; hits > crashAt {
				return errors.New("crash (test)")
			}
			return nil
		}, func() { want = listing(t, dst) })
		if diffListings(want, listing(t, dst)) != "" {
			undone++ // the crash left changes for the rollback
		}
		r, nerr := New(Options{Dir: dst, Points: true}) // the restart: rolls back
		if nerr != nil {
			t.Fatalf("crash after %d steps: restart: %v", crashAt, nerr)
		}
		pt, ok, perr := r.points.log.Point()
		r.Close()
		if perr != nil || !ok {
			t.Fatalf("crash after %d steps: no point (%v)", crashAt, perr)
		}
		if d := digestOf(t, dst, pt.Owners); d != pt.Digest {
			t.Fatalf("crash after %d steps: the volume's digest %x is not its point's %x", crashAt, d, pt.Digest)
		}
		if err == nil { // ran to the end: committed
			if undone < 20 {
				t.Fatalf("only %d of %d crashes left changes to roll back: the test does not exercise the log", undone, crashAt)
			}
			if d := diffListings(listing(t, after), listing(t, dst)); d != "" {
				t.Fatalf("the committed pass differs from its source: %s", d)
			}
			t.Logf("a pass of %d steps, cut off after each: %d rollbacks undid changes", crashAt, undone)
			return
		}
		if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "crash (test)") {
			t.Fatalf("crash after %d steps: the receiver ended with %v", crashAt, err)
		}
		if d := diffListings(want, listing(t, dst)); d != "" {
			t.Fatalf("crash after %d steps: after the rollback the volume differs from the last point: %s", crashAt, d)
		}
	}
}

func standbyBefore(t *testing.T, d string) {
	j := func(p string) string { return filepath.Join(d, p) }
	must(t, os.MkdirAll(j("db/base"), 0o755))
	must(t, os.MkdirAll(j("old/tree/deep"), 0o755))
	must(t, os.MkdirAll(j("becomes-file"), 0o755))
	must(t, os.WriteFile(j("db/base/big"), pattern(3<<20, 1), 0o600))
	must(t, os.WriteFile(j("db/base/shrinks"), pattern(2<<20, 2), 0o600))
	must(t, os.WriteFile(j("db/small"), []byte("small before"), 0o644))
	must(t, os.WriteFile(j("old/tree/deep/f"), []byte("deep"), 0o644))
	must(t, os.WriteFile(j("becomes-file/x"), []byte("x"), 0o644))
	must(t, os.WriteFile(j("becomes-dir"), []byte("a file"), 0o644))
	must(t, os.WriteFile(j("chmod"), []byte("mode"), 0o644))
	must(t, os.Symlink("db/small", j("link")))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(j("db/small"), old, old))
}

// standbyAfter copies before into after (metadata too) and changes it.
func standbyAfter(t *testing.T, before, after string) {
	must(t, copyTree(before, after))
	j := func(p string) string { return filepath.Join(after, p) }
	f, err := os.OpenFile(j("db/base/big"), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte("N"), 300<<10), 1<<20)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte("E"), 200<<10), 3<<20)
	must(t, err)
	must(t, f.Close())
	must(t, os.Truncate(j("db/base/shrinks"), 700<<10))
	must(t, os.WriteFile(j("db/small"), []byte("small after, longer"), 0o644))
	must(t, os.RemoveAll(j("old")))
	must(t, os.RemoveAll(j("becomes-file")))
	must(t, os.WriteFile(j("becomes-file"), []byte("now a file"), 0o644))
	must(t, os.Remove(j("becomes-dir")))
	must(t, os.MkdirAll(j("becomes-dir/sub"), 0o750))
	must(t, os.WriteFile(j("becomes-dir/sub/g"), []byte("g"), 0o640))
	must(t, os.Chmod(j("chmod"), 0o600))
	must(t, os.Remove(j("link")))
	must(t, os.Symlink("db/base/big", j("link")))
	must(t, os.MkdirAll(j("new/a/b"), 0o755))
	for i := range 5 {
		must(t, os.WriteFile(j(fmt.Sprintf("new/a/b/f%d", i)), pattern(1000*(i+1), uint64(10+i)), 0o644))
	}
	must(t, os.Link(j("new/a/b/f0"), j("new/hard")))
}

// standbyPass runs a receiver keeping points on dst and a one-shot sender
// from src; crash and committed, if set, are the receiver's hooks.
func standbyPass(t *testing.T, c testCredFiles, src, dst string, crash func() error, committed func()) error {
	t.Helper()
	return onePass(t, c, src, dst, true, crash, committed)
}

// onePass copies src into dst with a sender and a receiver (a standby's with points).
func onePass(t *testing.T, c testCredFiles, src, dst string, points bool, crash func() error, committed func()) error {
	t.Helper()
	r, err := New(Options{Dir: dst, Points: points, TLS: c.server})
	if err != nil {
		return err
	}
	defer r.Close()
	if points {
		r.points.crash, r.points.committed = crash, committed
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	r.opts.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := sender.Run(ctx, sender.Options{Dir: src, To: ln.Addr().String(), TLS: c.client, RetryTimeout: 20 * time.Second})
		sent <- err
	}()
	err = r.Serve(ctx)
	cancel()
	serr := <-sent
	if err == nil && serr != nil {
		t.Fatalf("the receiver completed, the sender failed: %v", serr)
	}
	if err == nil && points { // its progress names the point it committed
		pt, ok, perr := r.points.log.Point()
		if rp := r.Tracker.Snapshot().Point; perr != nil || !ok || rp == nil || rp.Digest != fmt.Sprintf("%x", pt.Digest) || !rp.Time.Equal(pt.Time) {
			t.Fatalf("progress reports point %+v, the volume's is %x of %v (%v)", rp, pt.Digest, pt.Time, perr)
		}
	}
	return err
}

type testCredFiles struct{ server, client transport.Files }

func testCreds(t *testing.T) testCredFiles {
	dir := t.TempDir()
	b, err := certs.New(nil, time.Hour)
	must(t, err)
	must(t, b.Write(dir))
	j := func(n string) string { return filepath.Join(dir, n) }
	return testCredFiles{
		server: transport.Files{CA: j(certs.CAFile), Cert: j(certs.ServerCertFile), Key: j(certs.ServerKeyFile)},
		client: transport.Files{CA: j(certs.CAFile), Cert: j(certs.ClientCertFile), Key: j(certs.ClientKeyFile)},
	}
}

func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// copyTree copies a tree with modes, times and hard links (test data only).
func copyTree(from, to string) error {
	links := map[uint64]string{}
	var dirs []string
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		q := filepath.Join(to, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			dirs = append(dirs, rel)
			return os.MkdirAll(q, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, q)
		case st.Nlink > 1 && links[st.Ino] != "":
			return os.Link(links[st.Ino], q)
		}
		links[st.Ino] = q
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(q, b, fi.Mode().Perm()); err != nil {
			return err
		}
		return os.Chtimes(q, fi.ModTime(), fi.ModTime())
	})
	for i := len(dirs) - 1; i >= 0 && err == nil; i-- {
		fi, serr := os.Stat(filepath.Join(from, dirs[i]))
		if serr != nil {
			return serr
		}
		err = os.Chtimes(filepath.Join(to, dirs[i]), fi.ModTime(), fi.ModTime())
	}
	return err
}

// listing describes every path below root but the undo log's directory,
// independently of the mover's code: kind, mode, owner, mtime, link
// target, content sum and hard-link group.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	first := map[uint64]string{}
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == undo.Dir {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%v %d:%d mtime=%d", fi.Mode(), st.Uid, st.Gid, st.Mtim.Nano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s = fmt.Sprintf("symlink -> %s", target) // a symlink's own mode and time are not copied
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" size=%d sum=%x", len(b), sha256.Sum256(b))
			if f, ok := first[st.Ino]; ok && st.Nlink > 1 {
				s += " linked-with=" + f
			} else {
				first[st.Ino] = rel
			}
		}
		out[rel] = s
		return nil
	}))
	return out
}

func diffListings(want, got map[string]string) string {
	var d []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			d = append(d, "missing "+p)
		} else if g != w {
			d = append(d, fmt.Sprintf("%s: %s, want %s", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "extra "+p)
		}
	}
	return strings.Join(d, "; ")
}

// digestOf is the volume's verification digest, everything reread.
func digestOf(t *testing.T, root string, owners bool) tree.Hash {
	v, err := tree.VerifyTree(root, owners)
	must(t, err)
	return v.Digest
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Promotion after a crash mid-pass starts the app on the last point, with
// no trace of the log; a volume changed behind the standby's back (here a
// file's bytes, its size and times kept) is refused and left as it was.
func TestPromote(t *testing.T) {
	c := testCreds(t)
	before, after := t.TempDir(), t.TempDir()
	standbyBefore(t, before)
	standbyAfter(t, before, after)

	dst := t.TempDir()
	if _, err := Promote(dst); err == nil || !strings.Contains(err.Error(), "no standby point") {
		t.Fatalf("promoting a plain directory: %v", err)
	}
	must(t, standbyPass(t, c, before, dst, nil, nil))
	want := listing(t, dst)
	hits := 0
	if err := standbyPass(t, c, after, dst, func() error {
		if hits++; hits > 30 {
			return errors.New("crash (test)")
		}
		return nil
	}, nil); err == nil {
		t.Fatal("the pass was not cut off")
	}
	pt, err := Promote(dst)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	if d := diffListings(want, listing(t, dst)); d != "" {
		t.Fatalf("the promoted volume is not the point: %s", d)
	}
	if _, err := os.Lstat(filepath.Join(dst, undo.Dir)); !os.IsNotExist(err) {
		t.Fatalf("%s left on the promoted volume: %v", undo.Dir, err)
	}
	if d := digestOf(t, dst, pt.Owners); d != pt.Digest {
		t.Fatalf("the promoted volume's digest %x, its point's %x", d, pt.Digest)
	}

	dst2 := t.TempDir()
	must(t, standbyPass(t, c, before, dst2, nil, nil))
	p := filepath.Join(dst2, "db/small")
	fi, err := os.Stat(p)
	must(t, err)
	must(t, os.WriteFile(p, []byte("SMALL BEFORE"), 0o644)) // same size
	must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
	if _, err := Promote(dst2); err == nil || !strings.Contains(err.Error(), "refusing to promote") {
		t.Fatalf("promoting a changed volume: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dst2, undo.Dir, "point")); err != nil {
		t.Fatalf("the refused volume lost its point: %v", err)
	}

	// A plain receiver on a former standby's volume (a move reusing it),
	// the standby's last pass cut half-applied: until a sender comes the
	// volume is rolled back to the point and keeps it (a move whose source
	// was lost leaves it promotable); the first sender's copy drops the
	// log and ends equal to the source.
	dst3 := t.TempDir()
	must(t, standbyPass(t, c, before, dst3, nil, nil))
	hits = 0
	if err := standbyPass(t, c, after, dst3, func() error {
		if hits++; hits > 30 {
			return errors.New("crash (test)")
		}
		return nil
	}, nil); err == nil {
		t.Fatal("the pass was not cut off")
	}
	r, err := New(Options{Dir: dst3, TLS: c.server})
	must(t, err)
	r.Close()
	if d := diffListings(want, listing(t, dst3)); d != "" {
		t.Fatalf("a plain receiver did not roll the standby's cut pass back to its point: %s", d)
	}
	if _, err := os.Lstat(filepath.Join(dst3, undo.Dir, "point")); err != nil {
		t.Fatalf("a plain receiver dropped the point before any sender came: %v", err)
	}
	must(t, onePass(t, c, after, dst3, false, nil, nil))
	if _, err := os.Lstat(filepath.Join(dst3, undo.Dir)); !os.IsNotExist(err) {
		t.Fatalf("a plain receiver left %s after its sender's copy: %v", undo.Dir, err)
	}
	if d := diffListings(listing(t, after), listing(t, dst3)); d != "" {
		t.Fatalf("the plain copy into a former standby's volume is not the source: %s", d)
	}
}

// A session cut in the middle of a standby's pass (a dropped connection:
// the receiver goes on) — small files held for their run's sync among
// what it had received — leaves nothing for the next session to undo by
// mistake: the sender's retry completes, its verification agrees at once,
// and the volume is the source.
func TestStandbySessionCutMidPass(t *testing.T) {
	c := testCreds(t)
	before, after := t.TempDir(), t.TempDir()
	standbyBefore(t, before)
	standbyAfter(t, before, after)
	for _, cutAt := range []int{3, 8, 15, 25, 40} {
		dst := t.TempDir()
		must(t, standbyPass(t, c, before, dst, nil, nil))
		r, err := New(Options{Dir: dst, Points: true, TLS: c.server})
		must(t, err)
		hits := 0
		r.points.crash = func() error {
			if hits++; hits == cutAt {
				r.dropCurrent() // the connection drops: the sender retries
				return errCut
			}
			return nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		r.opts.Listener = ln
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- r.Serve(ctx) }()
		res, err := sender.Run(ctx, sender.Options{Dir: after, To: ln.Addr().String(), TLS: c.client, RetryTimeout: 20 * time.Second})
		if err != nil {
			t.Fatalf("cut after %d steps: the sender failed: %v", cutAt, err)
		}
		if serr := <-served; serr != nil {
			t.Fatalf("cut after %d steps: the receiver failed: %v", cutAt, serr)
		}
		cancel()
		r.Close()
		if hits < cutAt {
			t.Fatalf("the pass had only %d steps: no cut at %d", hits, cutAt)
		}
		if res.Progress.Reconnects == 0 {
			t.Fatalf("cut after %d steps: the sender never reconnected", cutAt)
		}
		if res.Progress.Repairs != 0 {
			t.Fatalf("cut after %d steps: verification needed %d repairs (last error: %s)", cutAt, res.Progress.Repairs, res.Progress.LastError)
		}
		if d := diffListings(listing(t, after), listing(t, dst)); d != "" {
			t.Fatalf("cut after %d steps: the volume differs from the source: %s", cutAt, d)
		}
	}
}
