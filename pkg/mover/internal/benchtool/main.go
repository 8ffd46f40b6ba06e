// Command benchtool generates data and measures the mover for
// hack/bench-mover.sh. It embeds the real `mover` command, so the benchmark
// runs the same code as the shipped binary.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/cli"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: benchtool mover|gen-mixed|gen-small|gen-volume|change|pipe-send|pipe-recv ..."))
	}
	var err error
	a := os.Args[2:]
	switch os.Args[1] {
	case "mover":
		defer profile()()
		cmd := cli.NewCommand()
		cmd.SetArgs(a)
		if err = cmd.Execute(); err != nil {
			stopProfile()
			os.Exit(cli.ExitCode(err))
		}
		return
	case "gen-mixed": // DIR MiB
		err = genMixed(a[0], atoi(a[1])<<20)
	case "gen-small": // DIR COUNT
		err = genSmall(a[0], atoi(a[1]))
	case "gen-volume": // DIR GiB: 256 MiB files
		err = genVolume(a[0], atoi(a[1]))
	case "change": // SRC DST FILE MiB: write MiB into FILE, wait until DST has it (DST "-": do not wait)
		err = change(a[0], a[1], a[2], atoi(a[3])<<20)
	case "pipe-send": // ADDR: stdin -> TCP
		err = pipeSend(a[0])
	case "pipe-recv": // ADDR: TCP -> stdout
		err = pipeRecv(a[0])
	case "evict": // DIR...: drop the (clean) cached pages of every file below each DIR
		err = evict(a)
	case "tls-relay": // server|client LISTEN TARGET CERTDIR: a TLS 1.3 mutual tunnel, as VolSync runs rsync through stunnel
		err = tlsRelay(a[0], a[1], a[2], a[3])
	default:
		err = fmt.Errorf("unknown subcommand %s", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

// evict asks the kernel to drop the cached pages of the files below dirs
// (after a sync they are clean): the copies made so far then no longer
// fill the page cache, and the next copy does not pay for reclaiming it.
func evict(dirs []string) error {
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchtool:", err)
	os.Exit(1)
}

func atoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fail(err)
	}
	return n
}

// filler writes pseudo-random, incompressible bytes fast.
type filler struct{ r *rand.Rand }

func newFiller(seed uint64) *filler { return &filler{rand.New(rand.NewPCG(seed, seed+1))} }

func (f *filler) fill(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], f.r.Uint64())
	}
}

func writeFile(p string, size int64, f *filler) error {
	if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
		return err
	}
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, int64(len(buf)))
		f.fill(buf[:n])
		if _, err := out.Write(buf[:n]); err != nil {
			out.Close()
			return err
		}
		size -= n
	}
	return out.Close()
}

// genMixed: half in 4 large files, a quarter in 1 MiB files, a quarter in
// 4-64 KiB files, plus symlinks, empty dirs and a sparse file.
func genMixed(dir string, total int64) error {
	f := newFiller(1)
	for i := range 4 {
		if err := writeFile(filepath.Join(dir, "large", fmt.Sprintf("db%d", i)), total/8, f); err != nil {
			return err
		}
	}
	for i := int64(0); i < total/4>>20; i++ {
		if err := writeFile(filepath.Join(dir, "medium", fmt.Sprintf("d%d/m%d", i%16, i)), 1<<20, f); err != nil {
			return err
		}
	}
	var n int64
	for i := 0; n < total/4; i++ {
		sz := int64(4<<10 + f.r.IntN(60<<10))
		if err := writeFile(filepath.Join(dir, "small", fmt.Sprintf("d%d/s%d", i%64, i)), sz, f); err != nil {
			return err
		}
		n += sz
	}
	os.MkdirAll(filepath.Join(dir, "empty/a/b"), 0755)
	os.Symlink("large/db0", filepath.Join(dir, "link"))
	sp, err := os.Create(filepath.Join(dir, "sparse.img"))
	if err != nil {
		return err
	}
	sp.Truncate(256 << 20)
	sp.WriteAt(bytes.Repeat([]byte("s"), 1<<20), 128<<20)
	return sp.Close()
}

func genSmall(dir string, count int64) error {
	f := newFiller(2)
	buf := make([]byte, 4096)
	for i := int64(0); i < count; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%03d/f%06d", i%1000, i))
		if i < 1000 {
			os.MkdirAll(filepath.Dir(p), 0755)
		}
		n := 512 + f.r.IntN(3584)
		f.fill(buf[:n])
		if err := os.WriteFile(p, buf[:n], 0644); err != nil {
			return err
		}
	}
	return nil
}

