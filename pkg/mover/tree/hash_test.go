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
