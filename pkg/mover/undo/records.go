package undo

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/stateful-migration/stateful-migration/pkg/mover/safefs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

// add appends record r (index l.n) to the log: length, CRC-32C, body, so
// that a record torn by a crash ends the log where it starts.
func (l *Log) add(r record) error {
	if l.w == nil {
		return errors.New("undo: no pass in progress")
	}
	body := encode(&r)
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(body, castagnoli))
	if _, err := l.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := l.w.Write(body); err != nil {
		return err
	}
	l.n++
	return nil
}

// read returns the log's whole records; a torn or corrupt tail (its change
// never ran: a record is durable before its change) ends it.
func (l *Log) read() ([]record, error) {
	f, err := l.root.OpenRead(logName)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var rs []record
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return rs, nil
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n > 1<<24 {
			return rs, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil || crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			return rs, nil
		}
		r, err := decode(body)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
}

// Records are coded as the wire's messages are: an entry as wire.PutEntry
// writes it, lengths bounded on the way back.
func encode(r *record) []byte {
	e := &wire.Enc{}
	e.Byte(byte(r.op))
	e.Str(r.path)
	switch r.op {
	case opSize:
		e.I(r.size)
	case opRange:
		e.I(r.offset)
	case opRenamed:
		e.Str(r.from)
	case opMeta:
		wire.PutEntry(e, &r.entry)
	}
	return e.B
}

func decode(b []byte) (record, error) {
	d := &wire.Dec{B: b}
	r := record{op: op(d.Byte()), path: d.Str()}
	switch r.op {
	case opSize:
		r.size = d.I()
	case opRange:
		r.offset = d.I()
	case opRenamed:
		r.from = d.Str()
	case opMeta:
		r.entry = wire.GetEntry(d)
	case opStash, opCreated:
	default:
		return record{}, fmt.Errorf("undo: unknown record %d", r.op)
	}
	if err := d.Done(); err != nil {
		return record{}, err
	}
	for _, p := range []string{r.path, r.from} {
		if err := safefs.CheckPath(p); err != nil && p != "." && p != "" {
			return record{}, err
		}
	}
	return r, nil
}
