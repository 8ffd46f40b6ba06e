package tree

import (
	"crypto/sha256"
	"encoding/binary"
)

// Record is the sum of everything verified about one path.
type Record struct {
	Path string
	Sum  Hash
}

// RecordOf sums an entry's verified facts; content is the file sum.
func RecordOf(e *Entry, content Hash, owners bool) Record {
	return Record{Path: e.Path, Sum: sha256.Sum256(appendFacts(make([]byte, 0, 256), e, content, owners))}
}

// appendFacts appends what verification compares of an entry.
func appendFacts(b []byte, e *Entry, content Hash, owners bool) []byte {
	b = append(b, e.Path...)
	b = append(b, 0, byte(e.Kind))
	if e.Kind != KindSymlink {
		b = binary.AppendUvarint(b, uint64(e.Mode))
	}
	if owners {
		b = binary.AppendUvarint(b, uint64(e.UID))
		b = binary.AppendUvarint(b, uint64(e.GID))
	}
	b = binary.AppendVarint(b, e.Mtime)
	if e.Kind == KindChar || e.Kind == KindBlock {
		b = binary.AppendUvarint(b, e.Rdev)
	}
	for _, x := range e.Xattrs {
		b = binary.AppendUvarint(b, uint64(len(x.Name)))
		b = append(b, x.Name...)
		b = binary.AppendUvarint(b, uint64(len(x.Value)))
		b = append(b, x.Value...)
	}
	switch {
	case e.Kind == KindSymlink:
		b = append(b, e.Target...)
	case e.Kind == KindFile && e.LinkTo != "":
		b = append(b, 'L')
		b = append(b, e.LinkTo...)
	case e.Kind == KindFile:
		// Not whether the file has holes: a destination filesystem without
		// them (ramfs, some network filesystems) holds written zeros, which
		// read the same.
		b = binary.AppendVarint(b, e.Size)
		b = append(b, content[:]...)
	}
	return b
}

// digestRun is how many entries one run sum covers. The tree digest is a
// SHA-256 over the run sums, each a SHA-256 over its entries' facts, each
// prefixed with its length: runs are hashed in parallel, and no per-path
// sum is made unless a difference is to be named (Verification.Records).
const digestRun = 256

// runSum hashes the facts of one run; buf is scratch space.
func runSum(es []Entry, sums []Hash, owners bool, buf []byte) (Hash, []byte) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for i := range es {
		buf = appendFacts(buf[:0], &es[i], sums[i], owners)
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(buf)))])
		h.Write(buf)
	}
	var s Hash
	h.Sum(s[:0])
	return s, buf
}

func digestOf(runs []Hash) Hash {
	h := sha256.New()
	for i := range runs {
		h.Write(runs[i][:])
	}
	var s Hash
	h.Sum(s[:0])
	return s
}

// DigestOf is the tree digest of sorted entries with their content sums.
func DigestOf(es []Entry, sums []Hash, owners bool) Hash {
	var runs []Hash
	var buf []byte
	for lo := 0; lo < len(es); lo += digestRun {
		hi := min(lo+digestRun, len(es))
		var r Hash
		r, buf = runSum(es[lo:hi], sums[lo:hi], owners, buf)
		runs = append(runs, r)
	}
	return digestOf(runs)
}

// Verification is what verifying a tree found.
type Verification struct {
	Digest Hash
	es     []Entry
	sums   []Hash
	owners bool
}

// Count is the number of paths verified.
func (v *Verification) Count() int { return len(v.es) }

// Records lists each path's record, to name what differs between sides.
func (v *Verification) Records() []Record {
	rs := make([]Record, len(v.es))
	for i := range v.es {
		rs[i] = RecordOf(&v.es[i], v.sums[i], v.owners)
	}
	return rs
}
