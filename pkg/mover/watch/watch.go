// Package watch tracks changed paths under a directory with inotify, so an
// update pass costs what changed rather than the volume size. inotify can
// lose events (queue overflow, races while adding watches on new
// directories); callers must back it with periodic full rescans.
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
	mu     sync.Mutex
	wds    map[int]string
	dirty  map[string]time.Time
	oflow  bool
	signal chan struct{}
	done   chan struct{}
}

// New watches every directory under root.
func New(root string) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "inotify_init", Path: root, Err: err}
	}
	w := &Watcher{root: root, fd: fd, wds: map[int]string{}, dirty: map[string]time.Time{},
		signal: make(chan struct{}, 1), done: make(chan struct{})}
	if err := w.addTree("."); err != nil {
		unix.Close(fd)
		return nil, err
	}
	go w.loop()
	return w, nil
}

// C is signalled when new changes arrive.
func (w *Watcher) C() <-chan struct{} { return w.signal }

// Take returns and clears the dirty set; overflow means events were lost
// and a full rescan is needed.
func (w *Watcher) Take() (dirty map[string]time.Time, overflow bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, o := w.dirty, w.oflow
	w.dirty, w.oflow = map[string]time.Time{}, false
	return d, o
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
	unix.Close(w.fd) // unblocks the reader
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
	w.mu.Unlock()
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

func (w *Watcher) loop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		select {
		case <-w.done:
			return
		default:
		}
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.mu.Lock()
			w.oflow = true
			w.mu.Unlock()
			return
		}
		var newDirs []string
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
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
			}
		}
		w.mu.Unlock()
		for _, d := range newDirs {
			w.addTree(d)
		}
	}
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
