package safefs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
)

// Root is a directory that confines every operation.
type Root struct {
	Path   string
	b      *beneath.Root
	fd     int        // b's handle
	mu     sync.Mutex // guards dirs; parallel file writers remove entries too
	dirs   map[string]int
	maxDir int
}

// Open opens dir as a confinement root.
func Open(dir string) (*Root, error) {
	b, err := beneath.New(dir)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return &Root{Path: dir, b: b, fd: b.FD(), dirs: map[string]int{}, maxDir: 256}, nil
}

// ForceWalk disables openat2, to test the fallback.
func (r *Root) ForceWalk() { r.b.ForceWalk() }

// Close releases the root and cached directories.
func (r *Root) Close() error {
	r.Forget()
	return r.b.Close()
}

// Forget drops cached directory handles; call after moving or removing dirs.
func (r *Root) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, fd := range r.dirs {
		unix.Close(fd)
		delete(r.dirs, k)
	}
}

// Dir returns an O_PATH handle on the directory p, owned by the cache.
func (r *Root) Dir(p string) (int, error) {
	if p == "." {
		return r.fd, nil
	}
	r.mu.Lock()
	fd, ok := r.dirs[p]
	r.mu.Unlock()
	if ok {
		return fd, nil
	}
	fd, err := r.OpenDir(p)
	if err == nil {
		r.mu.Lock()
		r.dirs[p] = fd
		r.mu.Unlock()
	}
	return fd, err
}

// OpenDir resolves the directory p (not ".") to an O_PATH handle owned by
// the caller, so it stays valid whatever the cache does.
func (r *Root) OpenDir(p string) (int, error) {
	if err := CheckPath(p); err != nil {
		return -1, err
	}
	if p == "." {
		return unix.Dup(r.fd)
	}
	fd, err := r.resolve(p)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%w %q: a component is a symlink or not a directory", ErrBadPath, p)
		}
		return -1, fmt.Errorf("open directory %q: %w", p, err)
	}
	return fd, nil
}

func (r *Root) resolve(p string) (int, error) {
	return r.b.Open(p, unix.O_PATH|unix.O_DIRECTORY)
}

// trim bounds the cache; only called where no cached handle is in use.
func (r *Root) trim() {
	r.mu.Lock()
	full := len(r.dirs) >= r.maxDir
	r.mu.Unlock()
	if full {
		r.Forget()
	}
}

// forgetUnder drops cached handles for p and everything below it.
func (r *Root) forgetUnder(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, fd := range r.dirs {
		if k == p || strings.HasPrefix(k, p+"/") {
			unix.Close(fd)
			delete(r.dirs, k)
		}
	}
}

// parent resolves p's directory and returns it with the final name.
func (r *Root) parent(p string) (int, string, error) {
	if err := CheckPath(p); err != nil {
		return -1, "", err
	}
	if p == "." {
		return -1, "", fmt.Errorf("%w: the root itself", ErrBadPath)
	}
	dir, name := split(p)
	fd, err := r.Dir(dir)
	return fd, name, err
}

