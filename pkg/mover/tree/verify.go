package tree

import (
	"fmt"
	"os"
	"sync"
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

// VerifyEntries is Verify on an existing sorted, link-grouped scan.
func VerifyEntries(root string, es []Entry, cache *SumCache, full, owners bool) (Hash, []Record, error) {
	b, err := beneath.New(root)
	if err != nil {
		return Hash{}, nil, err
	}
	defer b.Close()
	sums := make([]Hash, len(es))
	var firstErr error
	var mu sync.Mutex
	idx := make(chan int)
	var wg sync.WaitGroup
	for range VerifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				s, err := contentSum(b, &es[i], cache, full)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				sums[i] = s
			}
		}()
	}
	for i := range es {
		if es[i].Kind == KindFile && es[i].LinkTo == "" {
			idx <- i
		}
	}
	close(idx)
	wg.Wait()
	if firstErr != nil {
		return Hash{}, nil, firstErr
	}
	rs := make([]Record, len(es))
	for i := range es {
		rs[i] = RecordOf(&es[i], sums[i], owners)
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
		contentSum(b, e, cache, false)
	}
}

func contentSum(b *beneath.Root, e *Entry, cache *SumCache, full bool) (Hash, error) {
	// The scan that produced e already has the stat key: a cache hit costs
	// no system call at all.
	if !full && cache != nil && e.Ino != 0 {
		if sums, ok := cache.Get(e.Ino, StatKey{Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime}); ok {
			return ContentSum(sums), nil
		}
	}
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
