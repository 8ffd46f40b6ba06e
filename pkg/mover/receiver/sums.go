package receiver

import (
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// fileSums follows the block sums of a large file while it is written, so
// that verification need not reread what this receiver wrote. Blocks at or
// past len(known) read as zeros (sizing a file leaves holes): a declared
// size costs nothing until data arrives, and memory grows with the blocks
// actually written (begin keeps none for a file past tree.MaxTrackedBlocks
// or the receiver's budget: verification rereads it).
type fileSums struct {
	known []tree.Hash
	size  int64
}

// newSums starts from base, the sums of the file's current content of
// oldSize bytes (nil for a new file), as it stands once sized to size.
func newSums(base []tree.Hash, oldSize, size int64) *fileSums {
	n := int(blocks(size))
	b := base[:min(len(base), n)]
	if oldSize%tree.BlockSize != 0 && len(b) > 0 && oldSize < size {
		b = b[:len(b)-1] // the old partial tail is now followed by zeros
	}
	if n > 0 && size%tree.BlockSize != 0 && size < oldSize && len(b) == n {
		b[n-1] = tree.Hash{} // truncated tail: unknown until resent
	}
	return &fileSums{known: b, size: size}
}

func blocks(size int64) int64 { return (size + tree.BlockSize - 1) / tree.BlockSize }

// blockLen is the length of block i.
func (s *fileSums) blockLen(i int) int {
	return int(min(tree.BlockSize, s.size-int64(i)*tree.BlockSize))
}

// set records block i; the gap before it, if any, is holes.
func (s *fileSums) set(i int, h tree.Hash) {
	for len(s.known) < i {
		s.known = append(s.known, tree.ZeroSum(s.blockLen(len(s.known))))
	}
	if i == len(s.known) {
		s.known = append(s.known, h)
	} else {
		s.known[i] = h
	}
}

// zero records blocks from i on (count of them) as punched holes.
func (s *fileSums) zero(i, count int) {
	for j := i; j < i+count && j < len(s.known); j++ {
		s.known[j] = tree.ZeroSum(s.blockLen(j))
	}
}

// list returns every block's sum, or nil if one is unknown.
func (s *fileSums) list() []tree.Hash {
	n := int(blocks(s.size))
	for len(s.known) < n {
		s.known = append(s.known, tree.ZeroSum(s.blockLen(len(s.known))))
	}
	for _, h := range s.known {
		if h == (tree.Hash{}) {
			return nil
		}
	}
	return s.known
}
