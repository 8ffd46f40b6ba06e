// Package tree scans, indexes, hashes and compares directory trees.
package tree

// Kind is the type of a tree entry. Sockets are the one type not
// replicated: a socket file is an address that only its listening process
// gives meaning to, and that process recreates it. Both sides' scans skip
// them, so both digests exclude them.
type Kind uint8

// Entry kinds.
const (
	KindFile    Kind = 1
	KindDir     Kind = 2
	KindSymlink Kind = 3
	KindFifo    Kind = 4
	KindChar    Kind = 5 // character device
	KindBlock   Kind = 6 // block device
	KindMax          = KindBlock
)

// IsNode tells the kinds made with mknod.
func (k Kind) IsNode() bool { return k == KindFifo || k == KindChar || k == KindBlock }

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindFifo:
		return "fifo"
	case KindChar:
		return "char device"
	case KindBlock:
		return "block device"
	}
	return "unknown"
}

// Entry describes one path of a tree. Path is clean, slash separated and
// relative; "." is the root itself.
type Entry struct {
	Path   string
	Kind   Kind
	Mode   uint32 // permission and special bits only (07777)
	UID    uint32
	GID    uint32
	Size   int64
	Mtime  int64  // unix nanoseconds
	Target string // symlink target
	LinkTo string // hard link: the group's first path, which holds the data
	Sparse bool   // the file has at least one hole
	Rdev   uint64 // device number of a char or block device
	// Xattrs, sorted by name: user.*, security.* but security.selinux
	// (each cluster labels its own volumes), trusted.* when the mover may
	// read them, and POSIX ACLs (system.posix_acl_*). Not on symlinks.
	Xattrs []Xattr

	// Local facts, never trusted from the peer.
	Ino   uint64
	Ctime int64
	Nlink uint32
}

// Key is the stat key of the entry's inode as the scan saw it.
func (e *Entry) Key() StatKey { return StatKey{Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime} }

// SameContentKey reports whether two file entries look unchanged by the
// cheap size+mtime test (the receiver sets mtime only after the data).
func (e *Entry) SameContentKey(o *Entry) bool {
	return e.Kind == o.Kind && e.Size == o.Size && e.Mtime == o.Mtime && e.Sparse == o.Sparse
}

// SameMeta reports whether everything but the data matches.
func (e *Entry) SameMeta(o *Entry, owners bool) bool {
	if e.Kind != o.Kind || e.Mtime != o.Mtime || e.Target != o.Target || e.LinkTo != o.LinkTo || e.Rdev != o.Rdev {
		return false
	}
	if !SameXattrs(e.Xattrs, o.Xattrs) {
		return false
	}
	if e.Kind != KindSymlink && e.Mode != o.Mode {
		return false
	}
	if owners && (e.UID != o.UID || e.GID != o.GID) {
		return false
	}
	return true
}
