// Package watch tracks changed paths under a directory with inotify, so an
// update pass costs what changed rather than the volume size. inotify can
// lose events (queue overflow, races while adding watches on new
// directories), and never sees writes through a shared mapping or from
// another host: callers must back it with full rescans.
package watch

import (
	"errors"
	"os"
	"path"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const mask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF |
	unix.IN_MOVE_SELF | unix.IN_DONT_FOLLOW | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// Watcher collects dirty paths (relative, "." for the root).
type Watcher struct {
	root   string
	fd     int
	limit  int        // directories watched at most (0: no limit)
	readMu sync.Mutex // one reader of fd at a time (Drain)
	buf    []byte
	closed bool
	mu     sync.Mutex
	wds    map[int]string
	dirty  map[string]time.Time
	trees  map[string]bool
	oflow  bool
	signal chan struct{}
	done   chan struct{}
}

// ErrTooMany: the tree has more directories than the watcher may watch.
var ErrTooMany = errors.New("too many directories to watch")

// New watches every directory under root, failing with ErrTooMany past
// limit directories (0: no limit). Watches are a per-user budget of
// the node (fs.inotify.max_user_watches), shared with the node's other pods.
func New(root string, limit int) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, &os.PathError{Op: "inotify_init", Path: root, Err: err}
	}
	w := &Watcher{root: root, fd: fd, limit: limit, buf: make([]byte, 64<<10), wds: map[int]string{},
		dirty: map[string]time.Time{}, trees: map[string]bool{}, signal: make(chan struct{}, 1), done: make(chan struct{})}
	if err := w.addTree("."); err != nil {
		unix.Close(fd)
		return nil, err
	}
	go w.loop()
	return w, nil
}

// C is signalled when new changes arrive.
func (w *Watcher) C() <-chan struct{} { return w.signal }

// Changes are the paths changed since the last Take.
type Changes struct {
	// Paths changed, with when each was first seen to.
	Paths map[string]time.Time
	// Trees are the directories among Paths that were created or moved in:
	// what is inside them is new too. Another directory in Paths changed
	// itself (its attributes, or it was removed); its entries that changed
	// are in Paths of their own.
	Trees map[string]bool
	// Overflow: events were lost, only a full rescan is exact.
	Overflow bool
}

// Take returns and clears the changes seen so far.
func (w *Watcher) Take() Changes {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := Changes{Paths: w.dirty, Trees: w.trees, Overflow: w.oflow}
	w.dirty, w.trees, w.oflow = map[string]time.Time{}, map[string]bool{}, false
	return c
}

// Pending reports the number of dirty paths and the oldest change time.
func (w *Watcher) Pending() (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dirty), Oldest(w.dirty)
}

// Oldest is the earliest change time of a dirty set (zero when empty).
func Oldest(dirty map[string]time.Time) time.Time {
	var oldest time.Time
	for _, t := range dirty {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}

// Peek returns up to limit dirty paths without clearing them.
func (w *Watcher) Peek(limit int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, min(limit, len(w.dirty)))
	for p := range w.dirty {
		if len(out) == limit {
			break
		}
		out = append(out, p)
	}
	return out
}

// Close stops watching.
func (w *Watcher) Close() {
	close(w.done)
	w.readMu.Lock()
	w.closed = true
	unix.Close(w.fd)
	w.readMu.Unlock()
}

func (w *Watcher) mark(p string) {
	if _, ok := w.dirty[p]; !ok {
		w.dirty[p] = time.Now()
	}
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// addTree watches dir and its subdirectories; it marks them dirty too, as
// files created before the watch existed would otherwise go unseen.
func (w *Watcher) addTree(dir string) error {
	full := path.Join(w.root, dir)
	wd, err := unix.InotifyAddWatch(w.fd, full, mask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if errors.Is(err, unix.ENOSPC) {
			return errors.New("inotify watch limit reached (raise fs.inotify.max_user_watches)")
		}
		return &os.PathError{Op: "inotify_add_watch", Path: full, Err: err}
	}
	w.mu.Lock()
	w.wds[wd] = dir
	n := len(w.wds)
	w.mu.Unlock()
	if w.limit > 0 && n > w.limit {
		return ErrTooMany
	}
	ents, err := os.ReadDir(full)
	if err != nil {
		return nil // vanished; its parent's event covers it
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := w.addTree(path.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// loop drains events as they come; poll's timeout lets Close end it.
func (w *Watcher) loop() {
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 200)
		select {
		case <-w.done:
			return
		default:
		}
		if err != nil && err != unix.EINTR {
			w.lost()
			return
		}
		w.Drain()
	}
}

func (w *Watcher) lost() {
	w.mu.Lock()
	w.oflow = true
	w.mu.Unlock()
}

// Drain reads every event queued so far, and watches the directories they
// created: once it returns, Take reflects every change made before it was
// called (the kernel queues an event before the system call returns).
func (w *Watcher) Drain() {
	w.readMu.Lock()
	defer w.readMu.Unlock()
	for !w.closed {
		n, err := unix.Read(w.fd, w.buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err != nil {
			w.lost()
			return
		}
		for _, d := range w.note(w.buf[:n]) {
			if err := w.addTree(d); err != nil {
				w.lost() // an unwatched directory: only a full rescan is exact
			}
		}
	}
}

// note marks the paths of a buffer of events and returns the directories
// created or moved in.
func (w *Watcher) note(buf []byte) (newDirs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameb := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.oflow = true
			w.mark(".")
			continue
		}
		dir, ok := w.wds[int(ev.Wd)]
		if !ok {
			continue
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(w.wds, int(ev.Wd))
			continue
		}
		name := cstr(nameb)
		p := dir
		if name != "" {
			p = path.Join(dir, name)
		}
		w.mark(p)
		if ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
			newDirs = append(newDirs, p)
			w.trees[p] = true
		}
	}
	return newDirs
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
