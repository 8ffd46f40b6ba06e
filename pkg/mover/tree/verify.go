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

// Verify scans root and returns its digest and per-path records. Content
// sums, and attributes the cache was given, come from cache when the
// inode's stat key is unchanged, unless full asks to reread every byte.
func Verify(root string, cache *SumCache, full, owners bool) (Hash, []Record, error) {
	var known Known
	if cache != nil && !full {
		known = cache
	}
	es, err := Scan(root, ".", known)
	if err != nil {
		return Hash{}, nil, err
	}
	LinkGroups(es)
	return VerifyEntries(root, es, cache, full, owners)
}

// VerifyEntries is Verify on an existing sorted, link-grouped scan. Work is
// handed out in runs of entries, not one by one: with the sums cached, an
// entry costs less than a hand-off between goroutines.
func VerifyEntries(root string, es []Entry, cache *SumCache, full, owners bool) (Hash, []Record, error) {
	b, err := beneath.New(root)
	if err != nil {
		return Hash{}, nil, err
	}
	defer b.Close()
	rs := make([]Record, len(es))
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	const run = 256
	for range VerifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sums [run]Hash
			var hit [run]bool
			for {
				lo := int(next.Add(run)) - run
				if lo >= len(es) {
					return
				}
				part := es[lo:min(lo+run, len(es))]
				clear(hit[:])
				if cache != nil && !full {
					cache.Contents(part, sums[:len(part)], hit[:len(part)])
				}
				for i := range part {
					e := &part[i]
					if e.Kind == KindFile && e.LinkTo == "" && !hit[i] {
						var err error
						if sums[i], err = contentSum(b, e, cache, full); err != nil {
							mu.Lock()
							firstErr = cmp.Or(firstErr, err)
							mu.Unlock()
						}
					} else if e.Kind != KindFile || e.LinkTo != "" {
						sums[i] = Hash{}
					}
					rs[lo+i] = RecordOf(e, sums[i], owners)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Hash{}, nil, firstErr
	}
	return Digest(rs), rs, nil
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
		if _, ok := cache.Get(e.Ino, StatKey{Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime}); !ok {
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
