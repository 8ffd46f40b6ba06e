package tree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
)

// ScanWorkers is how many directories are read at once; directory reads
// block on the disk, so a few more than the cores keeps it busy.
var ScanWorkers = 8

// Known tells a scan which extended attributes it may take as read: those
// of an inode that provably did not change since they were read (listing
// them is a third of a scan's cost).
type Known interface {
	Xattrs(e *Entry) ([]Xattr, bool)
}

// Earlier is a previous scan as Known: an entry with the same inode, kind
// and stat key, not racy at that scan's start, kept its attributes, since
// setting or removing one moves ctime.
type Earlier struct {
	Entries []Entry // sorted by path
	Taken   time.Time
	Window  time.Duration
}

// within narrows p to the entries below dir.
func (p *Earlier) within(dir string) *Earlier {
	if p == nil || p.Taken.IsZero() || dir == "." {
		return p
	}
	lo, hi := below(p.Entries, dir)
	return &Earlier{Entries: p.Entries[lo:hi], Taken: p.Taken, Window: p.Window}
}

func knownXattrs(k Known, e *Entry) ([]Xattr, bool) {
	if k == nil {
		return nil, false
	}
	return k.Xattrs(e)
}

// Xattrs implements Known.
func (p *Earlier) Xattrs(e *Entry) ([]Xattr, bool) {
	if p == nil || p.Taken.IsZero() {
		return nil, false
	}
	i, ok := slices.BinarySearchFunc(p.Entries, e.Path, func(x Entry, t string) int { return strings.Compare(x.Path, t) })
	if !ok {
		return nil, false
	}
	o := &p.Entries[i]
	if o.Ino != e.Ino || o.Kind != e.Kind || o.Size != e.Size || o.Mtime != e.Mtime || o.Ctime != e.Ctime ||
		Racy(e.Key(), p.Taken, p.Window) {
		return nil, false
	}
	return o.Xattrs, true
}

// Scan lists root's subtree at sub ("." for everything), sorted by path.
// Entries that vanish while scanning are skipped: the live tree moves on and
// the next pass catches up. Sockets are skipped (see Kind).
//
// Every path is resolved beneath root (package beneath): a directory the app
// swaps for a symlink mid-scan is skipped, never followed out of the volume.
// Attributes are read unless known says they did not change (known may be nil).
func Scan(root, sub string, known Known) ([]Entry, error) {
	b, err := beneath.New(root)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	first, ok, err := lookup(b, root, sub)
	if err != nil || !ok {
		return nil, err
	}
	out := []Entry{first}
	if first.Kind != KindDir {
		return out, nil
	}
	s := &scanner{root: root, b: b, work: make(chan string, 1024), known: known, out: map[string][]Entry{}}
	s.pending.Add(1)
	s.work <- sub
	var wg sync.WaitGroup
	for range ScanWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); s.loop() }()
	}
	go func() { s.pending.Wait(); close(s.work) }()
	wg.Wait()
	if s.err != nil {
		return nil, s.err
	}
	// One allocation of the final size: growing one slice of ~170-byte
	// entries as directories come in cost a quarter of a 100k-file scan.
	n := len(out)
	for _, c := range s.out {
		n += len(c)
	}
	return s.order(append(make([]Entry, 0, n), out...), sub), nil
}

// order appends the entries below dir to all in path order: dir's own
// entries (each directory's are sorted as it is read), with each
// subdirectory's placed where its name and a slash sort among them, not
// right after the subdirectory ("a/b-c" sorts between "a/b" and "a/b/x").
// No global sort: each entry is compared about once.
func (s *scanner) order(all []Entry, dir string) []Entry {
	ents := s.out[dir]
	var subs []string
	for i := range ents {
		if ents[i].Kind == KindDir {
			subs = append(subs, ents[i].Path+"/")
		}
	}
	slices.Sort(subs)
	j := 0
	for i := range ents {
		for ; j < len(subs) && subs[j] < ents[i].Path; j++ {
			all = s.order(all, subs[j][:len(subs[j])-1])
		}
		all = append(all, ents[i])
	}
	for ; j < len(subs); j++ {
		all = s.order(all, subs[j][:len(subs[j])-1])
	}
	return all
}

