package undo

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Point describes the pass a standby volume holds, committed whole: what a
// failover starts from, and what promotion checks the volume against.
type Point struct {
	Digest  tree.Hash // the verification digest of the volume
	Entries uint64    // paths the digest covers
	Owners  bool      // owners were part of the digest
	Time    time.Time // the source's state it holds (see receiver.session.passFrom)
	// Exact: the source held exactly this at Time (nothing changed while
	// the pass read it); else each file is as it was at some instant of the
	// pass, not all at the same one.
	Exact bool
}

// pointFile is a Point as it is written down, the digest in hex.
type pointFile struct {
	Digest  string    `json:"digest"`
	Entries uint64    `json:"entries"`
	Owners  bool      `json:"owners"`
	Time    time.Time `json:"time"`
	Exact   bool      `json:"exact,omitempty"`
}

func (p Point) MarshalJSON() ([]byte, error) {
	return json.Marshal(pointFile{hex.EncodeToString(p.Digest[:]), p.Entries, p.Owners, p.Time, p.Exact})
}

func (p *Point) UnmarshalJSON(b []byte) error {
	var f pointFile
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	d, err := hex.DecodeString(f.Digest)
	if err != nil || len(d) != len(p.Digest) {
		return fmt.Errorf("digest %q is not %d bytes of hex", f.Digest, len(p.Digest))
	}
	*p = Point{Entries: f.Entries, Owners: f.Owners, Time: f.Time, Exact: f.Exact}
	copy(p.Digest[:], d)
	return nil
}

const (
	pointName = Dir + "/point"
	nextName  = Dir + "/point.next" // the point of a pass being committed
)

// Point returns the volume's committed point; ok is false before the first.
func (l *Log) Point() (pt Point, ok bool, err error) {
	b, err := os.ReadFile(tree.Join(l.dir, pointName))
	if errors.Is(err, fs.ErrNotExist) {
		return Point{}, false, nil
	}
	if err != nil {
		return Point{}, false, err
	}
	if err := json.Unmarshal(b, &pt); err != nil {
		return Point{}, false, fmt.Errorf("undo: %s: %w", pointName, err)
	}
	return pt, true, nil
}

// writeNext makes pt durable as the point of the pass being committed.
func (l *Log) writeNext(pt Point) error {
	b, err := json.Marshal(pt)
	if err != nil {
		return err
	}
	f, err := l.root.Create(nextName)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// promoteNext makes a written next point the point; a crash between the
// commit and this leaves it for Open to finish.
func (l *Log) promoteNext() error {
	if _, err := l.root.Lstat(nextName); err != nil {
		return nil
	}
	if err := l.root.Syncfs(); err != nil { // the commit before the point
		return err
	}
	if err := l.root.Rename(nextName, pointName); err != nil {
		return err
	}
	return l.root.Syncfs()
}
