// Package wire frames and encodes the messages exchanged by the sender and
// receiver movers. Every length read from the peer is bounded before use so a
// hostile or corrupt stream fails with an error instead of exhausting memory.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPayload bounds a single frame; data chunks are far smaller.
const MaxPayload = 8 << 20

// ChunkSize is the largest file data carried by one frame.
const ChunkSize = 256 << 10

// MaxFileSize bounds a declared file size and every offset (ext4's own
// limit with 4 KiB blocks); with it no offset arithmetic can overflow.
const MaxFileSize = 16 << 40

// MaxBatch bounds the entries or records of one frame (senders use 2,000
// and 20,000).
const MaxBatch = 1 << 16

const headerLen = 5

// flagCompressed marks a zstd-compressed payload in the type byte.
const flagCompressed = 0x80

// ErrFrameTooLarge reports a frame length above MaxPayload.
var ErrFrameTooLarge = errors.New("wire: frame exceeds maximum size")

// Frame is one typed message on the stream.
type Frame struct {
	Type    Type
	Payload []byte
}

// Reader decodes frames from a byte stream.
type Reader struct {
	r   *bufio.Reader
	hdr [headerLen]byte
	buf []byte
	dec decompressor
	max uint32
	get func(n int) []byte // Own
	// N counts the bytes consumed from the stream, for progress.
	N int64
}

// NewReader returns a Reader on r taking frames of up to MaxPayload.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 256<<10), max: MaxPayload}
}

// Limit lowers the largest frame (compressed or not) this reader takes,
// for a side whose peer never sends large ones.
func (r *Reader) Limit(n int) { r.max = uint32(min(n, MaxPayload)) }

// Own makes Next read each frame's payload into a buffer of at least n
// bytes from get, which the caller then owns, instead of into the
// reader's own buffer: a receiver queueing frames for its file workers
// keeps them without copying each.
func (r *Reader) Own(get func(n int) []byte) { r.get = get }

// Next reads one frame. The payload is only valid until the next call,
// unless the reader was told to hand it over (Own).
func (r *Reader) Next() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("wire: truncated frame header: %w", err)
		}
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if n > r.max {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	var buf []byte
	if r.get != nil {
		buf = r.get(int(n))[:n]
	} else {
		if cap(r.buf) < int(n) {
			r.buf = make([]byte, n)
		}
		buf = r.buf[:n]
	}
	if _, err := io.ReadFull(r.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("wire: truncated frame body: %w", err)
	}
	r.N += int64(headerLen) + int64(n)
	t := Type(r.hdr[0])
	if t&flagCompressed != 0 {
		out, err := r.dec.decode(buf)
		if err != nil {
			return Frame{}, err
		}
		if len(out) > int(r.max) {
			return Frame{}, fmt.Errorf("%w: %d bytes decompressed", ErrFrameTooLarge, len(out))
		}
		if r.get != nil {
			buf = append(r.get(len(out))[:0], out...)
		} else {
			buf = out
		}
		t &^= flagCompressed
	}
	if !t.valid() {
		return Frame{}, fmt.Errorf("wire: unknown frame type %d", t)
	}
	return Frame{Type: t, Payload: buf}, nil
}

// Writer encodes frames; callers serialise access themselves.
type Writer struct {
	w        *bufio.Writer
	enc      compressor
	compress bool
	scratch  []byte
	// N counts the bytes written to the stream, for progress.
	N int64
}

// NewWriter returns a Writer on w; compress enables zstd for data frames.
func NewWriter(w io.Writer, compress bool) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 256<<10), compress: compress}
}

// Write sends one frame, compressing bulk data when enabled and useful.
func (w *Writer) Write(t Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return ErrFrameTooLarge
	}
	if w.compress && len(payload) >= 4096 && (t == TData || t == TFile) {
		if c, ok := w.enc.encode(payload); ok {
			payload = c
			t |= flagCompressed
		}
	}
	var hdr [headerLen]byte
	hdr[0] = byte(t)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.w.Write(payload)
	w.N += int64(headerLen + len(payload))
	return err
}

// Flush pushes buffered frames to the stream.
func (w *Writer) Flush() error { return w.w.Flush() }

// Buffered reports bytes waiting in the buffer.
func (w *Writer) Buffered() int { return w.w.Buffered() }