// Lookup returns the entry at p below root, with its attributes; ok is
// false when it is gone or of a kind not copied.
func Lookup(root, p string) (e Entry, ok bool, err error) {
	b, err := beneath.New(root)
	if err != nil {
		return Entry{}, false, err
	}
	defer b.Close()
	return lookup(b, root, p)
}

// Reserved is the directory at a volume's root that the mover keeps for
// itself (a standby's undo log, package undo): no scan lists it, so it is
// never copied, compared or counted in a digest.
const Reserved = ".smig-undo"

// IsReserved reports whether p is Reserved or lies below it.
func IsReserved(p string) bool { return reserved(p) }

func reserved(p string) bool {
	return p == Reserved || strings.HasPrefix(p, Reserved+"/")
}

// lookup returns the entry at sub with its attributes; ok is false when
// it is gone, of a kind not copied, or reserved.
func lookup(b *beneath.Root, root, sub string) (Entry, bool, error) {
	if reserved(sub) {
		return Entry{}, false, nil
	}
	dir, name := path.Split(sub)
	dfd, xdir := unix.AT_FDCWD, root
	if sub == "." {
		name = root
	} else {
		var err error
		if dfd, err = b.Open(path.Clean("./"+dir), unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return Entry{}, false, nil // vanished or no longer a directory
		}
		defer unix.Close(dfd)
		xdir = fdPath(dfd, join(root, dir))
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Entry{}, false, nil
		}
		return Entry{}, false, &os.PathError{Op: "lstat", Path: join(root, sub), Err: err}
	}
	e, ok := FromStat(sub, &st)
	if !ok {
		return Entry{}, false, nil
	}
	switch e.Kind {
	case KindSymlink:
		e.Target, _ = readlinkat(dfd, name)
		return e, true, nil
	case KindFile:
		if e.Size > 0 && isSparseCandidate(&st) {
			e.Sparse = hasHoleAt(dfd, name, st.Size)
		}
	}
	x := root
	if sub != "." {
		x = xdir + "/" + name
	}
	var err error
	if e.Xattrs, err = ReadXattrs(x); err != nil {
		return Entry{}, false, &os.PathError{Op: "listxattr", Path: join(root, sub), Err: err}
	}
	return e, true, nil
}

type scanner struct {
	root    string
	b       *beneath.Root
	work    chan string
	pending sync.WaitGroup
	known   Known
	mu      sync.Mutex
	out     map[string][]Entry // each directory's entries, sorted
	err     error
	backlog []string
}

func (s *scanner) loop() {
	for dir := range s.work {
		ents, subdirs, err := s.readDir(dir)
		slices.SortFunc(ents, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
		s.mu.Lock()
		if err != nil && s.err == nil {
			s.err = err
		}
		if len(ents) > 0 {
			s.out[dir] = ents
		}
		s.mu.Unlock()
		s.pending.Add(len(subdirs))
		for _, d := range subdirs {
			select {
			case s.work <- d:
			default:
				// Queue full: recurse here rather than deadlock.
				go func(d string) { s.work <- d }(d)
			}
		}
		s.pending.Done()
	}
}

// knownIn narrows what the scan may take as read to one directory's
// entries, where known can (an earlier scan: its lookups then search that
// directory's part only).
func (s *scanner) knownIn(dir string) Known {
	if p, ok := s.known.(*Earlier); ok {
		return p.within(dir)
	}
	return s.known
}

// dirBufs hold what getdents returns: names are read in place, and each
// is handed to fstatat from there, so an entry costs one allocation (its
// path) besides the system call.
var dirBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (s *scanner) readDir(dir string) ([]Entry, []string, error) {
	full := join(s.root, dir)
	fd, err := s.b.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return nil, nil, nil // vanished, or now a symlink: the next pass sees it
		}
		return nil, nil, &os.PathError{Op: "open", Path: full, Err: err}
	}
	defer unix.Close(fd)
	xdir := fdPath(fd, full)
	prefix := ""
	if dir != "." {
		prefix = dir + "/"
	}
	bp := dirBufs.Get().(*[]byte)
	defer dirBufs.Put(bp)
	buf := *bp
	known := s.knownIn(dir)
	var ents []Entry
	var subdirs []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, &os.PathError{Op: "readdir", Path: full, Err: err}
		}
		if n == 0 {
			break
		}
		ents = slices.Grow(ents, n/32)
		for off := 0; off < n; {
			// struct linux_dirent64: ino, off, reclen (at 16), type, name (at 19, NUL-terminated).
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			off += reclen
			l := bytes.IndexByte(name, 0)
			if l <= 0 || (l == 1 && name[0] == '.') || (l == 2 && name[0] == '.' && name[1] == '.') {
				continue
			}
			var st unix.Stat_t
			if fstatat(fd, &name[0], &st) != nil {
				continue // vanished
			}
			p := prefix + string(name[:l])
			nm := p[len(prefix):]
			if dir == "." && p == Reserved {
				continue
			}
			e, ok := FromStat(p, &st)
			if !ok {
				continue
			}
			switch e.Kind {
			case KindDir:
				subdirs = append(subdirs, p)
			case KindSymlink:
				if e.Target, err = readlinkat(fd, nm); err != nil {
					continue
				}
			case KindFile:
				if e.Size > 0 && isSparseCandidate(&st) {
					e.Sparse = hasHoleAt(fd, nm, st.Size)
				}
			}
			if e.Kind != KindSymlink {
				if x, ok := knownXattrs(known, &e); ok {
					e.Xattrs = x
				} else if e.Xattrs, err = ReadXattrs(xdir + "/" + nm); err != nil {
					return nil, nil, &os.PathError{Op: "listxattr", Path: full + "/" + nm, Err: err}
				}
			}
			ents = append(ents, e)
		}
	}
	return ents, subdirs, nil
}

