package writer

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Options shape a writer run.
type Options struct {
	Dir       string
	Rate      int64         // bytes per second
	Batch     time.Duration // records written per fsync: Rate*Batch bytes
	FileBytes int64         // a new records file after this many bytes
	Prefill   int64         // on an empty volume, write this much first, unthrottled
	Out       io.Writer     // ack lines
}

// Run resumes after the last valid record on the volume (dropping a torn
// tail, which was never acknowledged), then appends records at opts.Rate until
// ctx ends. After each fsync it prints `ack seq=N t=UNIXNANO`: a record is
// acknowledged only once it is durable.
func Run(ctx context.Context, opts Options) error {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return err
	}
	rep, err := Scan(opts.Dir)
	if err != nil {
		return fmt.Errorf("volume holds damaged records, refusing to append: %w", err)
	}
	if rep.TornBytes > 0 {
		path := filepath.Join(opts.Dir, rep.TornFile)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if err := os.Truncate(path, st.Size()-rep.TornBytes); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	fmt.Fprintf(opts.Out, "start host=%s records=%d files=%d torn=%d t=%d\n", host, rep.Records, len(rep.Files), rep.TornBytes, time.Now().UnixNano())

	w := &appender{dir: opts.Dir, fileBytes: opts.FileBytes, seq: rep.Records, fileNo: len(rep.Files)}
	if w.fileNo == 0 {
		w.fileNo = 1
	}
	if err := w.open(); err != nil {
		return err
	}
	defer w.f.Close()

	if rep.Records == 0 && opts.Prefill > 0 {
		for n := int64(0); n < opts.Prefill && ctx.Err() == nil; n += 1 << 20 {
			if err := w.write(1 << 20); err != nil {
				return err
			}
		}
		if err := w.f.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "prefilled seq=%d t=%d\n", w.seq, time.Now().UnixNano())
	}

	perBatch := max(opts.Rate*int64(opts.Batch)/int64(time.Second), RecordSize)
	tick := time.NewTicker(opts.Batch)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := w.write(perBatch); err != nil {
			return err
		}
		if err := w.f.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "ack seq=%d t=%d\n", w.seq, time.Now().UnixNano())
	}
}

type appender struct {
	dir       string
	fileBytes int64
	fileNo    int
	f         *os.File
	size      int64
	seq       uint64
	buf       [RecordSize]byte
}

func (w *appender) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, FileName(w.fileNo)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	w.f, w.size = f, st.Size()
	if w.size == 0 { // a new file: its directory entry must be durable too
		d, err := os.Open(w.dir)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}

// write appends records worth n bytes, rotating files; the caller fsyncs.
func (w *appender) write(n int64) error {
	for ; n > 0; n -= RecordSize {
		if w.size >= w.fileBytes {
			// The finished file must be durable before records continue in the next.
			if err := w.f.Sync(); err != nil {
				return err
			}
			_ = w.f.Close()
			w.fileNo++
			if err := w.open(); err != nil {
				return err
			}
		}
		Encode(w.buf[:], w.seq+1, time.Now().UnixNano())
		if _, err := w.f.Write(w.buf[:]); err != nil {
			return err
		}
		w.seq++
		w.size += RecordSize
	}
	return nil
}
