package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/certs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/receiver"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
)

type creds struct {
	server, client transport.Files
}

func makeCreds(t testing.TB) creds {
	t.Helper()
	dir := t.TempDir()
	b, err := certs.New(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	j := func(n string) string { return filepath.Join(dir, n) }
	return creds{
		server: transport.Files{CA: j(certs.CAFile), Cert: j(certs.ServerCertFile), Key: j(certs.ServerKeyFile)},
		client: transport.Files{CA: j(certs.CAFile), Cert: j(certs.ClientCertFile), Key: j(certs.ClientKeyFile)},
	}
}

type recv struct {
	addr string
	done chan error
	stop context.CancelFunc
}

func startReceiver(t testing.TB, c creds, dir string, block bool) *recv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recv{addr: ln.Addr().String(), done: make(chan error, 1), stop: cancel}
	go func() {
		r.done <- receiver.Run(ctx, receiver.Options{Dir: dir, Block: block, Listener: ln, TLS: c.server})
	}()
	t.Cleanup(func() { cancel() })
	return r
}

func (r *recv) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("receiver did not finish")
		return nil
	}
}

func sendOpts(c creds, src, addr string) sender.Options {
	return sender.Options{Dir: src, To: addr, TLS: c.client, RetryTimeout: 20 * time.Second}
}

// startContinuous runs a continuous sender with o until finish closes and
// returns once its initial copy is done; the channel yields its result.
// o.Progress, if set, sees every report too.
func startContinuous(t testing.TB, o sender.Options, finish chan struct{}) <-chan error {
	t.Helper()
	syncing := make(chan struct{}, 1)
	o.Continuous, o.Finish = true, finish
	also := o.Progress
	o.Progress = func(p progress.Progress) {
		if also != nil {
			also(p)
		}
		if p.Phase == progress.Syncing {
			select {
			case syncing <- struct{}{}:
			default:
			}
		}
	}
	res := make(chan error, 1)
	go func() { _, err := sender.Run(context.Background(), o); res <- err }()
	select {
	case <-syncing:
	case err := <-res:
		t.Fatalf("sender ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("initial copy did not finish")
	}
	return res
}

func writeRandom(t testing.TB, p string, n int, seed uint64) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(p, b, 0644); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// populate makes a tree with every supported kind of entry.
func populate(t testing.TB, d string) {
	t.Helper()
	j := func(p string) string { return filepath.Join(d, p) }
	must(t, os.MkdirAll(j("a/b/c"), 0755))
	must(t, os.MkdirAll(j("empty/dir"), 0755))
	must(t, os.Mkdir(j("sticky"), 0755))
	must(t, os.Chmod(j("sticky"), 01777|fs.ModeSticky))
	writeRandom(t, j("a/small.bin"), 1000, 1)
	writeRandom(t, j("a/b/medium.bin"), 300<<10, 2)
	writeRandom(t, j("a/b/c/large.db"), 3<<20, 3)
	must(t, os.WriteFile(j("empty.txt"), nil, 0644))
	must(t, os.WriteFile(j("setuid"), []byte("#!/bin/sh\n"), 0755))
	must(t, syscall.Chmod(j("setuid"), 04755))
	must(t, os.WriteFile(j("noperm"), []byte("secret"), 0))
	must(t, os.WriteFile(j("owned"), []byte("owned"), 0640))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(j("owned"), 1234, 5678))
		must(t, os.Lchown(j("a/b"), 4321, 8765))
	}
	// Sparse: 8 MiB with data only at 1 MiB and the last 4 KiB.
	f, err := os.Create(j("sparse.img"))
	must(t, err)
	must(t, f.Truncate(8<<20))
	_, err = f.WriteAt(bytes.Repeat([]byte("x"), 128<<10), 1<<20)
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte("y"), 4096), 8<<20-4096)
	must(t, err)
	must(t, f.Close())
	must(t, os.Symlink("a/small.bin", j("rel-link")))
	must(t, os.Symlink("/etc/passwd", j("abs-link")))
	must(t, os.Symlink("does/not/exist", j("a/dangling")))
	must(t, os.Link(j("a/small.bin"), j("hard1")))
	must(t, os.Link(j("a/small.bin"), j("a/b/hard2")))
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	must(t, os.Chtimes(j("empty.txt"), old, old))
	must(t, os.Mkdir(j("readonly"), 0755))
	writeRandom(t, j("readonly/file"), 10, 4)
	must(t, os.Chmod(j("readonly"), 0555))
}

