package tree

import (
	"bytes"
	"errors"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// SameXattrs compares two sorted lists.
func SameXattrs(a, b []Xattr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// Replicated tells the attributes the mover copies and verifies. The
// SELinux label is the one exclusion: the destination cluster assigns its
// own (a copied label would lock the app out of its volume).
func Replicated(name string) bool {
	if name == "security.selinux" {
		return false
	}
	for _, ns := range []string{"user.", "security.", "trusted.", "system.posix_acl_access", "system.posix_acl_default"} {
		if strings.HasPrefix(name, ns) {
			return true
		}
	}
	return false
}

// ReadXattrs lists p's replicated attributes without following a symlink.
// A filesystem without xattr support has none.
func ReadXattrs(p string) ([]Xattr, error) { return readXattrs(p, unix.Llistxattr, unix.Lgetxattr) }

// ReadXattrsProc is ReadXattrs on a /proc/self/fd path, which must be followed.
func ReadXattrsProc(p string) ([]Xattr, error) { return readXattrs(p, unix.Listxattr, unix.Getxattr) }

var listBufs = sync.Pool{New: func() any { b := make([]byte, 1024); return &b }}

func readXattrs(p string, list func(string, []byte) (int, error), get func(string, string, []byte) (int, error)) ([]Xattr, error) {
	bp := listBufs.Get().(*[]byte)
	defer listBufs.Put(bp)
	buf := *bp
	var n int
	var err error
	for {
		n, err = list(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil || n == 0 {
		return nil, err
	}
	var out []Xattr
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if !Replicated(name) {
			continue
		}
		v, err := getXattr(p, name, get)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Xattr{Name: name, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func getXattr(p, name string, get func(string, string, []byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := get(p, name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
