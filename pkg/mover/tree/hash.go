package tree

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// BlockSize is the unit of change detection and of content hashing. 64 KiB
// keeps the per-file hash list small (160k sums for 10 GiB) while a database
// page update resends little more than the page.
const BlockSize = 64 << 10

// Hash is a SHA-256 sum; SHA-256 runs in hardware on current x86 and arm64.
type Hash = [32]byte

// MaxTrackedBlocks bounds the sums kept for one file (256 GiB at 64 KiB,
// 128 MiB of sums): a larger file is hashed whenever it is needed instead.
const MaxTrackedBlocks = 1 << 22

var zeroSums sync.Map // length -> Hash of that many zero bytes

// zeroBlock is the sum of a whole block of zeros, compared on every block.
var zeroBlock = zeroSum(BlockSize)

// ZeroSum is the sum of a block of n zero bytes (a hole), computed once.
func ZeroSum(n int) Hash { return zeroSum(n) }

func zeroSum(n int) Hash {
	if h, ok := zeroSums.Load(n); ok {
		return h.(Hash)
	}
	h := BlockSum(make([]byte, n))
	zeroSums.Store(n, h)
	return h
}

// Extents lists the data ranges of an open file as [start, end) pairs; a
// filesystem without SEEK_DATA reports the whole file as data.
func Extents(fd int, size int64) [][2]int64 {
	var out [][2]int64
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if err == unix.ENXIO { // only a hole remains
				break
			}
			return [][2]int64{{off, size}}
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h > size {
			h = size
		}
		out = append(out, [2]int64{d, h})
		off = h
	}
	return out
}

// Holes answers, for ranges asked in increasing order, whether a range lies
// wholly outside the data extents; a file of many extents costs one pass.
type Holes struct {
	ext [][2]int64
	i   int
}

// NewHoles walks ext (from Extents).
func NewHoles(ext [][2]int64) *Holes { return &Holes{ext: ext} }

// In reports whether [off, end) is a hole; off never decreases between calls.
func (h *Holes) In(off, end int64) bool {
	for h.i < len(h.ext) && h.ext[h.i][1] <= off {
		h.i++
	}
	return h.i == len(h.ext) || h.ext[h.i][0] >= end
}

// End is where the hole In last found ends: the next data extent's start
// (math.MaxInt64 when none follows).
func (h *Holes) End() int64 {
	if h.i == len(h.ext) {
		return math.MaxInt64
	}
	return h.ext[h.i][0]
}

// ErrTooManyBlocks refuses a sum list for a file of more than
// MaxTrackedBlocks blocks; FileSum hashes such a file without one.
var ErrTooManyBlocks = errors.New("file too large to keep block sums for")

var bufPool = sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}

// HashBlocks hashes f block by block, without reading holes. A file that
// shrinks while being read yields hashes of what was read; callers compare
// stat before and after to notice.
func HashBlocks(f *os.File, size int64, sparse bool) ([]Hash, error) {
	n := (size + BlockSize - 1) / BlockSize
	if n > MaxTrackedBlocks {
		return nil, ErrTooManyBlocks
	}
	out := make([]Hash, 0, n)
	err := eachBlock(f, size, sparse, func(h Hash) { out = append(out, h) })
	return out, err
}

// FileSum is ContentSum(HashBlocks(...)) in constant memory, and in time
// proportional to the data: a hole of any length costs O(1).
func FileSum(f *os.File, size int64, sparse bool) (Hash, error) {
	var w contentWriter
	err := eachBlockRuns(f, size, sparse, w.add, w.addHoles)
	return w.sum(), err
}

func eachBlock(f *os.File, size int64, sparse bool, each func(Hash)) error {
	return eachBlockRuns(f, size, sparse, each, func(n int64) {
		for range n {
			each(zeroBlock)
		}
	})
}

// eachBlockRuns calls each for every block, or holes(n) for n whole blocks
// of one hole.
func eachBlockRuns(f *os.File, size int64, sparse bool, each func(Hash), holes func(int64)) error {
	var h *Holes
	if sparse {
		h = NewHoles(Extents(int(f.Fd()), size))
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for off := int64(0); off < size; off += BlockSize {
		l := min(int64(BlockSize), size-off)
		if sparse && h.In(off, off+l) {
			if n := (min(h.End(), size) - off) / BlockSize; n > 1 {
				holes(n)
				off += (n - 1) * BlockSize
				continue
			}
			each(zeroSum(int(l)))
			continue
		}
		k, err := f.ReadAt(buf[:l], off)
		if err != nil && err != io.EOF {
			return err
		}
		each(BlockSum(buf[:k]))
		if k < int(l) {
			break
		}
	}
	return nil
}

// BlockSum hashes one block's data, with BLAKE3: every byte copied is
// hashed on both sides, and BLAKE3 runs at about twice SHA-256's speed
// (docs/mover.md). Sums of sums (files, records, the digest) stay SHA-256.
func BlockSum(p []byte) Hash { return blake3.Sum256(p) }

// ContentSum folds block sums into one file sum: a SHA-256 over them,
// where a run of whole zero blocks (a hole, or zeros) counts as one record
// naming its length, so that FileSum sums a hole of any size in O(1).
func ContentSum(blocks []Hash) Hash {
	var w contentWriter
	for i := range blocks {
		w.add(blocks[i])
	}
	return w.sum()
}

type contentWriter struct {
	h     hash.Hash
	zeros int64
}

func (w *contentWriter) add(b Hash) {
	if b == zeroBlock {
		w.zeros++
		return
	}
	w.flush()
	w.h.Write(b[:])
}

func (w *contentWriter) addHoles(n int64) { w.zeros += n }

// flush writes a pending run as a 32-byte record, as long as a block sum:
// sha256("holes", n), which no block's sum can equal short of a preimage.
func (w *contentWriter) flush() {
	if w.h == nil {
		w.h = sha256.New()
	}
	if w.zeros == 0 {
		return
	}
	r := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("holes"), uint64(w.zeros)))
	w.h.Write(r[:])
	w.zeros = 0
}

