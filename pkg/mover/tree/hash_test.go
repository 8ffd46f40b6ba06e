package tree

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FileSum (constant memory, holes in O(1)) and ContentSum over HashBlocks
// (the cached form) must agree, for holes of every shape and for zeros
// written as data; and a hole of 15 TiB costs no time.
func TestFileSumAgreesAndSkipsHoles(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, size int64, data map[int64]int) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		for off, n := range data {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(off + int64(i))
			}
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	files := map[string]*os.File{
		"holes":     mk("holes", 10*BlockSize+123, map[int64]int{0: 10, 3 * BlockSize: BlockSize + 7, 9 * BlockSize: 5}),
		"tail hole": mk("tail", 5*BlockSize+1, map[int64]int{BlockSize: 1}),
		"zeros":     mk("zeros", 4*BlockSize, map[int64]int{}),
		"one block": mk("one", BlockSize, map[int64]int{5: 1}),
		"written zero": func() *os.File {
			f := mk("wz", 3*BlockSize, nil)
			f.WriteAt(make([]byte, 3*BlockSize), 0) // zeros as data
			return f
		}(),
	}
	for name, f := range files {
		st, _ := f.Stat()
		for _, sparse := range []bool{true, false} {
			blocks, err := HashBlocks(f, st.Size(), sparse)
			if err != nil {
				t.Fatal(err)
			}
			fs, err := FileSum(f, st.Size(), sparse)
			if err != nil {
				t.Fatal(err)
			}
			if fs != ContentSum(blocks) {
				t.Errorf("%s (sparse %v): FileSum and ContentSum differ", name, sparse)
			}
		}
	}
	huge := mk("huge", 15<<40, map[int64]int{15<<40 - 10: 10}) // ext4 stops just short of 16 TiB
	start := time.Now()
	if _, err := FileSum(huge, 15<<40, true); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a 15 TiB hole took %v to sum", took)
	}
}

// Contents answers what ContentSum of Get would, keeps the sum only for the
// key it was computed at, and answers nothing racy or for another key.
func TestContentsFollowsTheKey(t *testing.T) {
	c := NewSumCache(time.Second)
	old := time.Now().Add(-time.Hour)
	k := StatKey{Size: 10, Mtime: old.UnixNano(), Ctime: old.UnixNano()}
	a, b := []Hash{{1}}, []Hash{{2}, {3}}
	c.Put(1, k, a, time.Now())
	c.Put(2, k, b, time.Now())
	racy := StatKey{Size: 10, Mtime: time.Now().UnixNano(), Ctime: time.Now().UnixNano()}
	c.Put(3, racy, a, time.Now())
	es := []Entry{
		{Kind: KindFile, Ino: 1, Size: k.Size, Mtime: k.Mtime, Ctime: k.Ctime},
		{Kind: KindFile, Ino: 2, Size: k.Size, Mtime: k.Mtime, Ctime: k.Ctime},
		{Kind: KindFile, Ino: 3, Size: racy.Size, Mtime: racy.Mtime, Ctime: racy.Ctime},
		{Kind: KindFile, Ino: 4, Size: k.Size, Mtime: k.Mtime, Ctime: k.Ctime},
	}
	check := func(want ...Hash) {
		t.Helper()
		sums, hit := make([]Hash, len(es)), make([]bool, len(es))
		c.Contents(es, sums, hit)
		for i := range es {
			if hit[i] != (want[i] != Hash{}) || sums[i] != want[i] && hit[i] {
				t.Fatalf("entry %d: hit %v sum %x, want %x", i, hit[i], sums[i], want[i])
			}
		}
	}
	check(ContentSum(a), ContentSum(b), Hash{}, Hash{})
	check(ContentSum(a), ContentSum(b), Hash{}, Hash{}) // from the kept sums
	k2 := StatKey{Size: 10, Mtime: k.Mtime + 1, Ctime: k.Ctime + 1}
	c.Put(1, k2, b, time.Now())
	check(Hash{}, ContentSum(b), Hash{}, Hash{})
	es[0].Mtime, es[0].Ctime = k2.Mtime, k2.Ctime
	check(ContentSum(b), ContentSum(b), Hash{}, Hash{})
}
