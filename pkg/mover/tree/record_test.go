package tree

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The digest made in parallel runs is the one DigestOf makes in order, and
// any one changed fact in any run changes it; records name each path.
func TestDigestOverRuns(t *testing.T) {
	root := t.TempDir()
	for i := range 2*digestRun + 3 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%04d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	es, err := Scan(root, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyEntries(root, es, nil, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if v.Count() != len(es) || len(v.Records()) != len(es) || v.Records()[1].Path != "f0000" {
		t.Fatalf("count %d, records %d, want %d", v.Count(), len(v.Records()), len(es))
	}
	if d := DigestOf(v.es, v.sums, true); d != v.Digest {
		t.Fatalf("parallel digest %x, in order %x", v.Digest, d)
	}
	for _, i := range []int{0, digestRun - 1, digestRun, len(es) - 1} {
		es2 := append([]Entry(nil), v.es...)
		es2[i].Mode ^= 1
		if DigestOf(es2, v.sums, true) == v.Digest {
			t.Errorf("a changed mode at entry %d left the digest unchanged", i)
		}
		sums := append([]Hash(nil), v.sums...)
		sums[i][0] ^= 1
		if es[i].Kind == KindFile && DigestOf(v.es, sums, true) == v.Digest {
			t.Errorf("a changed content sum at entry %d left the digest unchanged", i)
		}
	}
	if DigestOf(v.es[:len(v.es)-1], v.sums, true) == v.Digest {
		t.Error("a missing last entry left the digest unchanged")
	}
}