func genVolume(dir string, gib int64) error {
	f := newFiller(3)
	for i := int64(0); i < gib*4; i++ {
		if err := writeFile(filepath.Join(dir, fmt.Sprintf("seg%03d", i)), 256<<20, f); err != nil {
			return err
		}
	}
	return nil
}

// change rewrites n bytes in 1 MiB pieces at random offsets of file and
// returns once the destination copy holds every piece.
func change(src, dst, file string, n int64) error {
	f := newFiller(uint64(time.Now().UnixNano()))
	sp, dp := filepath.Join(src, file), filepath.Join(dst, file)
	st, err := os.Stat(sp)
	if err != nil {
		return err
	}
	type piece struct {
		off  int64
		data []byte
	}
	var ps []piece
	for w := int64(0); w < n; w += 1 << 20 {
		b := make([]byte, 1<<20)
		f.fill(b)
		ps = append(ps, piece{int64(f.r.IntN(int(st.Size()>>20))) << 20, b})
	}
	out, err := os.OpenFile(sp, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	start := time.Now()
	for _, p := range ps {
		if _, err := out.WriteAt(p.data, p.off); err != nil {
			return err
		}
	}
	out.Close()
	if dst == "-" {
		return nil
	}
	// Later pieces may overwrite earlier ones; compare against the source.
	want := make([][]byte, len(ps))
	in, _ := os.Open(sp)
	for i, p := range ps {
		want[i] = make([]byte, len(p.data))
		in.ReadAt(want[i], p.off)
	}
	in.Close()
	got := make([]byte, 1<<20)
	for deadline := start.Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		d, err := os.Open(dp)
		if err != nil {
			continue
		}
		ok := true
		for i, p := range ps {
			if _, err := d.ReadAt(got, p.off); err != nil || !bytes.Equal(got, want[i]) {
				ok = false
				break
			}
		}
		d.Close()
		if ok {
			fmt.Printf("%.3f\n", time.Since(start).Seconds())
			return nil
		}
	}
	return fmt.Errorf("destination not current after 60s")
}

func pipeSend(addr string) error {
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(c, os.Stdin); err != nil {
		return err
	}
	return c.Close()
}

func pipeRecv(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	_, err = io.Copy(os.Stdout, c)
	return err
}

// tlsRelay forwards each connection to LISTEN on to TARGET, the client side
// adding TLS (the mover's certificates in dir), the server side removing it.
func tlsRelay(side, listen, target, dir string) error {
	files := func(cert, key string) transport.Files {
		return transport.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, cert), Key: filepath.Join(dir, key)}
	}
	var wrap func(net.Conn) (net.Conn, error)
	var dial func() (net.Conn, error)
	switch side {
	case "server":
		cfg, err := transport.ServerConfig(files("server.crt", "server.key"))
		if err != nil {
			return err
		}
		wrap = func(c net.Conn) (net.Conn, error) { return tls.Server(c, cfg), nil }
		dial = func() (net.Conn, error) { return net.Dial("tcp", target) }
	case "client":
		cfg, err := transport.ClientConfig(files("client.crt", "client.key"), "127.0.0.1")
		if err != nil {
			return err
		}
		wrap = func(c net.Conn) (net.Conn, error) { return c, nil }
		dial = func() (net.Conn, error) { return tls.Dial("tcp", target, cfg) }
	default:
		return fmt.Errorf("tls-relay: side %q is neither server nor client", side)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		in, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer in.Close()
			a, err := wrap(in)
			if err != nil {
				return
			}
			b, err := dial()
			if err != nil {
				return
			}
			defer b.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(b, a); closeWrite(b); done <- struct{}{} }()
			go func() { io.Copy(a, b); closeWrite(a); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.CloseWrite()
	case *tls.Conn:
		c.CloseWrite()
	}
}

var stopProfile = func() {}

// profile writes a CPU profile and an execution trace of this process to
// $MOVER_PROF.<role>.{cpu,trace} when MOVER_PROF is set (benchmark analysis).
func profile() func() {
	pre := os.Getenv("MOVER_PROF")
	if pre == "" || len(os.Args) < 3 {
		return func() {}
	}
	pre += "." + os.Args[2]
	cf, err1 := os.Create(pre + ".cpu")
	tf, err2 := os.Create(pre + ".trace")
	if err1 != nil || err2 != nil {
		fail(fmt.Errorf("profile: %v %v", err1, err2))
	}
	pprof.StartCPUProfile(cf)
	trace.Start(tf)
	stopProfile = func() {
		trace.Stop()
		pprof.StopCPUProfile()
		cf.Close()
		tf.Close()
		stopProfile = func() {}
	}
	return func() { stopProfile() }
}
