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
	MaxBytes  int64         // retire the oldest file rather than grow past this (0: no bound)
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
	// lastt: when the newest record found was written (what a failover kept).
	fmt.Fprintf(opts.Out, "start host=%s first=%d last=%d lastt=%d files=%d torn=%d t=%d\n",
		host, rep.First, rep.Last, rep.LastTime, len(rep.Files), rep.TornBytes, time.Now().UnixNano())

	w := &appender{dir: opts.Dir, fileBytes: opts.FileBytes, maxFiles: opts.MaxBytes / opts.FileBytes, seq: rep.Last, files: rep.Files}
	if len(w.files) == 0 {
		w.files = []string{FileName(1)}
	}
	if err := w.open(); err != nil {
		return err
	}
	defer w.f.Close()

	if rep.Last == 0 && opts.Prefill > 0 {
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
	maxFiles  int64
	files     []string // oldest first; the last is being appended to
	f         *os.File
	size      int64
	seq       uint64
	buf       [RecordSize]byte
}

// open opens the newest file for appending.
func (w *appender) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, w.files[len(w.files)-1]), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
			if err := w.rotate(); err != nil {
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

// rotate starts the next file, first retiring the oldest when the volume would
// otherwise hold more than maxFiles files (a log with retention: bounded size).
func (w *appender) rotate() error {
	if w.maxFiles > 0 && int64(len(w.files)) >= w.maxFiles {
		if err := os.Remove(filepath.Join(w.dir, w.files[0])); err != nil {
			return err
		}
		w.files = w.files[1:]
	}
	var n int
	if _, err := fmt.Sscanf(w.files[len(w.files)-1], filePrefix+"%d"+fileSuffix, &n); err != nil {
		return fmt.Errorf("records file name %s: %w", w.files[len(w.files)-1], err)
	}
	w.files = append(w.files, FileName(n+1))
	return w.open()
}
