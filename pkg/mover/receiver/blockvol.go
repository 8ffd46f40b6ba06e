package receiver

import (
	"fmt"

	"github.com/stateful-migration/stateful-migration/pkg/mover/block"
	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
	"github.com/stateful-migration/stateful-migration/pkg/mover/wire"
)

func (s *session) openDev(ack *wire.HelloAck) error {
	f, err := block.Open(s.r.opts.Dir, true)
	if err != nil {
		return err
	}
	s.dev = f
	ack.Size, err = block.Size(f)
	return err
}

func (s *session) beginBlock(m *wire.File) error {
	if m.Entry.Path != "." {
		return fmt.Errorf("protocol error: block volume path must be \".\"")
	}
	size, err := block.Size(s.dev)
	if err != nil {
		return err
	}
	if size < m.Entry.Size {
		if block.IsDevice(s.dev) {
			return fmt.Errorf("%w: destination device holds %d bytes, source needs %d", ErrFatal, size, m.Entry.Size)
		}
		if err := s.dev.Truncate(m.Entry.Size); err != nil {
			return classify(err, "growing the image")
		}
	}
	s.files[m.ID] = &openFile{f: s.dev, e: m.Entry}
	return nil
}

func (s *session) blockHashes() ([]tree.Hash, error) {
	size, err := block.Size(s.dev)
	if err != nil {
		return nil, err
	}
	return block.Hash(s.dev, size)
}

func (s *session) blockDigest(size int64, full bool) (tree.Hash, error) {
	b, err := block.Hash(s.dev, size)
	if err != nil {
		return tree.Hash{}, err
	}
	return block.Digest(b, size), nil
}