type fact struct {
	kind       fs.FileMode
	mode       fs.FileMode
	uid, gid   uint32
	size       int64
	mtime      int64
	target     string
	data       []byte
	sparse     bool
	linkedWith string
	rdev       uint64
	xattrs     string // "name=value;" sorted, all namespaces the test can read
}

// xattrsOf lists every attribute the test process can read, but the
// SELinux label: an independent view of what the mover must copy.
func xattrsOf(t testing.TB, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := syscall.Listxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var parts []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "security.selinux" {
			continue
		}
		v := make([]byte, 64<<10)
		k, err := syscall.Getxattr(p, name, v)
		must(t, err)
		parts = append(parts, fmt.Sprintf("%s=%x;", name, v[:k]))
	}
	sort.Strings(parts)
	return strings.Join(parts, "")
}

// snapshot records a tree independently of the mover's own code.
func snapshot(t testing.TB, root string) map[string]fact {
	t.Helper()
	out := map[string]fact{}
	inodes := map[uint64]string{}
	var paths []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}))
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		must(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		f := fact{kind: fi.Mode().Type(), mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), rdev: st.Rdev}
		if fi.Mode()&fs.ModeSymlink == 0 {
			f.xattrs = xattrsOf(t, p)
		}
		switch {
		case fi.Mode().IsRegular():
			f.size = st.Size
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					f.linkedWith = first
				} else {
					inodes[st.Ino] = rel
				}
			}
			b, err := os.ReadFile(p)
			must(t, err)
			f.data = b
			f.sparse = st.Blocks*512 < st.Size/2
		case fi.Mode()&fs.ModeSymlink != 0:
			f.target, _ = os.Readlink(p)
			f.mode = 0
		}
		out[rel] = f
	}
	return out
}

func diffTrees(a, b map[string]fact) []string {
	var d []string
	for p, x := range a {
		y, ok := b[p]
		if !ok {
			d = append(d, "missing "+p)
			continue
		}
		if x.kind != y.kind || x.mode != y.mode || x.uid != y.uid || x.gid != y.gid || x.size != y.size ||
			x.mtime != y.mtime || x.target != y.target || !bytes.Equal(x.data, y.data) ||
			x.sparse != y.sparse || x.linkedWith != y.linkedWith || x.rdev != y.rdev || x.xattrs != y.xattrs {
			d = append(d, fmt.Sprintf("differs %s: src{kind %v mode %v own %d:%d size %d mtime %d tgt %q sparse %v link %q rdev %d xattrs %q} dst{kind %v mode %v own %d:%d size %d mtime %d tgt %q sparse %v link %q rdev %d xattrs %q} sameData=%v",
				p, x.kind, x.mode, x.uid, x.gid, x.size, x.mtime, x.target, x.sparse, x.linkedWith, x.rdev, x.xattrs,
				y.kind, y.mode, y.uid, y.gid, y.size, y.mtime, y.target, y.sparse, y.linkedWith, y.rdev, y.xattrs, bytes.Equal(x.data, y.data)))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			d = append(d, "extra "+p)
		}
	}
	sort.Strings(d)
	return d
}

func assertSame(t testing.TB, src, dst string) {
	t.Helper()
	if d := diffTrees(snapshot(t, src), snapshot(t, dst)); len(d) > 0 {
		if len(d) > 20 {
			d = d[:20]
		}
		t.Fatalf("trees differ:\n%s", joinLines(d))
	}
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, x := range s {
		b.WriteString(x + "\n")
	}
	return b.String()
}

var _ = tls.VersionTLS13

func inode(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }
