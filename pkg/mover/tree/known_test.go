package tree

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func entry(path string, ctime int64, xs ...Xattr) Entry {
	return Entry{Path: path, Kind: KindFile, Ino: 7, Size: 10, Mtime: ctime, Ctime: ctime, Xattrs: xs}
}

// An earlier scan's attributes are reused only for the same inode at the
// same stat key, and only if that key was not racy when the scan started.
func TestEarlierReuse(t *testing.T) {
	taken := time.Unix(1000, 0)
	old := taken.Add(-time.Minute).UnixNano()
	x := Xattr{Name: "user.k", Value: []byte("v")}
	p := &Earlier{Entries: []Entry{entry("a", old, x), entry("b", taken.UnixNano()-int64(time.Millisecond), x)}, Taken: taken, Window: 20 * time.Millisecond}

	if got, ok := p.Xattrs(ptr(entry("a", old))); !ok || len(got) != 1 || got[0].Name != "user.k" {
		t.Fatalf("unchanged entry: %v %v", got, ok)
	}
	changed := entry("a", old+1) // an attribute set since moves ctime
	if _, ok := p.Xattrs(&changed); ok {
		t.Error("reused across a ctime change")
	}
	other := entry("a", old)
	other.Ino = 8
	if _, ok := p.Xattrs(&other); ok {
		t.Error("reused for another inode at the same path")
	}
	if _, ok := p.Xattrs(ptr(entry("b", taken.UnixNano()-int64(time.Millisecond)))); ok {
		t.Error("reused attributes read within the racy window of their last change")
	}
	if _, ok := p.Xattrs(ptr(entry("c", old))); ok {
		t.Error("reused for a path the earlier scan did not see")
	}
	if _, ok := (&Earlier{Entries: p.Entries, Window: p.Window}).Xattrs(ptr(entry("a", old))); ok {
		t.Error("reused from a scan with no start time")
	}
}

func ptr(e Entry) *Entry { return &e }

// On a real filesystem: a rescan with the earlier scan as Known sees an
// attribute set, changed or removed since, as a scan from scratch does.
func TestScanWithEarlierSeesAttributeChanges(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "f")
	if err := os.WriteFile(f, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(f, "user.a", []byte("1"), 0); errors.Is(err, unix.ENOTSUP) {
		t.Fatalf("the test directory's filesystem has no user.* attributes: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	// Past the racy window of the last change, as in a sender's next pass.
	time.Sleep(2 * DefaultWindow())
	first, err := Scan(root, ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	known := &Earlier{Entries: first, Taken: time.Now().Add(-DefaultWindow()), Window: DefaultWindow()}
	check := func(want string) {
		t.Helper()
		got, err := Scan(root, ".", known)
		if err != nil {
			t.Fatal(err)
		}
		fresh, _ := Scan(root, ".", nil)
		if len(got) != 2 || xattrString(got[1].Xattrs) != want || xattrString(fresh[1].Xattrs) != want {
			t.Fatalf("with earlier %q, from scratch %q, want %q", xattrString(got[1].Xattrs), xattrString(fresh[1].Xattrs), want)
		}
	}
	check("user.a=1")
	if err := unix.Setxattr(f, "user.a", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	check("user.a=2")
	if err := unix.Removexattr(f, "user.a"); err != nil {
		t.Fatal(err)
	}
	check("")
}

func xattrString(xs []Xattr) string {
	s := ""
	for _, x := range xs {
		s += x.Name + "=" + string(x.Value)
	}
	return s
}

// The receiver's record of the attributes it set holds only at the key it
// was made at, and not past a metadata change of its own (Rekey).
func TestSumCacheXattrs(t *testing.T) {
	c := NewSumCache(0)
	k := StatKey{Size: 10, Mtime: 1, Ctime: 1}
	e := Entry{Kind: KindFile, Ino: 3, Size: 10, Mtime: 1, Ctime: 1}
	x := []Xattr{{Name: "user.k", Value: []byte("v")}}
	c.SetXattrs(3, k, x)
	if _, ok := c.Xattrs(&e); ok {
		t.Fatal("attributes kept for an inode without sums")
	}
	c.Put(3, k, []Hash{{1}}, time.Time{})
	c.SetXattrs(3, k, x)
	if got, ok := c.Xattrs(&e); !ok || len(got) != 1 {
		t.Fatalf("got %v %v", got, ok)
	}
	e2 := e
	e2.Ctime = 2
	if _, ok := c.Xattrs(&e2); ok {
		t.Error("attributes returned at another ctime")
	}
	c.Rekey(3, k, StatKey{Size: 10, Mtime: 1, Ctime: 2})
	if _, ok := c.Xattrs(&e2); ok {
		t.Error("attributes kept across our own metadata change")
	}
	var none *SumCache
	if _, ok := none.Xattrs(&e); ok {
		t.Error("a nil cache knows nothing")
	}
}
