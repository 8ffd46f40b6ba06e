package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt reports a payload that does not decode.
var ErrCorrupt = errors.New("wire: corrupt message")

// maxString bounds names, link targets and error texts (PATH_MAX).
const maxString = 4096

// Enc appends primitive values to a buffer.
type Enc struct{ B []byte }

func (e *Enc) U(v uint64)   { e.B = binary.AppendUvarint(e.B, v) }
func (e *Enc) I(v int64)    { e.B = binary.AppendVarint(e.B, v) }
func (e *Enc) Byte(v byte)  { e.B = append(e.B, v) }
func (e *Enc) Str(s string) { e.U(uint64(len(s))); e.B = append(e.B, s...) }
func (e *Enc) Bytes(p []byte) {
	e.U(uint64(len(p)))
	e.B = append(e.B, p...)
}
func (e *Enc) Bool(v bool) {
	if v {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

// Dec reads primitive values; the first failure sticks in Err.
type Dec struct {
	B   []byte
	Err error
}

func (d *Dec) fail(what string) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
	d.B = nil
}

func (d *Dec) U() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Dec) I() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Dec) Byte() byte {
	if len(d.B) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

func (d *Dec) Bool() bool { return d.Byte() != 0 }

// U32 reads a uvarint that must fit 32 bits.
func (d *Dec) U32() uint32 {
	v := d.U()
	if v > 1<<32-1 {
		d.fail("u32")
		return 0
	}
	return uint32(v)
}

func (d *Dec) raw(max int, what string) []byte {
	n := d.U()
	if d.Err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.B)) {
		d.fail(what + " length")
		return nil
	}
	p := d.B[:n]
	d.B = d.B[n:]
	return p
}

func (d *Dec) Str() string { return string(d.raw(maxString, "string")) }

// Bytes returns a slice aliasing the payload.
func (d *Dec) Bytes() []byte { return d.raw(MaxPayload, "bytes") }

// Done fails if bytes remain, which means the peer speaks another dialect.
func (d *Dec) Done() error {
	if d.Err == nil && len(d.B) != 0 {
		d.fail("trailing bytes")
	}
	return d.Err
}
