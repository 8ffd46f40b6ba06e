package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckPath(t *testing.T) {
	ok := []string{".", "a", "a/b", "a.b/c..d", "...", ".hidden"}
	bad := []string{"", "/a", "a/", "a//b", "./a", "a/.", "..", "a/../b", "../a", "a\x00", string(make([]byte, 300))}
	for _, p := range ok {
		if err := CheckPath(p); err != nil {
			t.Errorf("%q rejected: %v", p, err)
		}
	}
	for _, p := range bad {
		if err := CheckPath(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestSymlinkedParentRefusedBothResolvers(t *testing.T) {
	for _, walk := range []bool{false, true} {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		os.Mkdir(root, 0755)
		os.Mkdir(filepath.Join(base, "out"), 0755)
		os.Symlink("../out", filepath.Join(root, "l"))
		r, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		if walk {
			r.ForceWalk()
		}
		if f, err := r.Create("l/x"); err == nil {
			f.Close()
			t.Fatalf("walk=%v: created through a symlink", walk)
		}
		if err := r.Mkdir("l/d"); err == nil {
			t.Fatalf("walk=%v: mkdir through a symlink", walk)
		}
		if _, err := r.OpenRW("l"); err == nil {
			t.Fatalf("walk=%v: opened a symlink for writing", walk)
		}
		if err := r.SetMeta("l", Meta{Mode: 0777}); err != nil {
			t.Fatalf("walk=%v: meta on a symlink itself should work: %v", walk, err)
		}
		if st, _ := os.Stat(filepath.Join(base, "out")); st.Mode().Perm() != 0755 {
			t.Fatalf("walk=%v: chmod followed the symlink", walk)
		}
		ents, _ := os.ReadDir(filepath.Join(base, "out"))
		if len(ents) != 0 {
			t.Fatalf("walk=%v: wrote outside: %v", walk, ents)
		}
		r.Close()
	}
}