// fstatat is unix.Fstatat on a NUL-terminated name already in memory,
// without copying it into a new C string.
func fstatat(dfd int, name *byte, st *unix.Stat_t) error {
	_, _, e := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dfd), uintptr(unsafe.Pointer(name)),
		uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// FromStat converts a stat result; ok is false for unsupported types.
func FromStat(p string, st *unix.Stat_t) (Entry, bool) {
	e := Entry{Path: p, Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Nlink: uint32(st.Nlink)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Kind, e.Size = KindFile, st.Size
	case unix.S_IFDIR:
		e.Kind = KindDir
	case unix.S_IFLNK:
		e.Kind = KindSymlink
	case unix.S_IFIFO:
		e.Kind = KindFifo
	case unix.S_IFCHR:
		e.Kind, e.Rdev = KindChar, st.Rdev
	case unix.S_IFBLK:
		e.Kind, e.Rdev = KindBlock, st.Rdev
	default:
		return e, false
	}
	return e, true
}

func isSparseCandidate(st *unix.Stat_t) bool { return st.Blocks*512 < st.Size }

// fdPath names the entries of the open directory dfd for the path-only
// system calls (extended attributes): through /proc the path stays the
// directory already opened, even if the app renames it or swaps a symlink
// in; without /proc, its path.
func fdPath(dfd int, dir string) string {
	if procFD {
		return "/proc/self/fd/" + strconv.Itoa(dfd)
	}
	return dir
}

var procFD = func() bool { _, err := os.Stat("/proc/self/fd"); return err == nil }()

// hasHoleAt asks the filesystem whether the file has a hole before EOF.
func hasHoleAt(dfd int, name string, size int64) bool {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	off, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	return err == nil && off < size
}

func readlinkat(dfd int, name string) (string, error) {
	for n := 256; n <= 1<<16; n *= 4 {
		b := make([]byte, n)
		k, err := unix.Readlinkat(dfd, name, b)
		if err != nil {
			return "", err
		}
		if k < n {
			return string(b[:k]), nil
		}
	}
	return "", unix.ENAMETOOLONG
}

func join(root, p string) string {
	if p == "." {
		return root
	}
	return path.Join(root, p)
}

// Join returns the OS path of tree path p under root.
func Join(root, p string) string { return join(root, p) }

// LinkGroups sets LinkTo on every hard link but the first (by path) of its
// inode group within the list, which must be sorted.
func LinkGroups(es []Entry) {
	first := map[uint64]string{}
	for i := range es {
		e := &es[i]
		e.LinkTo = ""
		if e.Kind != KindFile || e.Nlink < 2 {
			continue
		}
		if p, ok := first[e.Ino]; ok {
			e.LinkTo = p
		} else {
			first[e.Ino] = e.Path
		}
	}
}
