package wire

import (
	"fmt"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Hash is a SHA-256 sum.
type Hash = [32]byte

// PutEntry encodes the portable part of an entry.
func PutEntry(e *Enc, x *tree.Entry) {
	e.Str(x.Path)
	e.Byte(byte(x.Kind))
	e.U(uint64(x.Mode))
	e.U(uint64(x.UID))
	e.U(uint64(x.GID))
	e.I(x.Size)
	e.I(x.Mtime)
	e.Str(x.Target)
	e.Str(x.LinkTo)
	e.Bool(x.Sparse)
	e.U(x.Rdev)
	e.U(uint64(len(x.Xattrs)))
	for _, a := range x.Xattrs {
		e.Str(a.Name)
		e.Bytes(a.Value)
	}
}

// CheckXattrs tells whether an entry's attributes fit the bounds below.
func CheckXattrs(x *tree.Entry) error {
	total := 0
	for _, a := range x.Xattrs {
		total += len(a.Value)
		if len(a.Name) > 255 || len(a.Value) > MaxXattrValue {
			return fmt.Errorf("extended attribute %s of %s is larger than the mover carries (64 KiB)", a.Name, x.Path)
		}
	}
	if len(x.Xattrs) > MaxXattrs || total > MaxXattrBytes {
		return fmt.Errorf("%s has more extended attributes than the mover carries (%d, 1 MiB in all)", x.Path, MaxXattrs)
	}
	return nil
}

// Bounds on an entry's extended attributes (Linux: names of at most 255
// bytes, values of at most 64 KiB).
const (
	MaxXattrs     = 128
	MaxXattrValue = 64 << 10
	MaxXattrBytes = 1 << 20 // values of one entry together
)

// GetEntry decodes an entry; paths are validated by the receiver, not here.
func GetEntry(d *Dec) tree.Entry {
	var x tree.Entry
	x.Path = d.Str()
	x.Kind = tree.Kind(d.Byte())
	x.Mode = d.U32() & 07777
	x.UID = d.U32()
	x.GID = d.U32()
	x.Size = d.I()
	x.Mtime = d.I()
	x.Target = d.Str()
	x.LinkTo = d.Str()
	x.Sparse = d.Bool()
	x.Rdev = d.U()
	n := d.U()
	if n > MaxXattrs {
		d.fail("xattr count")
	}
	total := 0
	for i := uint64(0); i < n && d.Err == nil; i++ {
		// Copied: entries outlive the frame (the sender keeps the index).
		a := tree.Xattr{Name: string(d.raw(255, "xattr name")), Value: append([]byte(nil), d.raw(MaxXattrValue, "xattr value")...)}
		total += len(a.Value)
		if total > MaxXattrBytes {
			d.fail("xattr size")
		}
		x.Xattrs = append(x.Xattrs, a)
	}
	if d.Err == nil && (x.Kind < tree.KindFile || x.Kind > tree.KindMax || x.Size < 0 || x.Size > MaxFileSize) {
		d.fail("entry")
	}
	return x
}

// Hello opens a session.
type Hello struct {
	Version  uint32
	Mode     uint8
	Compress bool
	// Volume names the volume the sender serves; a receiver serving another
	// refuses the session, so a misrouted endpoint cannot overwrite it.
	Volume string
}

func (m *Hello) Encode(e *Enc) {
	e.U(uint64(m.Version))
	e.Byte(m.Mode)
	e.Bool(m.Compress)
	e.Str(m.Volume)
}

func (m *Hello) Decode(d *Dec) error {
	m.Version = d.U32()
	m.Mode = d.Byte()
	m.Compress = d.Bool()
	m.Volume = d.Str()
	return d.Done()
}

// HelloAck answers Hello; Err refuses the session.
type HelloAck struct {
	Version uint32
	Owners  bool  // receiver can chown, so owners are copied and verified
	Size    int64 // block mode: destination size
	Err     string
}

func (m *HelloAck) Encode(e *Enc) {
	e.U(uint64(m.Version))
	e.Bool(m.Owners)
	e.I(m.Size)
	e.Str(m.Err)
}

func (m *HelloAck) Decode(d *Dec) error {
	m.Version = d.U32()
	m.Owners = d.Bool()
	m.Size = d.I()
	m.Err = d.Str()
	return d.Done()
}

// EncodeEntries encodes a batch of entries (index chunks).
func EncodeEntries(e *Enc, xs []tree.Entry) {
	e.U(uint64(len(xs)))
	for i := range xs {
		PutEntry(e, &xs[i])
	}
}

// DecodeEntries decodes a batch of entries. The count is bounded, and
// memory grows with the entries actually decoded, not with the count
// the peer declared.
func DecodeEntries(d *Dec) ([]tree.Entry, error) {
	n := d.U()
	if n > MaxBatch || n > uint64(len(d.B)) { // each entry takes more than one byte
		d.fail("entry count")
		return nil, d.Err
	}
	xs := make([]tree.Entry, 0, min(n, 256))
	for i := uint64(0); i < n && d.Err == nil; i++ {
		xs = append(xs, GetEntry(d))
	}
	return xs, d.Done()
}

// Rename moves a path on the receiver.
type Rename struct{ From, To string }

func (m *Rename) Encode(e *Enc) { e.Str(m.From); e.Str(m.To) }
func (m *Rename) Decode(d *Dec) error {
	m.From = d.Str()
	m.To = d.Str()
	return d.Done()
}

// File carries a whole small file, or with Begin the head of a large one.
type File struct {
	ID      uint64
	Entry   tree.Entry
	InPlace bool // update the existing file instead of replacing it
	Data    []byte
}

func (m *File) Encode(e *Enc) {
	e.U(m.ID)
	PutEntry(e, &m.Entry)
	e.Bool(m.InPlace)
	e.Bytes(m.Data)
}

func (m *File) Decode(d *Dec) error {
	m.ID = d.U()
	m.Entry = GetEntry(d)
	m.InPlace = d.Bool()
	m.Data = d.Bytes()
	if d.Err == nil && m.Entry.Kind != 1 {
		d.fail("file kind")
	}
	return d.Done()
}

// Data writes bytes at an offset of an open file; Punch (Data nil, Len set)
// deallocates a range so holes stay holes.
type Data struct {
	ID   uint64
	Off  int64
	Len  int64
	Data []byte
}

func (m *Data) Encode(e *Enc) {
	e.U(m.ID)
	e.I(m.Off)
	e.I(m.Len)
	e.Bytes(m.Data)
}

func (m *Data) Decode(d *Dec) error {
	m.ID = d.U()
	m.Off = d.I()
	m.Len = d.I()
	m.Data = d.Bytes()
	// Both bounded by MaxFileSize, so Off+Len cannot overflow.
	if d.Err == nil && (m.Off < 0 || m.Len < 0 || m.Off > MaxFileSize || m.Len > MaxFileSize) {
		d.fail("range")
	}
	return d.Done()
}

// ID carries a bare request or file id (End).
type ID struct{ ID uint64 }

func (m *ID) Encode(e *Enc)       { e.U(m.ID) }
func (m *ID) Decode(d *Dec) error { m.ID = d.U(); return d.Done() }

// HashReq asks for the block hashes of a receiver file.
type HashReq struct {
	ID   uint64
	Path string
}

func (m *HashReq) Encode(e *Enc) { e.U(m.ID); e.Str(m.Path) }
func (m *HashReq) Decode(d *Dec) error {
	m.ID = d.U()
	m.Path = d.Str()
	return d.Done()
}

// Hashes answers HashReq, in frames of at most HashBatch sums: a file or
// device of more than 16 GiB has more sums than one frame carries. All but
// the last frame of an answer say More.
type Hashes struct {
	ID     uint64
	Size   int64
	Blocks []Hash
	Err    string
	More   bool
}

// HashBatch is the most sums one Hashes frame carries (2 MiB).
const HashBatch = 1 << 16

func (m *Hashes) Encode(e *Enc) {
	e.U(m.ID)
	e.I(m.Size)
	e.U(uint64(len(m.Blocks)))
	for i := range m.Blocks {
		e.B = append(e.B, m.Blocks[i][:]...)
	}
	e.Str(m.Err)
	e.Bool(m.More)
}

func (m *Hashes) Decode(d *Dec) error {
	m.ID = d.U()
	m.Size = d.I()
	n := d.U()
	if d.Err == nil && (n > HashBatch || n > uint64(len(d.B)/32)) {
		d.fail("hash count")
	}
	if d.Err == nil {
		m.Blocks = make([]Hash, n)
		for i := range m.Blocks {
			copy(m.Blocks[i][:], d.B[:32])
			d.B = d.B[32:]
		}
	}
	m.Err = d.Str()
	m.More = d.Bool()
	return d.Done()
}

// SendHashes writes an answer as Hashes frames of at most HashBatch sums.
func (w *Writer) SendHashes(m *Hashes) error {
	rest := m.Blocks
	for {
		part := *m
		part.Blocks, part.More = rest[:min(len(rest), HashBatch)], len(rest) > HashBatch
		rest = rest[len(part.Blocks):]
		if err := w.Send(THashes, &part); err != nil || !part.More {
			return err
		}
	}
}

// Sync is a barrier: the receiver answers once everything before it is
// applied; Final also fsyncs the volume.
type Sync struct {
	Seq   uint64
	Final bool
	// Exact: nothing changed on the source from the pass's start to this
	// sync, so what it sent is the source as it was at one instant.
	Exact bool
}

func (m *Sync) Encode(e *Enc) { e.U(m.Seq); e.Bool(m.Final); e.Bool(m.Exact) }
func (m *Sync) Decode(d *Dec) error {
	m.Seq = d.U()
	m.Final = d.Bool()
	m.Exact = d.Bool()
	return d.Done()
}

// Ack answers Sync.
type Ack struct {
	Seq uint64
	Err string
}

func (m *Ack) Encode(e *Enc) { e.U(m.Seq); e.Str(m.Err) }
func (m *Ack) Decode(d *Dec) error {
	m.Seq = d.U()
	m.Err = d.Str()
	return d.Done()
}

// VerifyReq asks for the receiver's digest; Full rereads every byte and
// Detail also streams per-path record sums.
type VerifyReq struct {
	Full   bool
	Detail bool
	Owners bool
	Size   int64 // block mode: bytes to compare
}

func (m *VerifyReq) Encode(e *Enc) {
	e.Bool(m.Full)
	e.Bool(m.Detail)
	e.Bool(m.Owners)
	e.I(m.Size)
}

func (m *VerifyReq) Decode(d *Dec) error {
	m.Full = d.Bool()
	m.Detail = d.Bool()
	m.Owners = d.Bool()
	m.Size = d.I()
	return d.Done()
}

// Record is the sum of one path's verified facts.
type Record = tree.Record

// EncodeRecords encodes a batch of records.
func EncodeRecords(e *Enc, rs []Record) {
	e.U(uint64(len(rs)))
	for i := range rs {
		e.Str(rs[i].Path)
		e.B = append(e.B, rs[i].Sum[:]...)
	}
}

// DecodeRecords decodes a batch of records.
func DecodeRecords(d *Dec) ([]Record, error) {
	n := d.U()
	if d.Err == nil && (n > MaxBatch || n > uint64(len(d.B)/33)) {
		d.fail("record count")
	}
	var rs []Record
	for i := uint64(0); i < n && d.Err == nil; i++ {
		var r Record
		r.Path = d.Str()
		if len(d.B) < 32 {
			d.fail("record")
			break
		}
		copy(r.Sum[:], d.B[:32])
		d.B = d.B[32:]
		rs = append(rs, r)
	}
	return rs, d.Done()
}

// VerifyResp answers VerifyReq (and Done carries the agreed digest).
type VerifyResp struct {
	Digest Hash
	Count  uint64
	Err    string
}

func (m *VerifyResp) Encode(e *Enc) {
	e.B = append(e.B, m.Digest[:]...)
	e.U(m.Count)
	e.Str(m.Err)
}

func (m *VerifyResp) Decode(d *Dec) error {
	if len(d.B) < 32 {
		d.fail("digest")
		return d.Err
	}
	copy(m.Digest[:], d.B[:32])
	d.B = d.B[32:]
	m.Count = d.U()
	m.Err = d.Str()
	return d.Done()
}

// Text carries a path (Delete) or an error message (Error).
type Text struct{ S string }

func (m *Text) Encode(e *Enc)       { e.Str(m.S) }
func (m *Text) Decode(d *Dec) error { m.S = d.Str(); return d.Done() }

// EntryMsg carries one entry (Mkdir, Symlink, Link, Meta).
type EntryMsg struct{ E tree.Entry }

func (m *EntryMsg) Encode(e *Enc)       { PutEntry(e, &m.E) }
func (m *EntryMsg) Decode(d *Dec) error { m.E = GetEntry(d); return d.Done() }
