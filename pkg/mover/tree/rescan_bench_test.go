package tree

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// benchTree is a tree of 1,000 directories of 100 small files each, made
// once per test binary and removed by TestMain (TREE_BENCH_FILES overrides
// the count; TREE_BENCH_DIR names a tree to reuse, and keep).
var benchTree = sync.OnceValues(func() (string, error) {
	if d := os.Getenv("TREE_BENCH_DIR"); d != "" {
		return d, nil
	}
	n := 100000
	if v := os.Getenv("TREE_BENCH_FILES"); v != "" {
		fmt.Sscan(v, &n)
	}
	dir, err := os.MkdirTemp("", "tree-bench")
	if err != nil {
		return "", err
	}
	madeTree = dir
	buf := make([]byte, 1024)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%03d/f%06d", i%1000, i))
		if i < 1000 {
			os.MkdirAll(filepath.Dir(p), 0o755)
		}
		buf[0] = byte(i)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return "", err
		}
	}
	time.Sleep(2 * DefaultWindow())
	return dir, nil
})

var madeTree string

func TestMain(m *testing.M) {
	code := m.Run()
	if madeTree != "" {
		os.RemoveAll(madeTree)
	}
	os.Exit(code)
}

// BenchmarkVerifyCached is a verification of that tree with every file's
// sums cached: the records and the digest, no content read.
func BenchmarkVerifyCached(b *testing.B) {
	root, err := benchTree()
	if err != nil {
		b.Fatal(err)
	}
	cache := NewSumCache(0)
	es, err := Scan(root, ".", nil)
	if err != nil {
		b.Fatal(err)
	}
	LinkGroups(es)
	if _, err := VerifyEntries(root, es, cache, false, true); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := VerifyEntries(root, es, cache, false, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRescanWorkers is a sender's final pass over a tree it scanned
// before and nothing changed in (the scan with the earlier one as Known),
// by the number of directories read at once.
func BenchmarkRescanWorkers(b *testing.B) {
	root, err := benchTree()
	if err != nil {
		b.Fatal(err)
	}
	first, err := Scan(root, ".", nil)
	if err != nil {
		b.Fatal(err)
	}
	known := &Earlier{Entries: first, Taken: time.Now(), Window: DefaultWindow()}
	defer func(n int) { ScanWorkers = n }(ScanWorkers)
	for _, n := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ScanWorkers = n
			for range b.N {
				if _, err := Scan(root, ".", known); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
