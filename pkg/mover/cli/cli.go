// Package cli exposes the mover as the `mover` cobra command with the
// receive, send and certs subcommands.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stateful-migration/stateful-migration/pkg/mover/certs"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
	"github.com/stateful-migration/stateful-migration/pkg/mover/receiver"
	"github.com/stateful-migration/stateful-migration/pkg/mover/sender"
	"github.com/stateful-migration/stateful-migration/pkg/mover/transport"
)

// Exit codes beyond the generic 1, for callers that map errors to codes.
const (
	ExitMismatch = 2 // verification found a difference
	ExitAborted  = 3 // SIGTERM/SIGINT: stopped without declaring success
)

// ExitCode maps a command error to a process exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, sender.ErrMismatch):
		return ExitMismatch
	case errors.Is(err, context.Canceled):
		return ExitAborted
	}
	return 1
}

// NewCommand returns the `mover` command.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mover",
		Short: "Copy a live volume to another cluster over mutual TLS and prove the copy",
	}
	cmd.AddCommand(receiveCmd(), sendCmd(), promoteCmd(), certsCmd())
	return cmd
}

type common struct {
	dir, ca, cert, key, status, volume string
	block                              bool
	interval                           time.Duration
}

func (c *common) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.dir, "dir", "", "volume directory (or device/image file with --block-device)")
	f.StringVar(&c.ca, "ca", "", "PEM file of the migration CA")
	f.StringVar(&c.cert, "cert", "", "PEM certificate of this side")
	f.StringVar(&c.key, "key", "", "PEM private key of this side")
	f.BoolVar(&c.block, "block-device", false, "--dir is a raw block device or image file (volumeMode: Block)")
	f.StringVar(&c.volume, "volume", "", "name of the volume served; sender and receiver must name the same one (e.g. namespace/pvc)")
	f.StringVar(&c.status, "status-file", "", "also write the latest progress JSON to this file (atomically replaced)")
	f.DurationVar(&c.interval, "progress-interval", time.Second, "how often progress JSON lines are printed")
	cmd.MarkFlagRequired("dir")
}

func (c *common) files() transport.Files { return transport.Files{CA: c.ca, Cert: c.cert, Key: c.key} }

func (c *common) reporter(cmd *cobra.Command) func(progress.Progress) {
	out := progress.JSONLines(cmd.OutOrStdout())
	if c.status == "" {
		return out
	}
	return progress.Tee(out, progress.StatusFile(c.status))
}

// signals cancels on SIGTERM/SIGINT and closes finish on SIGUSR1.
func signals(parent context.Context, finish func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-ch:
				if s == syscall.SIGUSR1 {
					if finish != nil {
						finish()
					}
					continue
				}
				cancel()
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func receiveCmd() *cobra.Command {
	var c common
	var listen string
	var points, exactOnly bool
	var perFileAfter time.Duration
	cmd := &cobra.Command{
		Use:   "receive",
		Short: "Serve the destination volume until a sender completes a verified final sync",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signals(cmd.Context(), nil)
			defer stop()
			r, err := receiver.New(receiver.Options{Dir: c.dir, Block: c.block, Volume: c.volume, Listen: listen, TLS: c.files(),
				Points: points, ExactOnly: exactOnly, PerFileAfter: perFileAfter, Progress: c.reporter(cmd),
				Logf: func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }})
			if err != nil {
				return err
			}
			defer r.Close()
			r.Tracker.Interval = c.interval
			err = r.Serve(ctx)
			if err != nil {
				r.Tracker.Fail(err)
			}
			return err
		},
	}
	c.bind(cmd)
	cmd.Flags().StringVar(&listen, "listen", ":8443", "host:port to listen on")
	cmd.Flags().BoolVar(&points, "points", false, "standby: apply each pass under an undo log and commit it whole, so that the volume always holds a complete pass (roll back one a crash cut off on start)")
	cmd.Flags().BoolVar(&exactOnly, "exact-points", false, "with --points: commit only passes the sender read at one instant (nothing changed meanwhile), keeping the last such point")
	cmd.Flags().DurationVar(&perFileAfter, "per-file-after", 0, "with --exact-points: commit any pass once the point is this old (0: never)")
	return cmd
}

func promoteCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Ready a standby volume (kept with receive --points) for the app: roll back to its last point, verify it, drop the log",
		RunE: func(cmd *cobra.Command, _ []string) error {
			pt, err := receiver.Promote(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "promoted %s: point of %s, %d paths, digest %x\n", dir, pt.Time.Format(time.RFC3339), pt.Entries, pt.Digest)
			// The agent reads this line as it reads a mover's progress.
			d := fmt.Sprintf("%x", pt.Digest)
			return json.NewEncoder(cmd.OutOrStdout()).Encode(progress.Progress{Role: "promote", Phase: progress.Completed, Time: time.Now().UTC(),
				Digest: d, Verified: true, Point: &progress.Point{Time: pt.Time, Digest: d}})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the standby volume's directory")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func sendCmd() *cobra.Command {
	var c common
	var o sender.Options
	var finishFile, bw string
	cmd := &cobra.Command{
		Use:   "send",
		Short: "Copy the source volume, keep it current with --continuous, then final-sync and verify",
		RunE: func(cmd *cobra.Command, _ []string) error {
			limit, err := ParseBytes(bw)
			if err != nil {
				return fmt.Errorf("--bwlimit: %w", err)
			}
			finish := make(chan struct{})
			var once sync.Once
			closeFinish := func() { once.Do(func() { close(finish) }) }
			ctx, stop := signals(cmd.Context(), closeFinish)
			defer stop()
			var quiesce atomic.Int64
			if finishFile != "" {
				go pollFile(ctx, finishFile, &quiesce, closeFinish)
			}
			o.QuiesceStart = func() time.Time {
				if n := quiesce.Load(); n != 0 {
					return time.Unix(0, n)
				}
				return time.Time{}
			}
			o.Dir, o.Block, o.Volume, o.TLS, o.BWLimit, o.Finish = c.dir, c.block, c.volume, c.files(), limit, finish
			o.Progress = c.reporter(cmd)
			res, err := sender.Run(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "verified: digest %s\n", res.Digest)
			return nil
		},
	}
	c.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "receiver host:port")
	f.StringVar(&o.ServerName, "server-name", "", "name to expect in the receiver certificate (default: host of --to)")
	f.BoolVar(&o.Continuous, "continuous", false, "keep replicating changes until told to finish (--finish-file or SIGUSR1)")
	f.StringVar(&finishFile, "finish-file", "", "finish (final sync + verify) once this file is not empty; an RFC 3339 time in it is the quiesce start")
	f.BoolVar(&o.Compress, "compress", false, "zstd-compress file data on the wire")
	f.StringVar(&bw, "bwlimit", "0", "bandwidth cap in bytes/s on the wire (suffixes K, M, G; 0 = none)")
	f.IntVar(&o.Workers, "workers", 4, "files read in parallel")
	f.DurationVar(&o.RescanInterval, "rescan-interval", 0, "full rescan period backing change tracking (default 60s, 10s for block)")
	f.BoolVar(&o.FullVerify, "full-verify", false, "reread every byte on both sides when verifying instead of trusting unchanged-inode sums")
	f.DurationVar(&o.TimestampWindow, "timestamp-window", 0, "a file read within this long of its last change is read again before its copy is trusted (default: twice the kernel's timestamp tick, at least 10ms; raise it for network filesystems with a skewed server clock)")
	f.DurationVar(&o.RetryTimeout, "retry-timeout", 10*time.Minute, "give up when the receiver stays unreachable this long")
	cmd.MarkFlagRequired("to")
	return cmd
}

// finishPoll is how often --finish-file is read: the wait counts in the
// downtime, and a read of a small file a hundred times a second costs
// nothing the app would notice.
const finishPoll = 10 * time.Millisecond

// pollFile fires once path holds something: the agent projects a pod
// annotation there (downward API), so the file exists, empty, from the
// start. Its content, when an RFC 3339 time, is the quiesce start.
func pollFile(ctx context.Context, path string, quiesce *atomic.Int64, fire func()) {
	t := time.NewTicker(finishPoll)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			if ts, err := time.Parse(time.RFC3339Nano, string(bytes.TrimSpace(b))); err == nil {
				quiesce.Store(ts.UnixNano())
			}
			fire()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ParseBytes reads "10M"-style sizes (powers of 1024).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return v * mult, nil
}

func certsCmd() *cobra.Command {
	var out string
	var hosts []string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA and a server and client key pair for one migration",
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := certs.New(hosts, validity)
			if err != nil {
				return err
			}
			if err := b.Write(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s, %s, %s, %s, %s to %s\n", certs.CAFile, certs.CAKeyFile,
				certs.ServerCertFile, certs.ServerKeyFile, certs.ClientCertFile, certs.ClientKeyFile, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().StringSliceVar(&hosts, "hosts", certs.DefaultHosts, "DNS names and IPs for the server certificate")
	cmd.Flags().DurationVar(&validity, "validity", 7*24*time.Hour, "certificate lifetime")
	cmd.MarkFlagRequired("out")
	return cmd
}
