// Package safefs performs the receiver's filesystem changes strictly inside
// one directory. Every path from the peer is validated lexically and then
// resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) (or a
// component-by-component O_NOFOLLOW walk on kernels without openat2), so
// neither "..", absolute paths nor symlinks planted anywhere in the tree can
// make a write land outside it.
package safefs

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPath reports a path the peer must never send.
var ErrBadPath = errors.New("unsafe path")

// MaxPath bounds incoming paths (Linux PATH_MAX).
const MaxPath = 4095

// CheckPath validates a relative, clean, slash-separated path. "." is the root.
func CheckPath(p string) error {
	if p == "." {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadPath, p, why) }
	switch {
	case p == "":
		return bad("empty")
	case len(p) > MaxPath:
		return bad("too long")
	case p[0] == '/':
		return bad("absolute")
	case strings.IndexByte(p, 0) >= 0:
		return bad("NUL byte")
	}
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "" || c == ".":
			return bad("not clean")
		case c == "..":
			return bad("parent reference")
		case len(c) > 255:
			return bad("name too long")
		}
	}
	return nil
}

// split returns the parent path ("." for top level) and the last name.
func split(p string) (string, string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// Split returns the parent path ("." for top level) and the last name of p.
func Split(p string) (dir, name string) { return split(p) }
