package wire

import (
	"fmt"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// Msg is any message body.
type Msg interface {
	Encode(*Enc)
	Decode(*Dec) error
}

// Entries is a batch of index entries.
type Entries struct{ List []tree.Entry }

func (m *Entries) Encode(e *Enc) { EncodeEntries(e, m.List) }
func (m *Entries) Decode(d *Dec) (err error) {
	m.List, err = DecodeEntries(d)
	return err
}

// Records is a batch of verification records.
type Records struct{ List []Record }

func (m *Records) Encode(e *Enc) { EncodeRecords(e, m.List) }
func (m *Records) Decode(d *Dec) (err error) {
	m.List, err = DecodeRecords(d)
	return err
}

// Empty is a message without body.
type Empty struct{}

func (Empty) Encode(*Enc)         {}
func (Empty) Decode(d *Dec) error { return d.Done() }

// New returns an empty body for a frame type.
func New(t Type) (Msg, error) {
	switch t {
	case THello:
		return &Hello{}, nil
	case THelloAck:
		return &HelloAck{}, nil
	case TIndexReq, TIndexEnd:
		return Empty{}, nil
	case TIndexChunk:
		return &Entries{}, nil
	case TMkdir, TSymlink, TLink, TMeta, TNode:
		return &EntryMsg{}, nil
	case TDelete, TError:
		return &Text{}, nil
	case TRename:
		return &Rename{}, nil
	case TFile, TBegin:
		return &File{}, nil
	case TData, TPunch:
		return &Data{}, nil
	case TEnd:
		return &ID{}, nil
	case THashReq:
		return &HashReq{}, nil
	case THashes:
		return &Hashes{}, nil
	case TSync:
		return &Sync{}, nil
	case TSyncAck:
		return &Ack{}, nil
	case TVerifyReq:
		return &VerifyReq{}, nil
	case TVerifyRecs:
		return &Records{}, nil
	case TVerifyResp, TDone:
		return &VerifyResp{}, nil
	}
	return nil, fmt.Errorf("wire: unknown frame type %d", t)
}

// Decode parses a frame's body. Byte slices alias the frame payload.
func Decode(f Frame) (Msg, error) {
	m, err := New(f.Type)
	if err != nil {
		return nil, err
	}
	if err := m.Decode(&Dec{B: f.Payload}); err != nil {
		return nil, fmt.Errorf("frame type %d: %w", f.Type, err)
	}
	return m, nil
}

// Send encodes and writes one message.
func (w *Writer) Send(t Type, m Msg) error {
	e := Enc{B: w.scratch[:0]}
	m.Encode(&e)
	w.scratch = e.B
	return w.Write(t, e.B)
}
