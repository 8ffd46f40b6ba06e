// Command e2e-writer is the end-to-end suite's stateful app:
//
//	e2e-writer run --dir /data [--rate 5000000] [--prefill 268435456]
//	e2e-writer verify --dir /data
//
// run appends checksummed records and prints `ack seq=N t=UNIXNANO` after each
// fsync; verify prints `verified records=N last-t=UNIXNANO torn=B` or fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stateful-migration/stateful-migration/test/writer"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-writer run|verify --dir DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "/data", "volume root")
	rate := fs.Int64("rate", 5_000_000, "bytes per second")
	batch := fs.Duration("batch", 50*time.Millisecond, "time between fsyncs (one ack each)")
	fileBytes := fs.Int64("file-bytes", 64<<20, "start a new records file after this many bytes")
	prefill := fs.Int64("prefill", 0, "bytes written unthrottled first, on an empty volume")
	maxBytes := fs.Int64("max-bytes", 0, "retire the oldest records file rather than grow past this (0: no bound)")
	_ = fs.Parse(os.Args[2:])

	switch os.Args[1] {
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		err := writer.Run(ctx, writer.Options{Dir: *dir, Rate: *rate, Batch: *batch, FileBytes: *fileBytes, Prefill: *prefill, MaxBytes: *maxBytes, Out: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e-writer:", err)
			os.Exit(1)
		}
		fmt.Println("stopped")
	case "verify":
		r, err := writer.Scan(*dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e-writer verify:", err)
			os.Exit(1)
		}
		fmt.Printf("verified first=%d last=%d last-t=%d torn=%d files=%d\n", r.First, r.Last, r.LastTime, r.TornBytes, len(r.Files))
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
