// Package block handles raw volumes (volumeMode: Block): a device node or an
// image file is treated as one large file compared block by block.
package block

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Open opens a device or image file; write opens it read-write.
func Open(path string, write bool) (*os.File, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open block volume: %w", err)
	}
	return f, nil
}

// IsDevice reports whether f is a block device rather than an image file.
func IsDevice(f *os.File) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK
}

// Size returns the byte size of a device or image file.
func Size(f *os.File) (int64, error) {
	if IsDevice(f) {
		var n uint64
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); e != 0 {
			return 0, fmt.Errorf("BLKGETSIZE64: %w", e)
		}
		return int64(n), nil
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Hash returns the block sums of the first size bytes.
func Hash(f *os.File, size int64) ([]tree.Hash, error) {
	return tree.HashBlocks(f, size, !IsDevice(f))
}

// Digest is the volume digest: the content sum of its first size bytes.
func Digest(blocks []tree.Hash, size int64) tree.Hash {
	e := tree.Entry{Path: ".", Kind: tree.KindFile, Size: size}
	return tree.DigestOf([]tree.Entry{e}, []tree.Hash{tree.ContentSum(blocks)}, false)
}
