package receiver

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/undo"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

func (s *session) meta(e *tree.Entry) error {
	if s.block {
		return errBlockOp
	}
	if err := safefs.CheckPath(e.Path); err != nil {
		return err
	}
	if err := s.keep(func(l *undo.Log) error { return l.Meta(e.Path) }); err != nil {
		return err
	}
	before, berr := s.r.root.Lstat(e.Path)
	s.r.noteACL(e.Xattrs) // directories get theirs here
	err := s.r.root.SetMeta(e.Path, s.metaOf(e))
	if err != nil {
		return classify(err, "setting metadata of "+e.Path)
	}
	s.rekey(e.Path, before, berr)
	return nil
}

// rekey keeps a cached content sum valid across our own metadata changes,
// which move ctime but not the data.
func (s *session) rekey(p string, before unix.Stat_t, berr error) {
	if berr != nil || before.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	if after, err := s.r.root.Lstat(p); err == nil && after.Ino == before.Ino && after.Size == before.Size {
		s.r.cache.Rekey(before.Ino, tree.KeyOf(&before), tree.KeyOf(&after))
	}
}

var errBlockOp = errors.New("protocol error: tree operation sent to a block-volume receiver")

func (s *session) mkdir(e *tree.Entry) error {
	if s.block {
		return errBlockOp
	}
	if err := safefs.CheckPath(e.Path); err != nil {
		return err
	}
	if st, err := s.r.root.Lstat(e.Path); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := s.replaced(e.Path); err != nil {
			return err
		}
	}
	if err := s.r.root.Mkdir(e.Path); err != nil {
		return classify(err, "creating directory "+e.Path)
	}
	return nil
}

func (s *session) symlink(e *tree.Entry) error {
	if s.block {
		return errBlockOp
	}
	if e.Target == "" {
		return fmt.Errorf("protocol error: empty symlink target for %q", e.Path)
	}
	if err := s.replaced(e.Path); err != nil {
		return err
	}
	if err := s.r.root.Symlink(e.Target, e.Path); err != nil {
		return classify(err, "creating symlink "+e.Path)
	}
	return s.meta(e)
}

func (s *session) link(e *tree.Entry) error {
	if s.block {
		return errBlockOp
	}
	if err := safefs.CheckPath(e.LinkTo); err != nil {
		return err
	}
	if err := s.replaced(e.Path); err != nil {
		return err
	}
	before, berr := s.r.root.Lstat(e.LinkTo)
	if err := s.r.root.Link(e.LinkTo, e.Path); err != nil {
		return classify(err, "linking "+e.Path)
	}
	s.rekey(e.LinkTo, before, berr)
	return nil
}

func (s *session) delete(p string) error {
	if s.block {
		return errBlockOp
	}
	if p == "." {
		return fmt.Errorf("%w: refusing to delete the root", safefs.ErrBadPath)
	}
	if err := safefs.CheckPath(p); err != nil {
		return err
	}
	// Under the undo log, keeping p is its removal (into the log).
	if err := s.keep(func(l *undo.Log) error { return l.Replace(p) }); err != nil {
		return err
	}
	if err := s.r.root.Remove(p); err != nil {
		return classify(err, "deleting "+p)
	}
	return nil
}

func (s *session) rename(from, to string) error {
	if s.block {
		return errBlockOp
	}
	if from == "." || to == "." {
		return fmt.Errorf("%w: refusing to rename the root", safefs.ErrBadPath)
	}
	if err := s.keepRename(from, to); err != nil {
		return err
	}
	before, berr := s.r.root.Lstat(from)
	if err := s.r.root.Rename(from, to); err != nil {
		return classify(err, "renaming "+from)
	}
	s.rekey(to, before, berr)
	return nil
}

func (s *session) metaOf(e *tree.Entry) safefs.Meta {
	return safefs.Meta{Mode: e.Mode, UID: e.UID, GID: e.GID, Mtime: e.Mtime, Owners: s.owners, Xattrs: e.Xattrs}
}

// noteACL remembers a default ACL among xs (see Receiver.defaultACL).
func (r *Receiver) noteACL(xs []tree.Xattr) {
	for _, x := range xs {
		if x.Name == "system.posix_acl_default" {
			r.defaultACL.Store(true)
		}
	}
}

// node makes a fifo or device node, then its metadata.
func (s *session) node(e *tree.Entry) error {
	if s.block {
		return errBlockOp
	}
	if e.Path == "." {
		return fmt.Errorf("%w: the root itself", safefs.ErrBadPath)
	}
	if err := safefs.CheckPath(e.Path); err != nil {
		return err
	}
	typ := map[tree.Kind]uint32{tree.KindFifo: unix.S_IFIFO, tree.KindChar: unix.S_IFCHR, tree.KindBlock: unix.S_IFBLK}[e.Kind]
	if typ == 0 {
		return fmt.Errorf("protocol error: %s sent as a node", e.Kind)
	}
	if err := s.replaced(e.Path); err != nil {
		return err
	}
	if err := s.r.root.Mknod(e.Path, typ, e.Rdev); err != nil {
		return classify(err, "creating "+e.Kind.String()+" "+e.Path)
	}
	return s.meta(e)
}

