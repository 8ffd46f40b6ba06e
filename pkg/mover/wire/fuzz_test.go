package wire

import (
	"bytes"
	"testing"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

func seedStream() []byte {
	var b bytes.Buffer
	w := NewWriter(&b, true)
	w.Send(THello, &Hello{Version: Version, Volume: "s"})
	w.Send(TFile, &File{ID: 1, Entry: tree.Entry{Path: "a/b", Kind: tree.KindFile, Size: 3, Mode: 0644}, Data: []byte("abc")})
	w.Send(TData, &Data{ID: 2, Off: 4096, Data: bytes.Repeat([]byte("z"), 8192)})
	w.Send(THashes, &Hashes{ID: 3, Size: 10, Blocks: []Hash{{1}, {2}}})
	w.Send(TIndexChunk, &Entries{List: []tree.Entry{{Path: ".", Kind: tree.KindDir}, {Path: "l", Kind: tree.KindSymlink, Target: "x"}}})
	w.Send(TVerifyRecs, &Records{List: []Record{{Path: "p", Sum: Hash{9}}}})
	w.Send(TRename, &Rename{From: "a", To: "b"})
	w.Flush()
	return b.Bytes()
}

// FuzzDecode feeds arbitrary bytes to the frame reader and message decoder:
// they must return errors, never panic or allocate without bound.
func FuzzDecode(f *testing.F) {
	f.Add(seedStream())
	f.Add([]byte{byte(THello), 0, 0, 0, 1, 0})
	f.Add([]byte{byte(TFile) | flagCompressed, 0, 0, 0, 4, 0x28, 0xb5, 0x2f, 0xfd})
	f.Add([]byte{byte(THashes), 0, 0, 0, 3, 1, 2, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 64; i++ {
			fr, err := r.Next()
			if err != nil {
				return
			}
			m, err := Decode(fr)
			if err != nil {
				continue
			}
			// What decodes must re-encode to something that decodes again.
			var e Enc
			m.Encode(&e)
			if _, err := Decode(Frame{Type: fr.Type, Payload: e.B}); err != nil {
				t.Fatalf("re-decode of type %d: %v", fr.Type, err)
			}
		}
	})
}

func TestRoundTrip(t *testing.T) {
	r := NewReader(bytes.NewReader(seedStream()))
	var types []Type
	for {
		fr, err := r.Next()
		if err != nil {
			break
		}
		m, err := Decode(fr)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := m.(*Data); ok && (d.Off != 4096 || len(d.Data) != 8192) {
			t.Fatalf("data frame mangled: %d %d", d.Off, len(d.Data))
		}
		types = append(types, fr.Type)
	}
	if len(types) != 7 || types[1] != TFile {
		t.Fatalf("got %v", types)
	}
}
