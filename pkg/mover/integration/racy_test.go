package integration_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
)

// mountRamfs mounts a ramfs: its timestamps move once per clock tick, as
// ext4 and xfs do on kernels before 6.13 (RHEL 8/9, Ubuntu 22.04/24.04), so
// two writes in one tick leave size, mtime and ctime unchanged.
func mountRamfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a ramfs needs root")
	}
	d := t.TempDir()
	if err := unix.Mount("ramfs", d, "ramfs", 0, ""); err != nil {
		t.Fatalf("mount ramfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func statKey(t *testing.T, p string) [3]int64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return [3]int64{st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
}

// readEvents returns the open and close-after-read events of name seen so
// far in the directory watched by fd, without waiting.
func readEvents(t *testing.T, fd int, name string) (opened, closed bool) {
	t.Helper()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			return
		}
		must(t, err)
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nm := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if nm == name {
				opened = opened || ev.Mask&unix.IN_OPEN != 0
				closed = closed || ev.Mask&unix.IN_CLOSE_NOWRITE != 0
			}
		}
	}
}

// TestCoarseTimestampWriteRightAfterRead: a write that lands right after the
// continuous sender read a file, in the same timestamp tick, changes none of
// size, mtime and ctime. The sender must still copy it before declaring the
// copy verified: the read was "racily clean" and is not trusted.
func TestCoarseTimestampWriteRightAfterRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"small.dat", 200 << 10}, {"large.db", 2 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			c := makeCreds(t)
			src, dst := mountRamfs(t), t.TempDir()
			p := filepath.Join(src, tc.name)
			must(t, os.WriteFile(p, randomBytes(tc.size, 1), 0644))
			r := startReceiver(t, c, dst, false)

			finish := make(chan struct{})
			res := startContinuous(t, sendOpts(c, src, r.addr), finish)

			ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
			must(t, err)
			defer unix.Close(ifd)
			_, err = unix.InotifyAddWatch(ifd, src, unix.IN_OPEN|unix.IN_CLOSE_NOWRITE)
			must(t, err)

			// Keep overwriting the file (same size, new bytes); once the
			// sender has opened and read it with no timestamp tick between
			// our writes, write once more and stop: that last write changes
			// neither size, mtime nor ctime of what the sender saw.
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			must(t, err)
			defer f.Close()
			raced := false
			var openKey [3]int64
			inRead := false
			deadline := time.Now().Add(20 * time.Second)
			page := func(seed uint64) {
				// A 4 KiB page write, as a database makes.
				b := randomBytes(4096, seed)
				_, err := f.WriteAt(b, int64(seed%uint64(tc.size/4096))*4096)
				must(t, err)
			}
			for seed := uint64(2); !raced && time.Now().Before(deadline); seed++ {
				page(seed)
				key := statKey(t, p)
				opened, closed := readEvents(t, ifd, tc.name)
				switch {
				case opened && !closed:
					inRead, openKey = true, key
				case inRead && closed && key == openKey:
					page(seed + 1<<32)
					raced = statKey(t, p) == openKey
					inRead = false
				default:
					inRead = inRead && key == openKey && !closed
				}
			}
			if !raced {
				t.Fatal("could not place a write in the same tick as the sender's read")
			}
			close(finish)
			if err := <-res; err != nil {
				t.Fatalf("sender: %v", err)
			}
			must(t, r.wait(t))
			want, err := os.ReadFile(p)
			must(t, err)
			got, err := os.ReadFile(filepath.Join(dst, tc.name))
			must(t, err)
			if !bytes.Equal(got, want) {
				t.Fatal("verified, but the destination holds the bytes from before the last write: an acknowledged write lost")
			}
		})
	}
}

// TestFreshSenderRepairsWhatItWronglySkipped: a sender that starts over (pod
// or node restart) trusts size and mtime to skip what the receiver holds. A
// destination file with the same size and mtime but other bytes (what a lost
// same-tick write leaves behind) is caught by verification, resent whole and
// verified again, instead of failing every retry the same way.
func TestFreshSenderRepairsWhatItWronglySkipped(t *testing.T) {
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	files := map[string]int{"small.dat": 100 << 10, "large.db": 3 << 20}
	for n, size := range files {
		a := randomBytes(size, 7)
		b := append([]byte(nil), a...)
		b[size/2] ^= 0xff // one byte differs
		must(t, os.WriteFile(filepath.Join(src, n), a, 0644))
		must(t, os.WriteFile(filepath.Join(dst, n), b, 0644))
		st, err := os.Stat(filepath.Join(src, n))
		must(t, err)
		must(t, os.Chtimes(filepath.Join(dst, n), st.ModTime(), st.ModTime()))
	}
	mt := time.Unix(1700000000, 0)
	must(t, os.Chtimes(src, mt, mt))
	must(t, os.Chtimes(dst, mt, mt))

	r := startReceiver(t, c, dst, false)
	var last progress.Progress
	o := sendOpts(c, src, r.addr)
	o.Progress = func(p progress.Progress) { last = p }
	res, err := sender.Run(context.Background(), o)
	if errors.Is(err, sender.ErrMismatch) {
		t.Fatalf("the retry after a mismatch repeated the same skip: %v", err)
	}
	must(t, err)
	must(t, r.wait(t))
	if d := diffTrees(snapshot(t, src), snapshot(t, dst)); len(d) > 0 {
		t.Fatalf("trees differ after a verified run: %v", d)
	}
	if res.Digest == "" || !last.Verified {
		t.Fatalf("no verified digest: %+v", last)
	}
}