// checkFile validates a whole small file before it is queued.
func (s *session) checkFile(m *wire.File) error {
	if s.block {
		return errBlockOp
	}
	if m.Entry.Size > wire.ChunkSize {
		return fmt.Errorf("protocol error: %q sent whole with %d bytes (at most %d)", m.Entry.Path, m.Entry.Size, wire.ChunkSize)
	}
	if int64(len(m.Data)) != m.Entry.Size {
		return fmt.Errorf("protocol error: %q carries %d bytes for size %d", m.Entry.Path, len(m.Data), m.Entry.Size)
	}
	if m.Entry.Path == "." {
		return fmt.Errorf("%w: the root itself", safefs.ErrBadPath)
	}
	return safefs.CheckPath(m.Entry.Path)
}

// fileAt writes a whole small file, checked by checkFile, as name in the
// directory handle dfd (its parent).
func (s *session) fileAt(dfd int, name string, m *wire.File) error {
	p := m.Entry.Path
	perm, final := safefs.CreatePerm(m.Entry.Mode)
	fd, err := s.r.root.CreateAt(dfd, name, p, perm)
	if err != nil {
		return classify(err, "creating "+p)
	}
	defer unix.Close(fd)
	for b := m.Data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return classify(err, "writing "+p)
		}
		b = b[n:]
	}
	var blocks []tree.Hash
	for off := 0; off < len(m.Data); off += tree.BlockSize {
		blocks = append(blocks, tree.BlockSum(m.Data[off:min(off+tree.BlockSize, len(m.Data))]))
	}
	s.r.Tracker.AddCopied(int64(len(m.Data)), 1)
	return s.finish(fd, &m.Entry, blocks, final, !s.r.defaultACL.Load())
}

