package watch

import "golang.org/x/sys/unix"

// zfsMagic is ZFS on Linux's f_type (not in linux/magic.h).
const zfsMagic = 0x2fc12fc1

// SeesAll reports whether inotify sees every change to the filesystem
// holding dir: a local filesystem, which only this kernel writes. On a
// network or cluster filesystem (NFS, CephFS, SMB, FUSE, ...) a pod on
// another node may write the same volume and raise no event here.
func SeesAll(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC,
		unix.BCACHEFS_SUPER_MAGIC, zfsMagic, unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return true
	}
	return false
}