func (w *contentWriter) sum() Hash {
	w.flush()
	var s Hash
	w.h.Sum(s[:0])
	return s
}

// StatKey identifies one version of an inode's content. ctime cannot be set
// by users, so a rewrite that restores mtime still changes the key.
type StatKey struct {
	Size, Mtime, Ctime int64
}

// KeyOf returns the key of a stat result.
func KeyOf(st *unix.Stat_t) StatKey {
	return StatKey{Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

type cached struct {
	key    StatKey
	blocks []Hash
	racy   bool
	// xattrs, when xknown, are the attributes the inode has at key.
	xattrs  []Xattr
	xknown  bool
	content Hash // ContentSum(blocks)
}

// SumCache remembers block sums per inode so verification and delta
// detection reread only files whose stat key changed.
//
// A stat key proves nothing about a write made in the same timestamp tick
// as the read that produced the sums (ext4 and xfs before Linux 6.13 move
// timestamps once per jiffy): such sums are "racily clean", as git calls
// it, and are never returned.
type SumCache struct {
	mu     sync.RWMutex // read-locked on lookups: verification's workers look up every file at once
	m      map[uint64]cached
	window time.Duration
	limit  int64 // sums held at most (0: no limit)
	held   int64
}

// SetLimit bounds the sums held: past it, Put keeps nothing and those
// files are hashed again when needed. A receiver sets it to its volume's
// size in blocks, which is what an honest peer's files can fill.
func (c *SumCache) SetLimit(blocks int64) {
	c.mu.Lock()
	c.limit = blocks
	c.mu.Unlock()
}

// NewSumCache returns an empty cache trusting sums taken at least window
// after the file's last change (DefaultWindow when window is 0).
func NewSumCache(window time.Duration) *SumCache {
	if window <= 0 {
		window = DefaultWindow()
	}
	return &SumCache{m: map[uint64]cached{}, window: window}
}

// Window is how long after a change a read of the file proves nothing.
func (c *SumCache) Window() time.Duration { return c.window }

// Get returns the sums stored for ino if its key still matches and they
// were not taken racily.
func (c *SumCache) Get(ino uint64, k StatKey) ([]Hash, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[ino]
	if !ok || v.key != k || v.racy {
		return nil, false
	}
	return v.blocks, true
}

// Contents sets sums[i] to ContentSum of what Get would return for es[i],
// and hit[i] when there was one. Verification asks it of every file, in the
// downtime: one lock per run of entries, not one per file.
func (c *SumCache) Contents(es []Entry, sums []Hash, hit []bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for i := range es {
		e := &es[i]
		v, ok := c.m[e.Ino]
		if hit[i] = ok && e.Kind == KindFile && !v.racy && v.key == e.Key(); hit[i] {
			sums[i] = v.content
		}
	}
}

// Put stores the sums of ino at key k, read from the file starting at
// taken. A zero taken means the caller wrote those bytes itself and knows
// them exactly (the receiver): no read could have raced.
func (c *SumCache) Put(ino uint64, k StatKey, blocks []Hash, taken time.Time) {
	content := ContentSum(blocks)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop(ino)
	if c.limit > 0 && c.held+int64(len(blocks)) > c.limit {
		return
	}
	c.m[ino] = cached{key: k, blocks: blocks, racy: Racy(k, taken, c.window), content: content}
	c.held += int64(len(blocks))
}

// SetXattrs records, beside the sums stored at key k, the attributes the
// caller itself gave ino (the receiver): a scan then takes them as read
// while the key holds (SumCache is Known). Nothing is kept for an inode
// whose sums were not kept.
func (c *SumCache) SetXattrs(ino uint64, k StatKey, xs []Xattr) {
	c.mu.Lock()
	if v, ok := c.m[ino]; ok && v.key == k && !v.racy {
		v.xattrs, v.xknown = xs, true
		c.m[ino] = v
	}
	c.mu.Unlock()
}

// Xattrs implements Known with what SetXattrs recorded.
func (c *SumCache) Xattrs(e *Entry) ([]Xattr, bool) {
	if c == nil || e.Kind != KindFile {
		return nil, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[e.Ino]
	if !ok || !v.xknown || v.racy || v.key != e.Key() {
		return nil, false
	}
	return v.xattrs, true
}

func (c *SumCache) drop(ino uint64) {
	if v, ok := c.m[ino]; ok {
		c.held -= int64(len(v.blocks))
		delete(c.m, ino)
	}
}

// Rekey updates the key after a metadata-only change made by us.
func (c *SumCache) Rekey(ino uint64, old, k StatKey) {
	c.mu.Lock()
	if v, ok := c.m[ino]; ok && v.key == old {
		v.key = k
		v.xattrs, v.xknown = nil, false // the change may have been to them
		c.m[ino] = v
	}
	c.mu.Unlock()
}

// Drop forgets ino.
func (c *SumCache) Drop(ino uint64) {
	c.mu.Lock()
	c.drop(ino)
	c.mu.Unlock()
}