// finish applies metadata and records the content sums under the final key.
func (s *session) finish(fd int, e *tree.Entry, blocks []tree.Hash, modeSet, fresh bool) error {
	m := s.metaOf(e)
	m.Fresh = fresh
	if err := safefs.FDMeta(fd, e.Path, m, modeSet); err != nil {
		return classify(err, "setting metadata of "+e.Path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if k := tree.KeyOf(&st); blocks != nil && st.Size == e.Size {
		s.r.cache.Put(st.Ino, k, blocks, time.Time{}) // we wrote these bytes
		s.r.cache.SetXattrs(st.Ino, k, e.Xattrs)      // and set these attributes
	} else {
		s.r.cache.Drop(st.Ino)
	}
	return nil
}

// begin opens a large file: fresh (whole copy) or existing (in-place delta).
func (s *session) begin(m *wire.File) error {
	if _, dup := s.files[m.ID]; dup {
		return fmt.Errorf("protocol error: file id %d already open", m.ID)
	}
	if len(s.files) >= 64 {
		return errors.New("protocol error: too many open files")
	}
	if s.block {
		return s.beginBlock(m)
	}
	e := m.Entry
	var f *os.File
	var err error
	var sums *fileSums
	// Sums are kept within the receiver's budget; a file past it is
	// hashed again at verification instead.
	n := blocks(e.Size)
	track := n <= tree.MaxTrackedBlocks && s.r.reserveSums(n)
	if !track {
		n = 0
	}
	if m.InPlace {
		if f, err = s.r.root.OpenRW(e.Path); err != nil {
			s.r.sumBudget.Add(n)
			return classify(err, "opening "+e.Path)
		}
		// Its old size, metadata and any tail sizing cuts off.
		if err := s.keep(func(l *undo.Log) error { return l.Overwrite(e.Path, f, e.Size, tailPast(f, e.Size)) }); err != nil {
			f.Close()
			s.r.sumBudget.Add(n)
			return err
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil {
			if b, ok := s.r.cache.Get(st.Ino, tree.KeyOf(&st)); ok && track {
				sums = newSums(append([]tree.Hash(nil), b...), st.Size, e.Size)
			}
		}
	} else {
		if err := s.replaced(e.Path); err != nil {
			s.r.sumBudget.Add(n)
			return err
		}
		if f, err = s.r.root.Create(e.Path); err != nil {
			s.r.sumBudget.Add(n)
			return classify(err, "creating "+e.Path)
		}
		if track {
			sums = newSums(nil, 0, e.Size)
		}
	}
	// Sizing first leaves unsent ranges as holes, as they are at the source.
	if err := f.Truncate(e.Size); err != nil {
		f.Close()
		s.r.sumBudget.Add(n)
		return classify(err, "sizing "+e.Path)
	}
	s.files[m.ID] = &openFile{f: f, e: e, sums: sums, budget: n, inPlace: m.InPlace, fresh: !m.InPlace && !s.r.defaultACL.Load()}
	return nil
}

func (s *session) open(id uint64) (*openFile, error) {
	of, ok := s.files[id]
	if !ok {
		return nil, fmt.Errorf("protocol error: data for unknown file id %d", id)
	}
	return of, nil
}

func (s *session) data(m *wire.Data) error {
	of, err := s.open(m.ID)
	if err != nil {
		return err
	}
	// Off and len are bounded (wire.MaxFileSize, the frame size): no overflow.
	if m.Off+int64(len(m.Data)) > of.e.Size {
		return fmt.Errorf("protocol error: write past end of %q", of.e.Path)
	}
	if of.inPlace && s.r.points.logs() {
		return s.holdWrite(of, m.Off, m.Data)
	}
	return s.write(of, m.Off, m.Data)
}

func (s *session) write(of *openFile, off int64, p []byte) error {
	if _, err := of.f.WriteAt(p, off); err != nil {
		return classify(err, "writing "+of.e.Path)
	}
	s.r.Tracker.AddCopied(int64(len(p)), 0)
	if !s.block {
		s.wrote(int64(len(p)))
	}
	s.track(of, off, p)
	return nil
}

// track updates the block sums for block-aligned writes and gives up on
// the cache for anything else (verification then rereads the file).
func (s *session) track(of *openFile, off int64, p []byte) {
	if of.sums == nil {
		return
	}
	if off%tree.BlockSize != 0 || (len(p)%tree.BlockSize != 0 && off+int64(len(p)) != of.e.Size) {
		of.sums = nil
		return
	}
	for i := 0; i < len(p); i += tree.BlockSize {
		of.sums.set(int((off+int64(i))/tree.BlockSize), tree.BlockSum(p[i:min(i+tree.BlockSize, len(p))]))
	}
}

func (s *session) punch(m *wire.Data) error {
	of, err := s.open(m.ID)
	if err != nil {
		return err
	}
	// Off and Len are each at most wire.MaxFileSize: the sum cannot overflow.
	if m.Len == 0 || m.Off+m.Len > of.e.Size {
		return fmt.Errorf("protocol error: punch [%d, +%d) outside %q (%d bytes)", m.Off, m.Len, of.e.Path, of.e.Size)
	}
	if err := s.overwriting(of, m.Off, m.Len); err != nil {
		return err
	}
	const mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	if err := unix.Fallocate(int(of.f.Fd()), mode, m.Off, m.Len); err != nil {
		// No hole support: write zeros, content stays right.
		if err := zeroFill(of.f, m.Off, m.Len); err != nil {
			return classify(err, "zeroing "+of.e.Path)
		}
	}
	if of.sums != nil && m.Off%tree.BlockSize == 0 && (m.Len%tree.BlockSize == 0 || m.Off+m.Len == of.e.Size) {
		of.sums.zero(int(m.Off/tree.BlockSize), int(blocks(m.Len)))
	} else {
		of.sums = nil
	}
	return nil
}

var zeros = make([]byte, wire.ChunkSize)

// zeroFill writes n zero bytes at off, a chunk at a time.
func zeroFill(f *os.File, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (s *session) end(id uint64) error {
	of, err := s.open(id)
	if err != nil {
		return err
	}
	delete(s.files, id)
	s.r.sumBudget.Add(of.budget)
	if s.block {
		return nil
	}
	defer of.f.Close()
	var sums []tree.Hash
	if of.sums != nil {
		sums = of.sums.list()
	}
	s.r.Tracker.AddCopied(0, 1)
	return s.finish(int(of.f.Fd()), &of.e, sums, false, of.fresh)
}

func (s *session) hashes(m *wire.HashReq) error {
	resp := wire.Hashes{ID: m.ID}
	var f *os.File
	var err error
	if s.block {
		f, err = s.dev, nil
	} else if f, err = s.r.root.OpenRead(m.Path); err == nil {
		defer f.Close()
	}
	if err != nil {
		resp.Err = err.Error()
		return s.w.SendHashes(&resp)
	}
	if s.block {
		resp.Blocks, err = s.blockHashes()
	} else {
		var st unix.Stat_t
		taken := time.Now()
		if err = unix.Fstat(int(f.Fd()), &st); err == nil {
			resp.Size = st.Size
			var ok bool
			if resp.Blocks, ok = s.r.cache.Get(st.Ino, tree.KeyOf(&st)); !ok {
				resp.Blocks, err = tree.HashBlocks(f, st.Size, true)
				if err == nil {
					s.r.cache.Put(st.Ino, tree.KeyOf(&st), resp.Blocks, taken)
				}
			}
		}
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return s.w.SendHashes(&resp)
}
