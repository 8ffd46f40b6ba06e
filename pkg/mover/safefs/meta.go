package safefs

import (
	"errors"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Meta is what SetMeta applies.
type Meta struct {
	Mode     uint32
	UID, GID uint32
	Mtime    int64
	Symlink  bool
	Owners   bool // chown too (only root can)
	// Xattrs are the attributes to have (tree.Replicated names); others of
	// those namespaces are removed. Never applied to symlinks.
	Xattrs []tree.Xattr
	// Fresh: the inode was just created by us, so it has no replicated
	// attribute yet and none need listing (one system call per file less).
	Fresh bool
}

func times(mtime int64) [2]unix.Timespec {
	return [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime)}
}

// SetMeta applies owner, mode and mtime to p without following a symlink.
func (r *Root) SetMeta(p string, m Meta) error {
	r.trim()
	dfd, name := r.fd, ""
	if p != "." {
		var err error
		if dfd, name, err = r.parent(p); err != nil {
			return err
		}
	}
	// O_PATH|O_NOFOLLOW pins the inode, so a swapped-in symlink cannot
	// redirect the chmod below.
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if p == "." {
		fd, err = unix.Dup(r.fd)
	}
	if err != nil {
		return &os.PathError{Op: "meta", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if m.Owners {
		if err := unix.Fchownat(fd, "", int(m.UID), int(m.GID), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: p, Err: err}
		}
	}
	if !isLink {
		// chmod through /proc on the pinned descriptor: O_PATH fds
		// cannot be fchmod'ed directly.
		if err := unix.Fchmodat(unix.AT_FDCWD, procPath(fd), m.Mode&07777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: p, Err: err}
		}
		if err := setXattrs(procPath(fd), p, m.Xattrs, false); err != nil {
			return err
		}
	}
	ts := times(m.Mtime)
	if err := unix.UtimesNanoAt(dfd, nameOrDot(name), ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

func nameOrDot(n string) string {
	if n == "" {
		return "."
	}
	return n
}

func procPath(fd int) string {
	return "/proc/self/fd/" + itoa(fd)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// umask is read once; the receiver never changes it.
var umask = func() uint32 {
	m := unix.Umask(0)
	unix.Umask(m)
	return uint32(m)
}()

// CreatePerm returns the mode to create a file of mode with, and whether
// that already is its final mode (no special bits, nothing masked), so the
// chmod can be skipped.
func CreatePerm(mode uint32) (perm uint32, final bool) {
	perm = mode & 0777
	return perm, mode&07777 == perm && perm&umask == 0
}

// FileMeta applies metadata through an open file; mode after chown because
// chown clears setuid bits.
func FileMeta(f *os.File, m Meta) error { return FDMeta(int(f.Fd()), f.Name(), m, false) }

// FDMeta is FileMeta on a descriptor; modeSet skips a chmod to the mode the
// file was created with (see CreatePerm).
func FDMeta(fd int, name string, m Meta, modeSet bool) error {
	if m.Owners {
		if err := unix.Fchown(fd, int(m.UID), int(m.GID)); err != nil {
			return &os.PathError{Op: "chown", Path: name, Err: err}
		}
	}
	if !modeSet {
		if err := unix.Fchmod(fd, m.Mode&07777); err != nil {
			return &os.PathError{Op: "chmod", Path: name, Err: err}
		}
	}
	if !m.Fresh || len(m.Xattrs) > 0 {
		if err := setXattrs(procPath(fd), name, m.Xattrs, m.Fresh); err != nil {
			return err
		}
	}
	ts := times(m.Mtime)
	// utimensat(fd, NULL, ...) sets times on the descriptor itself.
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return &os.PathError{Op: "utimes", Path: name, Err: e}
	}
	return nil
}

// setXattrs makes the replicated attributes of the inode behind p (a
// /proc/self/fd path, so nothing is resolved again) exactly want; name is
// for errors. ACLs are attributes too, set after chmod so the mode's group
// bits end as the source's mask. An attribute the receiver may not set
// (trusted.* without CAP_SYS_ADMIN, user.* on a filesystem without them)
// is an error: what is not replicated must not verify.
func setXattrs(p, name string, want []tree.Xattr, fresh bool) error {
	var have []tree.Xattr
	if !fresh {
		var err error
		if have, err = tree.ReadXattrsProc(p); err != nil {
			return &os.PathError{Op: "listxattr", Path: name, Err: err}
		}
	}
	keep := map[string]bool{}
	for _, x := range want {
		keep[x.Name] = true
	}
	for _, x := range have {
		if !keep[x.Name] {
			if err := unix.Removexattr(p, x.Name); err != nil && !errors.Is(err, unix.ENODATA) {
				return &os.PathError{Op: "removexattr " + x.Name, Path: name, Err: err}
			}
		}
	}
	for _, x := range want {
		if !tree.Replicated(x.Name) {
			return &os.PathError{Op: "setxattr " + x.Name, Path: name, Err: unix.EPERM}
		}
		if same(have, x) {
			continue
		}
		if err := unix.Setxattr(p, x.Name, x.Value, 0); err != nil {
			if errors.Is(err, unix.EPERM) && strings.HasPrefix(x.Name, "trusted.") {
				err = errors.New("operation not permitted (trusted.* needs CAP_SYS_ADMIN on the receiver)")
			}
			return &os.PathError{Op: "setxattr " + x.Name, Path: name, Err: err}
		}
	}
	return nil
}

func same(have []tree.Xattr, x tree.Xattr) bool {
	for _, h := range have {
		if h.Name == x.Name {
			return string(h.Value) == string(x.Value)
		}
	}
	return false
}