// Lstat stats p without following a final symlink.
func (r *Root) Lstat(p string) (unix.Stat_t, error) {
	r.trim()
	var st unix.Stat_t
	if p == "." {
		return st, unix.Fstat(r.fd, &st)
	}
	dfd, name, err := r.parent(p)
	if err != nil {
		return st, err
	}
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// Create makes a fresh regular file at p, replacing whatever was there, so a
// hard link sharing the old inode is never written through.
func (r *Root) Create(p string) (*os.File, error) {
	r.trim()
	dfd, name, err := r.parent(p)
	if err != nil {
		return nil, err
	}
	fd, err := r.CreateAt(dfd, name, p, 0600)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// CreateAt is Create of name in a directory handle the caller resolved
// (with OpenDir) for the parent of p; perm (less the umask) is the initial
// mode. It returns the raw descriptor: small files need no *os.File.
func (r *Root) CreateAt(dfd int, name, p string, perm uint32) (int, error) {
	const fl = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, name, fl, perm)
	if err == unix.EEXIST {
		if err = r.removeAt(dfd, name, p); err != nil {
			return -1, err
		}
		fd, err = unix.Openat(dfd, name, fl, perm)
	}
	if err != nil {
		return -1, &os.PathError{Op: "create", Path: p, Err: err}
	}
	return fd, nil
}

// OpenRW opens an existing regular file at p for in-place updates.
func (r *Root) OpenRW(p string) (*os.File, error) {
	return r.openFile(p, unix.O_RDWR)
}

// OpenRead opens a regular file at p for hashing.
func (r *Root) OpenRead(p string) (*os.File, error) {
	return r.openFile(p, unix.O_RDONLY)
}

func (r *Root) openFile(p string, mode int) (*os.File, error) {
	r.trim()
	dfd, name, err := r.parent(p)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(dfd, name, mode|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EINVAL}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Mkdir ensures p is a directory, replacing a non-directory.
func (r *Root) Mkdir(p string) error {
	r.trim()
	if p == "." {
		return nil
	}
	dfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	err = unix.Mkdirat(dfd, name, 0700)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		if err = r.removeAt(dfd, name, p); err == nil {
			err = unix.Mkdirat(dfd, name, 0700)
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	return nil
}

// MkdirAll creates missing parents of p (placeholders; metadata comes later).
func (r *Root) MkdirAll(p string) error {
	if err := CheckPath(p); err != nil || p == "." {
		return err
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		if _, err := r.Dir(q); err == nil {
			continue
		}
		if err := r.Mkdir(q); err != nil {
			return err
		}
	}
	return nil
}

// Symlink makes p a symlink to target, replacing what was there. The target
// is stored verbatim: the receiver never follows links it creates.
func (r *Root) Symlink(target, p string) error {
	r.trim()
	dfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	err = unix.Symlinkat(target, dfd, name)
	if err == unix.EEXIST {
		if err = r.removeAt(dfd, name, p); err == nil {
			err = unix.Symlinkat(target, dfd, name)
		}
	}
	if err != nil {
		return &os.PathError{Op: "symlink", Path: p, Err: err}
	}
	return nil
}

// Mknod makes p a fifo (typ S_IFIFO) or a device node (S_IFCHR, S_IFBLK;
// needs CAP_MKNOD), replacing what was there. The node is created with no
// permissions; its mode, owner and times follow as metadata.
func (r *Root) Mknod(p string, typ uint32, rdev uint64) error {
	r.trim()
	dfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	err = unix.Mknodat(dfd, name, typ, int(rdev))
	if err == unix.EEXIST {
		if err = r.removeAt(dfd, name, p); err == nil {
			err = unix.Mknodat(dfd, name, typ, int(rdev))
		}
	}
	if err != nil {
		return &os.PathError{Op: "mknod", Path: p, Err: err}
	}
	return nil
}

// Link makes p a hard link to the regular file old, replacing what was there.
func (r *Root) Link(old, p string) error {
	r.trim()
	ofd, oname, err := r.parent(old)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(ofd, oname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("link %q to %q: source is not a regular file", p, old)
	}
	dfd, name, err := r.parent(p)
	if err != nil {
		return err
	}
	err = unix.Linkat(ofd, oname, dfd, name, 0)
	if err == unix.EEXIST {
		if err = r.removeAt(dfd, name, p); err == nil {
			err = unix.Linkat(ofd, oname, dfd, name, 0)
		}
	}
	if err != nil {
		return &os.PathError{Op: "link", Path: p, Err: err}
	}
	return nil
}

// Rename moves from to to, replacing to and creating missing parents.
func (r *Root) Rename(from, to string) error {
	r.trim()
	ffd, fname, err := r.parent(from)
	if err != nil {
		return err
	}
	if dir, _ := split(to); dir != "." {
		if err := r.MkdirAll(dir); err != nil {
			return err
		}
	}
	// Resolve again: MkdirAll may have evicted the cache.
	if ffd, fname, err = r.parent(from); err != nil {
		return err
	}
	tfd, tname, err := r.parent(to)
	if err != nil {
		return err
	}
	err = unix.Renameat(ffd, fname, tfd, tname)
	if err == unix.ENOTEMPTY || err == unix.EEXIST || err == unix.EISDIR || err == unix.ENOTDIR {
		if err = r.removeAt(tfd, tname, to); err == nil {
			err = unix.Renameat(ffd, fname, tfd, tname)
		}
	}
	r.Forget()
	if err != nil {
		return &os.PathError{Op: "rename", Path: from + " -> " + to, Err: err}
	}
	return nil
}

// Syncfs makes everything written to the root's filesystem durable (the
// root's own handle is O_PATH, which syncfs refuses).
func (r *Root) Syncfs() error {
	fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// Remove deletes p recursively; a missing p is not an error.
func (r *Root) Remove(p string) error {
	r.trim()
	dfd, name, err := r.parent(p)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	return r.removeAt(dfd, name, p)
}

func (r *Root) removeAt(dfd int, name, p string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	// A directory: empty it through a descriptor opened without following.
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = r.removeAt(fd, n, p+"/"+n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	r.forgetUnder(p)
	if err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err == unix.ENOENT {
		err = nil
	}
	return err
}
