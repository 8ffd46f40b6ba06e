package tree

import (
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
		Racy(StatKey{Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime}, p.Taken, p.Window) {
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
	s := &scanner{root: root, b: b, work: make(chan string, 1024), known: known}
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
	all := make([]Entry, 0, n)
	all = append(all, out...)
	for _, c := range s.out {
		all = append(all, c...)
	}
	slices.SortFunc(all, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return all, nil
}

// lookup returns the entry at sub with its attributes; ok is false when
// it is gone or of a kind not copied.
func lookup(b *beneath.Root, root, sub string) (Entry, bool, error) {
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
	out     [][]Entry // one chunk per directory
	err     error
	backlog []string
}

func (s *scanner) loop() {
	for dir := range s.work {
		ents, subdirs, err := s.readDir(dir)
		s.mu.Lock()
		if err != nil && s.err == nil {
			s.err = err
		}
		if len(ents) > 0 {
			s.out = append(s.out, ents)
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

func (s *scanner) knownXattrs(e *Entry) ([]Xattr, bool) {
	if s.known == nil {
		return nil, false
	}
	return s.known.Xattrs(e)
}

func (s *scanner) readDir(dir string) ([]Entry, []string, error) {
	full := join(s.root, dir)
	fd, err := s.b.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return nil, nil, nil // vanished, or now a symlink: the next pass sees it
		}
		return nil, nil, &os.PathError{Op: "open", Path: full, Err: err}
	}
	f := os.NewFile(uintptr(fd), full)
	defer f.Close()
	xdir := fdPath(fd, full)
	var ents []Entry
	var subdirs []string
	for {
		names, err := f.Readdirnames(1024)
		ents = slices.Grow(ents, len(names))
		for _, n := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // vanished
			}
			p := n
			if dir != "." {
				p = dir + "/" + n
			}
			e, ok := FromStat(p, &st)
			if !ok {
				continue
			}
			switch e.Kind {
			case KindDir:
				subdirs = append(subdirs, p)
			case KindSymlink:
				if e.Target, err = readlinkat(fd, n); err != nil {
					continue
				}
			case KindFile:
				if e.Size > 0 && isSparseCandidate(&st) {
					e.Sparse = hasHoleAt(fd, n, st.Size)
				}
			}
			if e.Kind != KindSymlink {
				if x, ok := s.knownXattrs(&e); ok {
					e.Xattrs = x
				} else if e.Xattrs, err = ReadXattrs(xdir + "/" + n); err != nil {
					return nil, nil, &os.PathError{Op: "listxattr", Path: full + "/" + n, Err: err}
				}
			}
			ents = append(ents, e)
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return nil, nil, &os.PathError{Op: "readdir", Path: full, Err: err}
		}
	}
	return ents, subdirs, nil
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
