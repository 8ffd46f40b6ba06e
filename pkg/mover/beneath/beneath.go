// Package beneath opens paths below a directory without ever leaving it.
// Both movers need it: the receiver writes what a peer names, and the sender
// reads a live volume whose app may swap a directory for a symlink between
// the scan and the open (a plain open would then follow it out of the
// volume, into the mover's own container and its TLS key).
package beneath

import (
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Root is an open directory that every Open stays below.
type Root struct {
	Path string
	fd   int
	walk atomic.Bool // the kernel lacks openat2 (before 5.6, or seccomp): walk instead
}

// New opens dir as a root.
func New(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &Root{Path: dir, fd: fd}, nil
}

// FD is the root's own O_PATH handle.
func (r *Root) FD() int { return r.fd }

// ForceWalk disables openat2, to test the fallback older kernels take.
func (r *Root) ForceWalk() { r.walk.Store(true) }

// Close releases the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Open opens p (relative, "." for the root) with flags. No component is
// followed if it is a symlink, the last one included (ELOOP), and ".."
// cannot climb out (EXDEV on openat2, ELOOP/ENOENT on the walk, which
// callers see as "vanished").
func (r *Root) Open(p string, flags int) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if p == "." || p == "" {
		return unix.Openat(r.fd, ".", flags, 0)
	}
	if !r.walk.Load() {
		fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{Flags: uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != unix.ENOSYS && err != unix.EPERM { // EPERM: seccomp filters
			return fd, err
		}
		r.walk.Store(true)
	}
	parts := strings.Split(p, "/")
	cur := r.fd
	for i, c := range parts {
		if c == ".." {
			if cur != r.fd {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags
		}
		fd, err := unix.Openat(cur, c, f, 0)
		if cur != r.fd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}
