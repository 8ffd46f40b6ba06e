package wire

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// zstd at its fastest level keeps up with loopback links on one core, which
// flate cannot; that is why this is the one compression dependency.
type compressor struct {
	enc *zstd.Encoder
	out []byte
}

func (c *compressor) encode(p []byte) ([]byte, bool) {
	if c.enc == nil {
		c.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	}
	c.out = c.enc.EncodeAll(p, c.out[:0])
	// Only worth it if it saves at least an eighth.
	if len(c.out) >= len(p)-len(p)/8 {
		return nil, false
	}
	return c.out, true
}

type decompressor struct {
	dec *zstd.Decoder
	out []byte
}

func (d *decompressor) decode(p []byte) ([]byte, error) {
	if d.dec == nil {
		var err error
		d.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxPayload), zstd.WithDecoderMaxWindow(MaxPayload))
		if err != nil {
			return nil, err
		}
	}
	out, err := d.dec.DecodeAll(p, d.out[:0])
	if err != nil {
		return nil, fmt.Errorf("wire: corrupt compressed frame: %w", err)
	}
	if len(out) > MaxPayload {
		return nil, ErrFrameTooLarge
	}
	d.out = out
	return out, nil
}
