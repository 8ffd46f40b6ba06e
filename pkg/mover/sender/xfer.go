package sender

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// DeltaMin is the size from which a changed file that the receiver already
// has is updated in place block by block instead of being resent.
const DeltaMin = 1 << 20

type xfer struct {
	s   *Sender
	k   *conn
	buf []byte
}

type xferResult struct {
	entry    tree.Entry
	ino      uint64
	blocks   []tree.Hash
	stable   bool // unchanged while read
	whole    bool // receiver got a fresh inode
	vanished bool
}

func newXfer(s *Sender, k *conn) *xfer {
	return &xfer{s: s, k: k, buf: make([]byte, wire.ChunkSize)}
}

// send copies one file: whole when small or new, otherwise only the blocks
// whose sums differ from what the receiver holds.
func (x *xfer) send(e, old *tree.Entry, oldBlocks []tree.Hash) (xferResult, error) {
	var r xferResult
	p := tree.Join(x.s.o.Dir, e.Path)
	taken := time.Now()
	fd, err := x.s.root.Open(e.Path, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		// A component swapped for a symlink (ELOOP, EXDEV) is never
		// followed: the path has changed, and the next pass sees how.
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
			r.vanished = true
			return r, nil
		}
		return r, fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st0 unix.Stat_t
	if err := unix.Fstat(fd, &st0); err != nil {
		return r, err
	}
	if st0.Mode&unix.S_IFMT != unix.S_IFREG {
		r.vanished = true // replaced by another type: next pass
		return r, nil
	}
	ent, _ := tree.FromStat(e.Path, &st0)
	ent.Sparse = e.Sparse && st0.Size == e.Size
	ent.Xattrs = e.Xattrs // as scanned; a change since moved ctime (below)
	r.entry, r.ino = ent, st0.Ino
	size := st0.Size

	inPlace := old != nil && old.Kind == tree.KindFile && old.LinkTo == "" && size >= DeltaMin
	if inPlace && oldBlocks == nil {
		h, err := x.k.hashReq(e.Path, old.Size)
		if err != nil {
			return r, err
		}
		if h.Err != "" || h.Size != old.Size {
			inPlace = false
		} else {
			oldBlocks = h.Blocks
		}
	}
	if !inPlace && size <= wire.ChunkSize {
		err = x.small(f, &r)
	} else {
		if !inPlace {
			oldBlocks = nil
		}
		err = x.large(f, &r, inPlace, oldBlocks)
	}
	if err != nil {
		return r, err
	}
	var st1 unix.Stat_t
	if err := unix.Fstat(fd, &st1); err != nil {
		return r, err
	}
	// Racily clean: a write right after our read, in the tick of the
	// file's last change, would leave the key as it is. Send it again.
	k := tree.KeyOf(&st0)
	r.stable = k == tree.KeyOf(&st1) && k.Ctime == e.Ctime && !tree.Racy(k, taken, x.s.cache.Window())
	if r.stable && (r.blocks != nil || size == 0) {
		x.s.cache.Put(st0.Ino, k, r.blocks, taken)
	}
	return r, nil
}

func (x *xfer) small(f *os.File, r *xferResult) error {
	size := r.entry.Size
	n, err := f.ReadAt(x.buf[:size], 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	data := x.buf[:n]
	r.entry.Size = int64(n) // a shrinking file is caught by the stat check
	for off := 0; off < n; off += tree.BlockSize {
		r.blocks = append(r.blocks, tree.BlockSum(data[off:min(off+tree.BlockSize, n)]))
	}
	r.whole = true
	x.s.t.AddCopied(int64(n), 1)
	return x.k.send(wire.TFile, &wire.File{Entry: r.entry, Data: data}, false)
}

// large streams a file in chunks; with old sums only changed blocks go out
// and holes are punched rather than written.
func (x *xfer) large(f *os.File, r *xferResult, inPlace bool, old []tree.Hash) error {
	size := r.entry.Size
	id := x.k.id()
	if err := x.k.send(wire.TBegin, &wire.File{ID: id, Entry: r.entry, InPlace: inPlace}, false); err != nil {
		return err
	}
	var holes *tree.Holes
	if r.entry.Sparse {
		holes = tree.NewHoles(tree.Extents(int(f.Fd()), size))
	}
	// Sums of a file too large to keep them for are not kept: its next
	// change is sent whole.
	n := (size + tree.BlockSize - 1) / tree.BlockSize
	keep := n <= tree.MaxTrackedBlocks
	var blocks []tree.Hash
	if keep {
		blocks = make([]tree.Hash, 0, n)
	}
	var copied int64
	// run accumulates adjacent changed blocks into one Data frame.
	runOff, runLen := int64(0), 0
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		start := runOff % wire.ChunkSize
		err := x.k.send(wire.TData, &wire.Data{ID: id, Off: runOff, Data: x.buf[start : start+int64(runLen)]}, false)
		copied += int64(runLen)
		runLen = 0
		return err
	}
	for off := int64(0); off < size; off += wire.ChunkSize {
		clen := min(int64(wire.ChunkSize), size-off)
		// A chunk wholly in a hole is not read: its blocks are holes below.
		if holes == nil || !holes.In(off, off+clen) {
			n, err := f.ReadAt(x.buf[:clen], off)
			if err != nil && err != io.EOF {
				return fmt.Errorf("read %s: %w", f.Name(), err)
			}
			if int64(n) < clen { // shrank under us: zeros, and the stat check retries
				clear(x.buf[n:clen])
			}
		}
		for b := int64(0); b < clen; b += tree.BlockSize {
			bo, bl := off+b, min(int64(tree.BlockSize), clen-b)
			i := int(bo / tree.BlockSize)
			hole := holes != nil && holes.In(bo, bo+bl)
			var sum tree.Hash
			if hole {
				sum = tree.ZeroSum(int(bl))
			} else {
				sum = tree.BlockSum(x.buf[b : b+bl])
			}
			if keep {
				blocks = append(blocks, sum)
			}
			same := old != nil && i < len(old) && old[i] == sum
			if same || (hole && !inPlace) {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if hole {
				if err := flush(); err != nil {
					return err
				}
				if err := x.k.send(wire.TPunch, &wire.Data{ID: id, Off: bo, Len: bl}, false); err != nil {
					return err
				}
				continue
			}
			if runLen == 0 {
				runOff = bo
			}
			runLen += int(bl)
		}
		if err := flush(); err != nil {
			return err
		}
	}
	if err := x.k.send(wire.TEnd, &wire.ID{ID: id}, false); err != nil {
		return err
	}
	r.blocks = blocks
	r.whole = !inPlace
	x.s.t.AddCopied(copied, 1)
	return nil
}
