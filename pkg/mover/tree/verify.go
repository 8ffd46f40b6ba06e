package tree

import (
	"cmp"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
)

// VerifyWorkers bounds parallel hashing during verification.
var VerifyWorkers = 4

// VerifyTree scans root and verifies it, every byte reread.
func VerifyTree(root string, owners bool) (*Verification, error) {
	es, err := Scan(root, ".", nil)
	if err != nil {
		return nil, err
	}
	LinkGroups(es)
	return VerifyEntries(root, es, nil, true, owners)
}

// VerifyEntries verifies a sorted, link-grouped scan of root. Content
// sums come from cache when the inode's stat key is unchanged, unless full
// asks to reread every byte. Work is handed out in runs of entries, not one
// by one: with the sums cached, an entry costs less than a hand-off
// between goroutines.
func VerifyEntries(root string, es []Entry, cache *SumCache, full, owners bool) (*Verification, error) {
	b, err := beneath.New(root)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	sums := make([]Hash, len(es))
	runs := make([]Hash, (len(es)+digestRun-1)/digestRun)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range VerifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hit [digestRun]bool
			var buf []byte
			for {
				r := int(next.Add(1)) - 1
				if r >= len(runs) {
					return
				}
				lo, hi := r*digestRun, min((r+1)*digestRun, len(es))
				part, ps := es[lo:hi], sums[lo:hi]
				clear(hit[:])
				if cache != nil && !full {
					cache.Contents(part, ps, hit[:len(part)])
				}
				for i := range part {
					e := &part[i]
					if e.Kind != KindFile || e.LinkTo != "" || hit[i] {
						continue
					}
					var err error
					if ps[i], err = contentSum(b, e, cache, full); err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
					}
				}
				runs[r], buf = runSum(part, ps, owners, buf)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return &Verification{Digest: digestOf(runs), es: es, sums: sums, owners: owners}, nil
}

// Warm hashes, one file at a time, the files of es that cache has no sums
// for, until stop closes: a receiver writing into a volume that already
// held the data (a move back) then verifies without rereading it in the
// downtime. Sums are kept only for files unchanged while read, and never
// racily (see SumCache).
func Warm(root string, es []Entry, cache *SumCache, stop <-chan struct{}) {
	b, err := beneath.New(root)
	if err != nil {
		return
	}
	defer b.Close()
	for i := range es {
		e := &es[i]
		if e.Kind != KindFile || e.LinkTo != "" {
			continue
		}
		select {
		case <-stop:
			return
		default:
		}
		if _, ok := cache.Get(e.Ino, e.Key()); !ok {
			contentSum(b, e, cache, false)
		}
	}
}

// contentSum reads e's content, unless the cache holds its sums at the key
// the open file has; callers look it up at the scan's key first.
func contentSum(b *beneath.Root, e *Entry, cache *SumCache, full bool) (Hash, error) {
	p := join(b.Path, e.Path)
	taken := time.Now()
	fd, err := b.Open(e.Path, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return Hash{}, fmt.Errorf("verify %s: %w", e.Path, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Hash{}, err
	}
	k := KeyOf(&st)
	if !full && cache != nil {
		if sums, ok := cache.Get(st.Ino, k); ok {
			return ContentSum(sums), nil
		}
	}
	if (st.Size+BlockSize-1)/BlockSize > MaxTrackedBlocks {
		return FileSum(f, st.Size, e.Sparse) // too large to cache sums for
	}
	sums, err := HashBlocks(f, st.Size, e.Sparse)
	if err != nil {
		return Hash{}, fmt.Errorf("verify %s: %w", e.Path, err)
	}
	if cache != nil {
		var st1 unix.Stat_t
		if unix.Fstat(fd, &st1) == nil && KeyOf(&st1) == k {
			cache.Put(st.Ino, k, sums, taken)
		}
	}
	return ContentSum(sums), nil
}
