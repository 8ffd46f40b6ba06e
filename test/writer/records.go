// Package writer is the end-to-end suite's application under test: it appends
// numbered, checksummed, fixed-size records to files on a volume, fsyncs, and
// only then acknowledges them. Scan proves afterwards which records a volume
// holds, so a test can check that every acknowledged record survived a move.
package writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// RecordSize is the size of one record on disk.
const RecordSize = 4096

const (
	magic      = "SMWREC01"
	sumOffset  = RecordSize - 8
	filePrefix = "records-"
	fileSuffix = ".dat"
)

// Encode fills buf (RecordSize bytes) with record seq written at unixNano. The
// payload is derived from seq, so a verifier can recompute it.
func Encode(buf []byte, seq uint64, unixNano int64) {
	copy(buf[0:8], magic)
	binary.BigEndian.PutUint64(buf[8:16], seq)
	binary.BigEndian.PutUint64(buf[16:24], uint64(unixNano))
	x := seq*0x9E3779B97F4A7C15 + 1 // xorshift64: cheap, incompressible enough
	for i := 24; i < sumOffset; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(buf[i:i+8], x)
	}
	sum := sha256.Sum256(buf[:sumOffset])
	copy(buf[sumOffset:], sum[:8])
}

// Decode checks one record and returns its sequence number and write time.
func Decode(buf []byte) (seq uint64, unixNano int64, err error) {
	if len(buf) != RecordSize || string(buf[0:8]) != magic {
		return 0, 0, errors.New("bad magic")
	}
	sum := sha256.Sum256(buf[:sumOffset])
	if !bytes.Equal(sum[:8], buf[sumOffset:]) {
		return 0, 0, errors.New("checksum mismatch")
	}
	seq = binary.BigEndian.Uint64(buf[8:16])
	want := make([]byte, RecordSize)
	Encode(want, seq, int64(binary.BigEndian.Uint64(buf[16:24])))
	if !bytes.Equal(want, buf) {
		return 0, 0, errors.New("payload does not match its sequence number")
	}
	return seq, int64(binary.BigEndian.Uint64(buf[16:24])), nil
}

// FileName is the name of the n-th records file.
func FileName(n int) string { return fmt.Sprintf("%s%06d%s", filePrefix, n, fileSuffix) }

// Report is what Scan found on a volume.
type Report struct {
	Files []string // records files in order
	// First and Last number the valid records, without gaps. First is 1 unless
	// the writer retired its oldest files to stay within its size bound.
	First, Last uint64
	LastTime    int64 // write time of the last record (unix nano)
	// TornBytes is a partial or invalid tail at the very end of the last file:
	// a write that was never acknowledged (the app stopped mid-write).
	TornBytes int64
	TornFile  string
}

// Records is how many valid records the volume holds.
func (r Report) Records() uint64 {
	if r.Last == 0 {
		return 0
	}
	return r.Last - r.First + 1
}

// Scan reads every records file in dir. Records must run n, n+1, n+2 ...
// across the files in name order; anything else except a torn tail of the
// last file is an error naming the file and offset.
func Scan(dir string) (Report, error) {
	var r Report
	entries, err := os.ReadDir(dir)
	if err != nil {
		return r, err
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), filePrefix) && strings.HasSuffix(e.Name(), fileSuffix) {
			r.Files = append(r.Files, e.Name())
		}
	}
	sort.Strings(r.Files)
	buf := make([]byte, RecordSize)
	for i, name := range r.Files {
		last := i == len(r.Files)-1
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return r, err
		}
		var off int64
		for {
			n, err := io.ReadFull(f, buf)
			if err == io.EOF {
				break
			}
			var seq uint64
			var t int64
			if err == nil {
				seq, t, err = Decode(buf)
			}
			if err == nil && r.Last == 0 && r.First == 0 {
				r.First = seq
			} else if err == nil && seq != r.Last+1 {
				err = fmt.Errorf("record %d where %d was expected", seq, r.Last+1)
			}
			if err != nil {
				st, serr := f.Stat()
				if last && serr == nil && isTail(off, st.Size(), n) {
					r.TornBytes, r.TornFile = st.Size()-off, name
					break
				}
				_ = f.Close()
				return r, fmt.Errorf("%s at offset %d: %w", name, off, err)
			}
			r.Last, r.LastTime = seq, t
			off += RecordSize
		}
		_ = f.Close()
	}
	return r, nil
}

// isTail reports whether the bad record at off is the last (possibly partial)
// one of the file: only the write in flight when the app stopped may be torn.
func isTail(off, size int64, n int) bool {
	return off+int64(n) == size && size-off <= RecordSize
}
