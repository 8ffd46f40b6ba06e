package writer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runFor(t *testing.T, dir string, d time.Duration, prefill int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out bytes.Buffer
	if err := Run(ctx, Options{Dir: dir, Rate: 4 << 20, Batch: 10 * time.Millisecond, FileBytes: 64 * RecordSize, Prefill: prefill, Out: &out}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestRunResumesAndScanAgrees(t *testing.T) {
	dir := t.TempDir()
	out := runFor(t, dir, 200*time.Millisecond, 1<<20)
	if !strings.Contains(out, "prefilled seq=256") || !strings.Contains(out, "ack seq=") {
		t.Fatalf("output: %q", out)
	}
	r1, err := Scan(dir)
	if err != nil || r1.Last <= 256 || len(r1.Files) < 4 {
		t.Fatalf("scan after first run: %+v, %v", r1, err)
	}
	out = runFor(t, dir, 100*time.Millisecond, 1<<20)
	if !strings.HasPrefix(out, "start ") || strings.Contains(out, "prefilled") {
		t.Fatalf("second run must resume without prefill: %q", out)
	}
	r2, err := Scan(dir)
	if err != nil || r2.Last <= r1.Last {
		t.Fatalf("scan after resume: %+v, %v", r2, err)
	}
}

func TestScanTornTailOnlyAtTheEnd(t *testing.T) {
	dir := t.TempDir()
	runFor(t, dir, 50*time.Millisecond, 300*RecordSize)
	r, _ := Scan(dir)
	last := filepath.Join(dir, r.Files[len(r.Files)-1])
	f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.Write(make([]byte, 100))
	_ = f.Close()
	torn, err := Scan(dir)
	if err != nil || torn.TornBytes != 100 || torn.Last != r.Last {
		t.Fatalf("torn tail: %+v, %v", torn, err)
	}
	out := runFor(t, dir, 30*time.Millisecond, 0)
	if !strings.Contains(out, "torn=100") {
		t.Fatalf("resume must report the dropped tail: %q", out)
	}
	if r, err := Scan(dir); err != nil || r.TornBytes != 0 {
		t.Fatalf("after resume: %+v, %v", r, err)
	}
}

func TestScanFindsDamageAndGaps(t *testing.T) {
	dir := t.TempDir()
	runFor(t, dir, 50*time.Millisecond, 300*RecordSize)
	first := filepath.Join(dir, FileName(1))
	data, _ := os.ReadFile(first)

	data[5*RecordSize+100] ^= 1
	_ = os.WriteFile(first, data, 0o644)
	if _, err := Scan(dir); err == nil || !strings.Contains(err.Error(), "offset 20480") {
		t.Fatalf("a flipped bit must be found: %v", err)
	}
	data[5*RecordSize+100] ^= 1
	_ = os.WriteFile(first, append(data[:5*RecordSize:5*RecordSize], data[6*RecordSize:]...), 0o644)
	if _, err := Scan(dir); err == nil || !strings.Contains(err.Error(), "record 7 where 6 was expected") {
		t.Fatalf("a missing record must be found: %v", err)
	}
}

func TestRetentionKeepsTheVolumeBounded(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	opts := Options{Dir: dir, Rate: 4 << 20, Batch: 10 * time.Millisecond, FileBytes: 16 * RecordSize, MaxBytes: 64 * RecordSize, Prefill: 256 * RecordSize, Out: &out}
	if err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) > 4 || r.First == 1 || r.Records() > 64 || r.Last < 256 {
		t.Fatalf("retention: %+v (records %d)", r, r.Records())
	}
	if r.Files[0] == FileName(1) {
		t.Fatalf("the oldest file must have been retired: %v", r.Files)
	}
}
